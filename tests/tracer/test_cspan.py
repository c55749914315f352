"""The C span cores (opentracing_sls._cspan) against their pure-Python twins.

Both must behave the same in every observable way: the records they hand the reporter, the
tracer's counters and internal errors, what they raise (only what Python itself would). The
rest of tests/tracer runs against the C cores; ``test_pure_python_suite`` runs it again in a
subprocess against the Python ones.
"""

from __future__ import annotations

import enum
import gc
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import opentracing
import pytest

from opentracing_sls import span as span_module
from opentracing_sls.constants import (
    DEBUG_FLAG,
    EMPTY_BAGGAGE,
    MAX_TAG_VALUE_LENGTH,
    SAMPLED_FLAG,
)
from opentracing_sls.record import CHILD_OF, SpanRecord
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.scope_managers import ContextVarsScopeManager, ThreadLocalScopeManager
from opentracing_sls.span_context import SpanContext
from opentracing_sls.testing import make_test_tracer
from opentracing_sls.tracer import Tracer

cspan = pytest.importorskip("opentracing_sls._cspan", reason="C span cores not built")
pytestmark = pytest.mark.skipif(
    os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0"),
    reason="compares the C cores with the Python ones; the C ones are switched off")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Shout:
    def __str__(self) -> str:
        return "LOUD" * 300


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class Interrupting:
    def __str__(self) -> str:
        raise KeyboardInterrupt


class Flag(enum.IntEnum):
    ON = 1


class Text(str):
    pass


