"""Span.finish() handing a span to the C reporter as its fields, without a SpanRecord
(csrc/report_api.h), against the record path: the same bytes queued, the same fallbacks.

Also the direct calls the C core makes while a method is not replaced (Span.finish from
a scope, ScopeManager.activate from start_active_span) and the clock it reads."""

from __future__ import annotations

import random
import time
from typing import Any, Iterator, List

import opentracing
import pytest

from opentracing_sls import span as span_module
from opentracing_sls._accel import cspan as load_cspan
from opentracing_sls._accel import pure_python
from opentracing_sls.constants import EMPTY_BAGGAGE
from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting import Reporter, compact
from opentracing_sls.reporting.senders import UdpSender
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.scope_managers import ContextVarsScopeManager
from opentracing_sls.span_context import SpanContext
from opentracing_sls.tracer import Tracer

speedups = pytest.importorskip("opentracing_sls._speedups",
                               reason="C accelerator not built (no compiler?)")
pytestmark = pytest.mark.skipif(
    pure_python(), reason="compares the C paths with the Python ones; C is switched off")


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    """Our tracer on a real Reporter whose worker never runs: spans stay in its queue."""
    reporter = Reporter(UdpSender("127.0.0.1", 9), queue_size=10_000, flush_interval=60)
    reporter._accepting = True
    reporter._wake_worker = lambda: None  # type: ignore[method-assign]
    assert isinstance(reporter.report_span, speedups.ReportSpan)
    yield Tracer("parts", reporter, ConstSampler(True))
    reporter._accepting = False
    reporter._queue.clear()
    reporter.close(1)


def _python_bytes(span: Any, end: float) -> bytes:
    """What the record path with the pure-Python encoder queues for ``span``."""
    return compact.encode_span(span.to_record(end))


def _value(rng: random.Random) -> Any:
    return rng.choice([
        "v" * rng.randrange(0, 40), "é中😀", rng.randrange(-2**63, 2**63), True, False,
        rng.random() * 1e6, -0.0, b"\x00\xff", 2**63 + rng.randrange(1000),
    ])


def test_spans_queue_the_bytes_of_their_record(tracer: Tracer) -> None:
    rng = random.Random(7)
    queue = tracer.reporter._queue
    for i in range(300):
        start = 1_700_000_000 + rng.random() * 1000
        parent = tracer.start_span("parent-%d" % i, start_time=start) if i % 3 else None
        span = tracer.start_span("op-%d" % i, child_of=parent, start_time=start)
        for k in range(rng.randrange(4)):
            span.set_tag("k%d" % k, _value(rng))
        for _ in range(rng.randrange(3)):
            span.log_kv({"event": "e", "value": _value(rng)}, timestamp=start + 0.5)
        end = start + rng.choice([0.0, 0.000_0004, 0.25, -1.0])  # -1: clamped to 0
        span.finish(finish_time=end)
        assert queue[-1] == _python_bytes(span, end), i


def test_references_and_128_bit_trace_ids(tracer: Tracer) -> None:
    tracer.generate_128bit_trace_id = True
    first = tracer.start_span("first", start_time=100.0)
    second = tracer.start_span("second", start_time=100.0)
    span = tracer.start_span("linked", start_time=100.0, references=[
        opentracing.follows_from(first.context), opentracing.child_of(second.context)])
    assert span.context.trace_id >> 64
    span.finish(finish_time=100.5)
    assert tracer.reporter._queue[-1] == _python_bytes(span, 100.5)


class _Id(int):
    pass


@pytest.mark.parametrize("trace_id", [
    1, 2**63, 2**64 - 1, 2**64, (5 << 64) | 7, 2**128 - 1,  # in range: one conversion in C
    2**128, 2**130 + 3, -1, -(2**64) - 5, _Id(2**70 + 1),  # the general rules
])
def test_trace_ids_of_every_width_encode_as_python_does(tracer: Tracer, trace_id: int) -> None:
    parent = SpanContext(trace_id, 0x1234, 0, 1)
    span = tracer.start_span("child", child_of=parent, start_time=50.0)
    assert span.context.trace_id == trace_id
    span.finish(finish_time=50.25)
    assert tracer.reporter._queue[-1] == _python_bytes(span, 50.25)


def test_times_that_are_not_floats_take_the_record_path(tracer: Tracer) -> None:
    span = tracer.start_span("int-start", start_time=1_700_000_000)
    span.finish(finish_time=1_700_000_002)
    assert tracer.reporter._queue[-1] == compact.encode_span(span.to_record(1_700_000_002))
    assert span.to_record(1_700_000_002).duration == 2_000_000


def test_values_only_the_python_encoder_takes_go_through_the_record(tracer: Tracer) -> None:
    span = tracer.start_span("wide", start_time=10.0)
    span.set_tag("big", 2**70)  # beyond i64: the C encoder hands the record to Python
    span.log_kv({"\ud800": 1}, timestamp=10.25)  # a lone surrogate, as is
    span.finish(finish_time=11.0)
    assert tracer.reporter._queue[-1] == _python_bytes(span, 11.0)


