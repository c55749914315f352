"""Tracer semantics: ids, parent-based sampling, references, tags, logs, baggage, finish."""

from __future__ import annotations

import logging

import opentracing
import pytest
from opentracing.ext import tags as ext_tags

from opentracing_sls import SpanContext, Tracer
from opentracing_sls.constants import DEBUG_FLAG, SAMPLED_FLAG
from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM
from opentracing_sls.sampling import ConstSampler, ProbabilisticSampler
from opentracing_sls.testing import InMemoryReporter, make_test_tracer


def spans(tracer):
    return tracer.reporter.get_spans()


def test_root_span_ids_and_sampler_tags():
    tracer = make_test_tracer()
    with tracer.start_active_span("root"):
        pass
    [record] = spans(tracer)
    assert record.trace_id > 0 and record.trace_id < 2 ** 64
    assert record.span_id > 0 and record.parent_id == 0
    assert record.flags == SAMPLED_FLAG
    assert record.tags["sampler.type"] == "const"
    assert record.tags["sampler.param"] is True
    assert record.operation_name == "root"
    assert record.duration >= 0 and record.start_time > 1_600_000_000_000_000


def test_128bit_trace_ids_have_high_bits():
    tracer = make_test_tracer(generate_128bit_trace_id=True)
    ids = set()
    for _ in range(50):
        with tracer.start_span("x") as span:
            assert span.context.trace_id >> 64 != 0
            ids.add(span.context.trace_id)
    assert len(ids) == 50


def test_child_inherits_trace_and_only_root_has_sampler_tags():
    tracer = make_test_tracer()
    with tracer.start_active_span("parent") as parent_scope:
        with tracer.start_active_span("child") as child_scope:
            child = child_scope.span
            assert child.context.trace_id == parent_scope.span.context.trace_id
            assert child.context.parent_id == parent_scope.span.context.span_id
            assert child.context.span_id != parent_scope.span.context.span_id
    child_record, parent_record = spans(tracer)
    assert "sampler.type" not in child_record.tags
    assert "sampler.type" in parent_record.tags


@pytest.mark.parametrize("flags,expected", [(0, 0), (SAMPLED_FLAG, SAMPLED_FLAG),
                                            (SAMPLED_FLAG | DEBUG_FLAG, SAMPLED_FLAG | DEBUG_FLAG)])
def test_upstream_decision_is_honoured(flags, expected):
    # The local sampler says yes; a denied parent still wins.
    tracer = make_test_tracer(sampler=ConstSampler(True))
    parent = SpanContext(0xABC, 0xDEF, 0, flags)
    span = tracer.start_span("op", child_of=parent)
    assert span.context.flags == expected
    assert span.context.trace_id == 0xABC and span.context.parent_id == 0xDEF
    span.finish()
    assert len(spans(tracer)) == (1 if expected else 0)


def test_upstream_sampled_overrides_a_local_no():
    tracer = make_test_tracer(sampler=ConstSampler(False))
    span = tracer.start_span("op", child_of=SpanContext(5, 6, 0, SAMPLED_FLAG))
    assert span.is_sampled


@pytest.mark.parametrize("local", [True, False])
def test_deferred_parent_asks_the_local_sampler(local):
    tracer = make_test_tracer(sampler=ConstSampler(local))
    parent = SpanContext(0x1234, 0x5678, 0, 0, sampling_deferred=True)
    span = tracer.start_span("op", child_of=parent)
    assert span.is_sampled is local
    assert span.context.trace_id == 0x1234 and span.context.parent_id == 0x5678
    span.finish()
    if local:
        [record] = spans(tracer)
        assert record.tags["sampler.type"] == "const"


def test_debug_flag_forces_sampling_even_when_deferred():
    tracer = make_test_tracer(sampler=ConstSampler(False))
    parent = SpanContext(7, 8, 0, DEBUG_FLAG, sampling_deferred=True)
    span = tracer.start_span("op", child_of=parent)
    assert span.context.flags == SAMPLED_FLAG | DEBUG_FLAG


def test_debug_id_only_context_starts_a_forced_root():
    tracer = make_test_tracer(sampler=ConstSampler(False))
    parent = SpanContext(0, 0, debug_id="dbg-42", baggage={"k": "v"})
    span = tracer.start_span("op", child_of=parent)
    assert span.context.trace_id != 0 and span.context.parent_id == 0
    assert span.context.flags == SAMPLED_FLAG | DEBUG_FLAG
    assert span.get_baggage_item("k") == "v"
    span.finish()
    assert spans(tracer)[0].tags["jaeger-debug-id"] == "dbg-42"