class BadInt:
    def __int__(self) -> int:
        raise RuntimeError("no int")


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both cores read the same fixed clock, so records made "now" compare equal."""

    def clock() -> float:
        return 1700000000.75

    def configure(time_function: Callable[[], float]) -> None:
        cspan.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                        on_error=opentracing.Span._on_error, time=time_function)

    monkeypatch.setattr(span_module, "_now", clock)
    configure(clock)
    try:
        yield
    finally:
        configure(time.time)


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(13)
    if kind == 0:
        return "".join(chr(rng.choice((0x41, 0x7A, 0xE9, 0x4E2D, 0x1F600)))
                       for _ in range(rng.randrange(0, 60)))
    return (rng.random() < 0.5, rng.randrange(-1 << 70, 1 << 70), rng.uniform(-1e9, 1e9),
            None, b"\x00\xff" * rng.randrange(40), Shout(), Broken(), float("nan"),
            ValueError("boom"), KeyError, ["a", 1], "x" * 100)[kind - 1]


def _ops(rng: random.Random, n: int) -> List[Tuple[str, tuple]]:
    ops: List[Tuple[str, tuple]] = []
    for _ in range(n):
        kind = rng.randrange(10)
        if kind < 4:
            ops.append(("set_tag", ("k%d" % rng.randrange(6), _value(rng))))
        elif kind == 4:
            ops.append(("set_tag", ("sampling.priority",
                                    rng.choice((0, 1, 2, -1, "1", "x", None, 1.5, BadInt())))))
        elif kind < 7:
            fields = {"f%d" % i: _value(rng) for i in range(rng.randrange(4))}
            ops.append(("log_kv", (fields, rng.choice((None, 1700000000.25, 1700000000)))))
        elif kind == 7:
            ops.append(("set_operation_name", ("op%d" % rng.randrange(3),)))
        elif kind == 8:
            ops.append(("set_baggage_item", ("b%d" % rng.randrange(2),
                                             rng.choice(("v", None)))))
        else:
            ops.append(("finish", (rng.choice((None, 1700000001.5, 1700000002)),)))
    return ops


def _run(span_class: type, ops: List[Tuple[str, tuple]], flags: int, seed: int) -> Dict[str, Any]:
    tracer = make_test_tracer(max_tag_value_length=50)
    context = SpanContext(0xABC, 0xDEF, 0x123, flags, {"b0": "x"} if seed % 2 else None)
    span = span_class(tracer, context, "start", 1700000000.5,
                      [(CHILD_OF, 0xABC, 0x123)] if seed % 3 else None)
    results = []
    for name, args in ops:
        returned = getattr(span, name)(*args)
        results.append(returned is span if name != "finish" else returned)
    span.finish(1700000003.0)  # a second finish is a warning, not an error
    records = [tuple(r) for r in tracer.reporter.get_spans()]
    metrics = tracer.metrics.snapshot()
    return {"records": records, "results": results, "metrics": metrics,
            "baggage": span.context.baggage, "flags": span.context.flags,
            "finished": span.is_finished}


def _normalised(result: Dict[str, Any]) -> Any:
    # NaN != NaN: compare the repr of everything.
    return repr(result)


@pytest.mark.parametrize("seed", range(40))
def test_same_records_and_counters_as_python(seed: int, frozen_clock: None) -> None:
    rng = random.Random(seed)
    ops = _ops(rng, rng.randrange(1, 40))
    flags = rng.choice((0, SAMPLED_FLAG, SAMPLED_FLAG | DEBUG_FLAG))
    ours = _run(span_module.Span, ops, flags, seed)
    python = _run(span_module.PySpan, ops, flags, seed)
    assert _normalised(ours) == _normalised(python)


def test_the_c_core_is_in_use() -> None:
    assert issubclass(span_module.Span, cspan.SpanCore)
    assert span_module.PySpan is not span_module.Span
    tracer = make_test_tracer()
    with tracer.start_active_span("x") as scope:
        assert isinstance(scope, cspan.ScopeCore)
        assert isinstance(scope.span, cspan.SpanCore)
        assert isinstance(scope.span.context, cspan.ContextCore)
        assert isinstance(scope.span.context, opentracing.SpanContext)


def test_keyboard_interrupt_in_a_tag_value_is_not_swallowed() -> None:
    for span_class in (span_module.Span, span_module.PySpan):
        tracer = make_test_tracer()
        span = span_class(tracer, SpanContext(1, 2, 0, SAMPLED_FLAG), "op")
        with pytest.raises(KeyboardInterrupt):
            span.set_tag("k", Interrupting())
        with pytest.raises(KeyboardInterrupt):
            span.log_kv({"k": Interrupting()})
        span.set_tag("k", Broken())  # an Exception is counted instead
        assert tracer.metrics.snapshot()["tracer.internal_errors"] == 1


def test_keyword_arguments_bind_like_python() -> None:
    tracer = make_test_tracer()
    span = tracer.start_span(operation_name="kw", tags={"a": 1}, start_time=10.0)
    span.set_tag(key="b", value="x")
    span.log_kv(key_values={"event": "e"}, timestamp=11.0)
    span.finish(finish_time=12.5)
    (record,) = tracer.reporter.get_spans()
    assert (record.operation_name, record.start_time, record.duration) == (
        "kw", 10_000_000, 2_500_000)
    assert (record.tags["a"], record.tags["b"], record.tags["sampler.type"]) == (1, "x", "const")
    assert record.logs == [(11_000_000, {"event": "e"})]
    with pytest.raises(TypeError):
        span.set_tag("only-key")
    with pytest.raises(TypeError):
        span.set_tag("k", 1, value=2)
    with pytest.raises(TypeError):
        tracer.start_span("op", colour="red")
    with pytest.raises(TypeError):
        tracer.start_active_span()


def _start_shapes(tracer: Tracer) -> List[Tuple[str, Callable[[], Any]]]:
    parent = tracer.start_span("parent")
    deferred = SpanContext(5, 6, 0, 0, sampling_deferred=True)
    debug = SpanContext(0, 0, debug_id="dbg", sampling_deferred=True)
    rich = SpanContext(7, 8, 9, SAMPLED_FLAG, {"k": "v"}, trace_state="a=b")
    unsampled = SpanContext(7, 8, 9, 0)
    ref = opentracing.follows_from(rich)
    return [
        ("root", lambda: tracer.start_span("root")),
        ("root no name", lambda: tracer.start_span()),
        ("child of span", lambda: tracer.start_span("c", child_of=parent)),
        ("child of context", lambda: tracer.start_span("c", child_of=rich)),
        ("unsampled parent", lambda: tracer.start_span("c", child_of=unsampled,
                                                       tags={"sampling.priority": 1, "t": 2})),
        ("deferred", lambda: tracer.start_span("c", child_of=deferred)),
        ("debug", lambda: tracer.start_span("c", child_of=debug)),
        ("references", lambda: tracer.start_span("c", references=[ref])),
        ("foreign", lambda: tracer.start_span("c", child_of=object())),
        ("tags", lambda: tracer.start_span("c", tags={"s": "x" * 2000, "n": 3, "o": Shout()})),
        # Stored as given (one dict update in C), then each case that is not.
        ("plain tags", lambda: tracer.start_span("c", tags={
            "span.kind": "server", "http.status_code": 200, "ok": True, "ratio": 0.5,
            "http.url": "u" * MAX_TAG_VALUE_LENGTH, "": ""})),
        ("tag too long", lambda: tracer.start_span("c", tags={
            "a": 1, "u": "u" * (MAX_TAG_VALUE_LENGTH + 1)})),
        ("priority among tags", lambda: tracer.start_span("c", tags={
            "a": "b", "sampling.priority": 0})),
        ("subclassed values", lambda: tracer.start_span("c", tags={
            "flag": Flag.ON, "text": Text("t"), "none": None})),
        ("key not a str", lambda: tracer.start_span("c", tags={7: "seven"})),
        ("key a str subclass", lambda: tracer.start_span("c", tags={
            Text("sampling.priority"): 1})),
        ("start time", lambda: tracer.start_span("c", start_time=123.5)),
        ("ignore active", lambda: tracer.start_span("c", ignore_active_span=True)),
    ]


def _describe(span: Any) -> Tuple[Any, ...]:
    c = span.context
    return (type(span).__name__, span.operation_name, c.parent_id if c.parent_id in (0, 8, 9)
            else "parent", c.flags, dict(c.baggage), c.trace_state, c.debug_id,
            c.sampling_deferred, sorted(span.tags.items()), span.references,
            span.start_time if span.start_time == 123.5 else "now")


@pytest.mark.parametrize("sampled", [True, False])
def test_start_span_fast_path_matches_the_python_path(sampled: bool) -> None:
    def python_start(tracer: Tracer) -> Callable[..., Any]:
        def start(operation_name: Optional[str] = None, child_of: Any = None,
                  references: Any = None, tags: Any = None, start_time: Any = None,
                  ignore_active_span: bool = False) -> Any:
            return tracer._start_span(operation_name, child_of, references, tags, start_time,
                                      ignore_active_span)
        return start

    described = []
    for use_python in (False, True):
        tracer = make_test_tracer(sampler=ConstSampler(sampled))
        if use_python:
            tracer.start_span = python_start(tracer)  # type: ignore[method-assign]
        with tracer.start_active_span("active"):
            spans = [(name, make()) for name, make in _start_shapes(tracer)]
        described.append(([(name, _describe(s)) for name, s in spans],
                          tracer.metrics.snapshot()))
    assert described[0] == described[1]


def test_a_broken_sampler_counts_and_starts_unsampled() -> None:
    class Exploding(ConstSampler):
        def is_sampled(self, trace_id: int, operation: str = "") -> Any:
            raise RuntimeError("sampler down")

    class Odd(ConstSampler):
        def is_sampled(self, trace_id: int, operation: str = "") -> Any:
            return [True, {"sampler.type": "odd"}]  # a list, not a tuple: still a pair

    tracer = make_test_tracer(sampler=Exploding(True))
    span = tracer.start_span("op")
    assert span.context.flags == 0 and span.context.trace_id and span.context.span_id
    assert tracer.metrics.snapshot()["tracer.internal_errors"] == 1
    tracer = make_test_tracer(sampler=Odd(True))
    span = tracer.start_span("op")
    assert span.context.flags == SAMPLED_FLAG and span.tags == {"sampler.type": "odd"}


@pytest.mark.parametrize("manager", [ContextVarsScopeManager, ThreadLocalScopeManager])
def test_scopes_close_in_order_only(manager: type) -> None:
    tracer = make_test_tracer(scope_manager=manager())
    outer = tracer.start_active_span("outer")
    inner = tracer.start_active_span("inner")
    outer.close()  # out of order: ignored, inner stays active and outer unfinished
    assert tracer.active_span is inner.span and not outer.span.is_finished
    inner.close()
    assert tracer.active_span is outer.span and inner.span.is_finished
    outer.close()
    outer.close()
    assert tracer.active_span is None
    assert [r.operation_name for r in tracer.reporter.get_spans()] == ["inner", "outer"]


def test_scope_exit_tags_the_error_and_reraises() -> None:
    tracer = make_test_tracer()
    with pytest.raises(ZeroDivisionError):
        with tracer.start_active_span("boom"):
            raise ZeroDivisionError("division by zero")
    (record,) = tracer.reporter.get_spans()
    assert record.tags["error"] is True
    assert record.logs[0][1]["error.kind"] == "ZeroDivisionError"


def _lifecycle(tracer: Tracer, name: str, values: List[Any]) -> None:
    with tracer.start_active_span(name) as scope:
        span = scope.span
        for i, value in enumerate(values):
            span.set_tag("t%d" % i, value)
        span.log_kv({"event": name, "value": values[0]})
        child = tracer.start_span(name, tags={"x": values[1]})
        child.set_baggage_item("bag", name)
        child.finish()


def test_no_reference_leak() -> None:
    tracer = make_test_tracer()
    name = "".join(["leak-", "check"])  # a fresh str object, not an interned constant
    values = ["v" * 2000, 10 ** 30, 2.5, Shout()]
    watched = [tracer, name, *values]
    _lifecycle(tracer, name, values)
    tracer.reporter.clear()
    gc.collect()
    before = [sys.getrefcount(v) for v in watched]
    for _ in range(2000):
        _lifecycle(tracer, name, values)
    tracer.reporter.clear()
    gc.collect()
    assert [sys.getrefcount(v) for v in watched] == before
    # and the objects a span allocates are all freed
    counts = []
    for _ in range(3):
        for _ in range(2000):
            _lifecycle(tracer, name, values)
        tracer.reporter.clear()
        gc.collect()
        counts.append(len(gc.get_objects()))
    # A leak of even one object per span would show as thousands; a handful is other
    # threads of the test session (a lingering reporter worker) allocating meanwhile.
    assert counts[2] <= counts[0] + 10


def test_tags_set_while_another_thread_finishes_never_land_after_finish() -> None:
    tracer = make_test_tracer()
    errors: List[BaseException] = []
    for _ in range(50):
        span = tracer.start_span("race")
        stop = threading.Event()

        def writer(span: Any = span, stop: threading.Event = stop) -> None:
            try:
                i = 0
                while not stop.is_set():
                    span.set_tag("k%d" % (i % 50), i)
                    span.log_kv({"i": i})
                    i += 1
            except BaseException as exc:  # noqa: BLE001 - any exception fails the test
                errors.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        span.finish()
        record = tracer.reporter.get_spans()[-1]
        tags, logs = dict(record.tags), list(record.logs)
        stop.set()
        thread.join()
        assert record.tags == tags and record.logs == logs
    assert not errors
    assert len(tracer.reporter.get_spans()) == 50


def test_pure_python_suite() -> None:
    """tests/tracer again, in a subprocess with the C cores switched off."""
    env = dict(os.environ, OPENTRACING_SLS_PURE_PYTHON="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         os.path.join(ROOT, "tests", "tracer"),
         "-k", "not test_pure_python_suite"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
    check = subprocess.run(
        [sys.executable, "-c", "from opentracing_sls import span; "
         "print(span.Span is span.PySpan)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "True", check.stderr