def test_another_encoder_receives_a_span_record(tracer: Tracer) -> None:
    seen: List[SpanRecord] = []
    tracer.reporter._encode = lambda record: seen.append(record) or b"mine"
    span = tracer.start_span("custom", start_time=5.0)
    span.set_tag("k", "v")
    span.finish(finish_time=6.0)
    assert tracer.reporter._queue[-1] == b"mine"
    assert seen == [span.to_record(6.0)]
    assert type(seen[0]) is SpanRecord


def test_closed_and_full_reporters_count_their_drops(tracer: Tracer) -> None:
    reporter = tracer.reporter
    reporter.queue_size = len(reporter._queue)  # full
    tracer.start_span("dropped").finish()
    assert reporter._full_queue_dropped == 1
    reporter.queue_size = 10_000
    reporter._accepting = False
    reporter._closed = True
    before = len(reporter._queue)
    tracer.start_span("closed").finish()
    assert len(reporter._queue) == before
    assert any(v == 1 for k, v in reporter.metrics.snapshot().items() if "closed" in k)


def test_an_encoder_error_is_counted_not_raised(tracer: Tracer) -> None:
    def broken(record: SpanRecord) -> bytes:
        raise ValueError("cannot encode")

    tracer.reporter._encode = broken
    tracer.start_span("lost").finish()  # no exception reaches the caller
    snapshot = tracer.reporter.metrics.snapshot()
    assert any(v == 1 for k, v in snapshot.items() if "encode" in k), snapshot


def test_scopes_call_a_finish_replaced_on_the_instance_or_the_class(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[str] = []
    with tracer.start_active_span("warm"):
        pass  # fills the C core's cache of the class's finish
    scope = tracer.start_active_span("instance")
    original = scope.span.finish
    scope.span.finish = lambda: calls.append("instance") or original()
    scope.close()
    assert calls == ["instance"] and scope.span.is_finished

    span_type = type(scope.span)
    class_finish = span_type.finish
    monkeypatch.setattr(span_type, "finish",
                        lambda self, finish_time=None: calls.append("class") or
                        class_finish(self, finish_time))
    with tracer.start_active_span("class") as patched:
        pass
    assert calls == ["instance", "class"] and patched.span.is_finished
    monkeypatch.undo()
    with tracer.start_active_span("restored"):
        pass
    assert calls == ["instance", "class"]


def test_start_active_span_calls_an_activate_replaced_on_the_manager(tracer: Tracer) -> None:
    manager = tracer.scope_manager
    assert isinstance(manager, ContextVarsScopeManager)
    with tracer.start_active_span("warm"):
        pass
    activated: List[str] = []
    original = manager.activate
    manager.activate = lambda span, finish_on_close: (  # type: ignore[method-assign]
        activated.append(span.operation_name) or original(span, finish_on_close))
    with tracer.start_active_span("seen") as scope:
        assert manager.active is scope
    assert activated == ["seen"]


def test_a_manager_subclass_overriding_activate_is_used(tracer: Tracer) -> None:
    class Counting(ContextVarsScopeManager):
        activations = 0

        def activate(self, span: Any, finish_on_close: bool) -> Any:
            Counting.activations += 1
            return super().activate(span, finish_on_close)

    counted = Tracer("parts", tracer.reporter, ConstSampler(True), scope_manager=Counting())
    with counted.start_active_span("one"):
        with counted.start_active_span("two"):
            pass
    assert Counting.activations == 2


@pytest.fixture
def cspan_module() -> Iterator[Any]:
    module = load_cspan()
    assert module is not None

    def configure(clock: Any) -> None:
        module.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                         on_error=opentracing.Span._on_error, time=clock)

    module.configure_clock = configure
    yield module
    configure(time.time)


def test_the_clock_is_time_time_unless_configured_otherwise(
        tracer: Tracer, cspan_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = time.time()
    span = tracer.start_span("now")
    after = time.time()
    assert before <= span.start_time <= after and type(span.start_time) is float

    cspan_module.configure_clock(lambda: 1234.5)
    monkeypatch.setattr(span_module, "_now", lambda: 1234.5)
    assert tracer.start_span("fake").start_time == 1234.5
    # another builtin of the time module is not mistaken for time.time
    cspan_module.configure_clock(time.monotonic)
    assert tracer.start_span("monotonic").start_time < before - 1e6


def test_omitting_report_api_keeps_it_and_none_switches_it_off(
        tracer: Tracer, cspan_module: Any) -> None:
    cspan_module.configure_clock(time.time)  # no report_api: the parts path stays on
    span = tracer.start_span("kept", start_time=3.0)
    span.finish(finish_time=4.0)
    assert tracer.reporter._queue[-1] == _python_bytes(span, 4.0)
    try:
        cspan_module.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                               on_error=opentracing.Span._on_error, time=time.time,
                               report_api=None)
        span = tracer.start_span("record path", start_time=3.0)
        span.finish(finish_time=4.0)
        assert tracer.reporter._queue[-1] == _python_bytes(span, 4.0)
        with pytest.raises(ValueError):
            cspan_module.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                                   on_error=opentracing.Span._on_error, time=time.time,
                                   report_api=object())
    finally:
        cspan_module.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                               on_error=opentracing.Span._on_error, time=time.time,
                               report_api=speedups._report_api)