def test_baggage_only_context_uses_the_sampler():
    # jaeger-client bug: a baggage-only parent skipped the sampler and was never sampled.
    tracer = make_test_tracer(sampler=ConstSampler(True))
    span = tracer.start_span("op", child_of=SpanContext(0, 0, baggage={"user": "jason"},
                                                        sampling_deferred=True))
    assert span.is_sampled
    assert span.get_baggage_item("user") == "jason"
    # The same through a real carrier: only baggage headers, no trace.
    extracted = tracer.extract(opentracing.Format.HTTP_HEADERS, {"uberctx-user": "jason"})
    child = tracer.start_span("op", child_of=extracted)
    assert child.is_sampled and child.get_baggage_item("user") == "jason"


def test_bare_deny_without_ids_is_honoured():
    tracer = make_test_tracer(sampler=ConstSampler(True))
    span = tracer.start_span("op", child_of=SpanContext(0, 0, flags=0))
    assert not span.is_sampled
    assert span.context.trace_id != 0


def test_probabilistic_decision_is_bound_to_the_trace_id():
    tracer = make_test_tracer(sampler=ProbabilisticSampler(0.5))
    for _ in range(200):
        span = tracer.start_span("op")
        expected = (span.context.trace_id & 0xFFFFFFFFFFFFFFFF) < 2 ** 63
        assert span.is_sampled is expected


def test_references_child_of_and_follows_from():
    tracer = make_test_tracer()
    a = tracer.start_span("a")
    b = tracer.start_span("b", ignore_active_span=True)
    c = tracer.start_span("c", references=[opentracing.follows_from(a.context),
                                           opentracing.child_of(b.context)])
    # The CHILD_OF reference is the parent even when it is not the first.
    assert c.context.parent_id == b.context.span_id
    assert c.context.trace_id == b.context.trace_id
    c.finish()
    [record] = spans(tracer)
    assert record.references == [(FOLLOWS_FROM, a.context.trace_id, a.context.span_id),
                                 (CHILD_OF, b.context.trace_id, b.context.span_id)]


def test_follows_from_alone_is_the_parent():
    tracer = make_test_tracer()
    a = tracer.start_span("a")
    c = tracer.start_span("c", references=[opentracing.follows_from(a)])
    assert c.context.parent_id == a.context.span_id


def test_tag_types_and_truncation():
    tracer = make_test_tracer(max_tag_value_length=10)
    with tracer.start_span("op", tags={"initial": 1}) as span:
        span.set_tag("s", "x" * 50).set_tag("b", True).set_tag("i", 2 ** 70)
        span.set_tag("f", 1.5).set_tag("obj", object()).set_tag("raw", b"\x00" * 20)
    [record] = spans(tracer)
    assert record.tags["initial"] == 1
    assert record.tags["s"] == "x" * 10
    assert record.tags["b"] is True and record.tags["f"] == 1.5
    assert record.tags["i"] == 2 ** 70
    assert record.tags["obj"].startswith("<object")
    assert len(record.tags["obj"]) == 10
    assert record.tags["raw"] == b"\x00" * 10


def test_default_truncation_is_1024():
    tracer = make_test_tracer()
    with tracer.start_span("op") as span:
        span.set_tag("long", "y" * 2000)
    assert len(spans(tracer)[0].tags["long"]) == 1024


def test_error_from_with_block_is_tagged_and_reraised():
    tracer = make_test_tracer()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with tracer.start_active_span("failing"):
            raise Boom("kaput")
    [record] = spans(tracer)
    assert record.tags["error"] is True
    [(timestamp, fields)] = record.logs
    assert fields["event"] == "error"
    assert fields["error.kind"] == "Boom"
    assert fields["message"] == "kaput"
    assert "raise Boom" in fields["stack"]
    assert isinstance(fields["error.object"], str)


def test_logs_keep_fields_and_timestamps():
    tracer = make_test_tracer()
    span = tracer.start_span("op")
    span.log_kv({"event": "cache.miss", "n": 3}, timestamp=1700000000.5)
    span.finish()
    assert spans(tracer)[0].logs == [(1700000000500000, {"event": "cache.miss", "n": 3})]


