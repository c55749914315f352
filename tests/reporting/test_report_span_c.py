"""Reporter.report_span's C twin (opentracing_sls._speedups.ReportSpan) against the Python
method, step by step: same queue, same counters, same calls to the reporter's slow paths,
same exceptions."""

from __future__ import annotations

import gc
import os
import sys
import weakref
from typing import Any, Callable, List, Tuple

import pytest

from opentracing_sls.reporting import Reporter
from opentracing_sls.reporting.senders import UdpSender
from opentracing_sls.testing import make_span_record

speedups = pytest.importorskip("opentracing_sls._speedups",
                               reason="C accelerator not built (no compiler?)")
pytestmark = pytest.mark.skipif(
    os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0"),
    reason="compares the C path with the Python one; the C one is switched off")


def _pair() -> Tuple[Reporter, Reporter, List[List[Tuple[str, Any]]]]:
    """A reporter on the C path and one on the Python path, with no worker thread: starting
    and waking the worker are recorded instead, so every step is deterministic."""
    calls: List[List[Tuple[str, Any]]] = [[], []]
    made = []
    for log in calls:
        # Port 9 (discard) on loopback: nothing is sent anyway, no worker runs.
        reporter = Reporter(UdpSender("127.0.0.1", 9), queue_size=6, batch_size=4,
                            flush_interval=60)

        def start(reporter: Reporter = reporter, log: list = log) -> None:
            log.append(("start", None))
            reporter._accepting = True

        def wake(reporter: Reporter = reporter, log: list = log) -> None:
            log.append(("wake", len(reporter._queue)))
            reporter._wake_pending = True

        def failed(exc: Exception, log: list = log) -> None:
            log.append(("encode_failed", type(exc).__name__))

        reporter._start_worker = start  # type: ignore[method-assign]
        reporter._wake_worker = wake  # type: ignore[method-assign]
        reporter._encode_failed = failed  # type: ignore[method-assign]
        made.append(reporter)
    c, py = made
    assert isinstance(c.report_span, speedups.ReportSpan)
    del py.report_span  # the class's Python method again
    assert not isinstance(py.report_span, speedups.ReportSpan)
    return c, py, calls


def _same(c: Reporter, py: Reporter, calls: List[List[Tuple[str, Any]]],
          step: Callable[[Reporter], Any]) -> Any:
    """Runs ``step`` on both reporters (records are made before, so their ids agree)."""
    outcomes = []
    for reporter in (c, py):
        try:
            outcomes.append(("returned", step(reporter)))
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt must match too
            outcomes.append(("raised", type(exc).__name__))
    assert outcomes[0] == outcomes[1]
    assert list(c._queue) == list(py._queue)
    assert calls[0] == calls[1]
    assert c.metrics.snapshot() == py.metrics.snapshot()
    assert (c._full_queue_dropped, c._wake_pending) == (py._full_queue_dropped,
                                                        py._wake_pending)
    return outcomes[0]


def test_queue_wake_full_and_closed_match_python() -> None:
    c, py, calls = _pair()
    records = [make_span_record(i) for i in range(9)]
    for record in records:
        assert _same(c, py, calls, lambda r, rec=record: r.report_span(rec)) == (
            "returned", None)
    # Not vacuous: woken at the batch size, 3 spans dropped (each drop finds no worker
    # thread, as none runs here, and asks for one).
    assert calls[0] == [("start", None), ("wake", 4)] + [("start", None)] * 3
    assert len(c._queue) == 6
    assert c.metrics.snapshot()["reporter.spans.dropped.queue_full"] == 3
    c._queue.clear()
    py._queue.clear()
    c._closed = py._closed = True
    c._accepting = py._accepting = False
    _same(c, py, calls, lambda r: r.report_span(records[0]))
    assert c.metrics.snapshot()["reporter.spans.dropped.closed"] == 1


def test_encode_errors_other_encoders_and_interrupts_match_python() -> None:
    c, py, calls = _pair()
    first = make_span_record(0)
    _same(c, py, calls, lambda r: r.report_span(first))
    # The C encoder hands this to the Python one, which raises: counted, not raised.
    bad = make_span_record(1, trace_id="not an id")
    _same(c, py, calls, lambda r: r.report_span(bad))
    assert calls[0][-1] == ("encode_failed", "TypeError")

    def raw(record: Any) -> bytes:
        return b"raw-%d" % record.duration

    for reporter in (c, py):
        reporter._encode = raw
    other = make_span_record(2)
    _same(c, py, calls, lambda r: r.report_span(other))
    assert c._queue[-1] == b"raw-102"

    def interrupted(record: Any) -> bytes:
        raise KeyboardInterrupt

    for reporter in (c, py):
        reporter._encode = interrupted
    last = make_span_record(3)
    assert _same(c, py, calls, lambda r: r.report_span(last)) == ("raised", "KeyboardInterrupt")


def test_attributes_outside_the_instance_dict_behave_as_in_python() -> None:
    c, py, calls = _pair()
    for reporter in (c, py):
        reporter.batch_size = 2.5  # not an int: compared the way Python compares
    for record in [make_span_record(i) for i in range(3)]:
        _same(c, py, calls, lambda r, rec=record: r.report_span(rec))
    assert ("wake", 3) in calls[0]
    for reporter in (c, py):
        del reporter.__dict__["queue_size"]
    fifth = make_span_record(5)
    assert _same(c, py, calls, lambda r: r.report_span(fifth)) == ("raised", "AttributeError")


def test_wrong_call_shapes_raise_type_error() -> None:
    c, _, _ = _pair()
    with pytest.raises(TypeError):
        c.report_span()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c.report_span(make_span_record(0), record=1)  # type: ignore[call-arg]


def test_a_subclass_overriding_report_span_keeps_it() -> None:
    class Mine(Reporter):
        def report_span(self, record: Any) -> None:
            self.mine = record

    reporter = Mine(UdpSender("127.0.0.1", 9))
    assert not isinstance(reporter.report_span, speedups.ReportSpan)
    reporter.report_span(make_span_record(0))
    assert reporter.mine.operation_name == "op-0"
    reporter.close(1)


def test_no_leak_and_the_reporter_is_collected() -> None:
    c, _, _ = _pair()
    record = make_span_record(0)
    before = sys.getrefcount(record)
    for _ in range(1000):
        c.report_span(record)
        c._queue.clear()
        c._wake_pending = False
    assert sys.getrefcount(record) == before
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None