def test_unsampled_spans_record_nothing_and_report_nothing():
    tracer = make_test_tracer(sampler=ConstSampler(False))
    span = tracer.start_span("op", tags={"a": 1})
    span.set_tag("b", 2).log_kv({"event": "x"})
    span.finish()
    assert span.tags == {} and span.logs == []
    assert spans(tracer) == []
    snapshot = tracer.metrics.snapshot()
    assert snapshot["tracer.spans.started.unsampled"] == 1
    assert snapshot["tracer.spans.finished"] == 1


def test_sampling_priority_turns_sampling_on_and_off():
    tracer = make_test_tracer(sampler=ConstSampler(False))
    span = tracer.start_span("op")
    span.set_tag(ext_tags.SAMPLING_PRIORITY, 1)
    assert span.context.flags == SAMPLED_FLAG | DEBUG_FLAG
    span.finish()
    assert len(spans(tracer)) == 1
    other = make_test_tracer().start_span("op", tags={ext_tags.SAMPLING_PRIORITY: 0})
    assert not other.is_sampled


def test_baggage_is_copied_to_children_and_logged():
    tracer = make_test_tracer()
    with tracer.start_active_span("parent") as scope:
        scope.span.set_baggage_item("user", "jason")
        scope.span.set_baggage_item("user", "admin")
        with tracer.start_active_span("child") as child:
            assert child.span.get_baggage_item("user") == "admin"
            child.span.set_baggage_item("only-child", "1")
        assert scope.span.get_baggage_item("only-child") is None
    parent_record = spans(tracer)[1]
    events = [fields for _, fields in parent_record.logs]
    assert events[0] == {"event": "baggage", "key": "user", "value": "jason"}
    assert events[1]["override"] == "true"


def test_finish_twice_reports_once_and_warns(caplog):
    tracer = make_test_tracer()
    span = tracer.start_span("op")
    span.finish()
    with caplog.at_level(logging.WARNING):
        span.finish()
    assert len(spans(tracer)) == 1
    assert "finish() called twice" in caplog.text
    assert tracer.metrics.snapshot()["tracer.internal_errors"] == 1


def test_changes_after_finish_are_ignored():
    tracer = make_test_tracer()
    span = tracer.start_span("op")
    span.finish()
    span.set_tag("late", 1).log_kv({"late": True})
    [record] = spans(tracer)
    assert "late" not in record.tags and record.logs == []


def test_broken_sampler_never_reaches_the_app():
    class Broken(ConstSampler):
        def is_sampled(self, trace_id, operation):
            raise RuntimeError("sampler bug")

    tracer = make_test_tracer(sampler=Broken(True))
    span = tracer.start_span("op")
    assert not span.is_sampled
    assert tracer.metrics.snapshot()["tracer.internal_errors"] == 1


def test_broken_reporter_never_reaches_the_app():
    class Broken(InMemoryReporter):
        def report_span(self, record):
            raise RuntimeError("reporter bug")

    tracer = Tracer("svc", Broken(), ConstSampler(True))
    tracer.start_span("op").finish()
    assert tracer.metrics.snapshot()["tracer.internal_errors"] == 1


def test_foreign_parent_context_starts_a_new_trace():
    tracer = make_test_tracer()
    foreign = opentracing.Tracer().start_span("noop")
    span = tracer.start_span("op", child_of=foreign)
    assert span.context.parent_id == 0 and span.context.trace_id


def test_inject_and_extract_round_trip_through_every_format():
    tracer = make_test_tracer()
    with tracer.start_active_span("op") as scope:
        scope.span.set_baggage_item("k", "v v")
        for fmt, carrier in ((opentracing.Format.TEXT_MAP, {}),
                             (opentracing.Format.HTTP_HEADERS, {}),
                             (opentracing.Format.BINARY, bytearray())):
            tracer.inject(scope.span, fmt, carrier)
            extracted = tracer.extract(fmt, carrier)
            assert extracted.trace_id == scope.span.context.trace_id
            assert extracted.span_id == scope.span.context.span_id
            assert extracted.is_sampled
            assert extracted.baggage == {"k": "v v"}


def test_extract_of_garbage_returns_none():
    tracer = make_test_tracer()
    assert tracer.extract(opentracing.Format.HTTP_HEADERS, {"x-b3-traceid": "zz"}) is None
    assert tracer.extract(opentracing.Format.BINARY, bytearray(b"\x01\x02")) is None


def test_close_is_idempotent():
    tracer = make_test_tracer()
    assert tracer.close() is True
    assert tracer.close() is True
