"""The composite codec: configured order, id precedence, baggage merge; build_text_codec."""

from __future__ import annotations

import pytest
from opentracing import InvalidCarrierException

from opentracing_sls.propagation import (
    DEFAULT_PROPAGATION,
    PROPAGATION_NAMES,
    B3Codec,
    CompositeCodec,
    JaegerCodec,
    W3CCodec,
    build_text_codec,
)
from opentracing_sls.span_context import SpanContext

B3_TRACE = "463ac35c9f6413ad48485a3953bb6124"
B3_SPAN = "a2fb4a1d1a96d312"
W3C_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
W3C_SPAN = "00f067aa0ba902b7"

B3_HEADERS = {"X-B3-TraceId": B3_TRACE, "X-B3-SpanId": B3_SPAN, "X-B3-Sampled": "1"}
W3C_HEADERS = {"traceparent": f"00-{W3C_TRACE}-{W3C_SPAN}-00", "tracestate": "w=1"}
JAEGER_HEADERS = {"uber-trace-id": "1:2:0:1", "uberctx-user": "alice",
                  "jaeger-baggage": "tenant=acme"}


def test_default_propagation():
    assert DEFAULT_PROPAGATION == ("b3", "w3c", "jaeger")
    assert PROPAGATION_NAMES == ("b3", "b3single", "w3c", "jaeger")
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    assert [type(c) for c in codec.codecs] == [B3Codec, W3CCodec, JaegerCodec]
    assert codec.codecs[2].url_encoding is True
    assert build_text_codec(["jaeger"], url_encoding=False).codecs[0].url_encoding is False


def test_build_rejects_unknown_names():
    with pytest.raises(ValueError) as info:
        build_text_codec(["b3", "zipkin"], url_encoding=False)
    message = str(info.value)
    assert "'zipkin'" in message
    for name in PROPAGATION_NAMES:
        assert name in message
    with pytest.raises(ValueError):
        build_text_codec([], url_encoding=False)
    with pytest.raises(ValueError):
        build_text_codec(" , ", url_encoding=False)
    with pytest.raises(ValueError):
        build_text_codec([None], url_encoding=False)


def test_build_accepts_any_case_a_string_and_repeats():
    codec = build_text_codec(" W3C, jaeger,,w3c ", url_encoding=False)
    assert [type(c) for c in codec.codecs] == [W3CCodec, JaegerCodec]


@pytest.mark.parametrize("names, multi, single", [
    (["b3"], True, False),
    (["b3single"], False, True),
    (["b3", "b3single"], True, True),
    (["b3single", "w3c", "b3"], True, True),
])
def test_b3_names_share_one_codec(names, multi, single):
    codec = build_text_codec(names, url_encoding=False)
    b3 = [c for c in codec.codecs if isinstance(c, B3Codec)]
    assert len(b3) == 1
    assert (b3[0].multi_header, b3[0].single_header) == (multi, single)
    assert isinstance(codec.codecs[0], B3Codec)  # at the position of the first B3 name


def test_composite_needs_codecs():
    with pytest.raises(ValueError):
        CompositeCodec([])


def test_configured_order_decides_between_two_contexts_with_ids():
    carrier = {**B3_HEADERS, **W3C_HEADERS}
    b3_first = build_text_codec(["b3", "w3c"], url_encoding=True).extract(carrier)
    assert b3_first.trace_id == int(B3_TRACE, 16)
    assert b3_first.is_sampled
    assert b3_first.trace_state is None  # different trace: its tracestate does not apply
    w3c_first = build_text_codec(["w3c", "b3"], url_encoding=True).extract(carrier)
    assert w3c_first.trace_id == int(W3C_TRACE, 16)
    assert not w3c_first.is_sampled
    assert w3c_first.trace_state == "w=1"


def test_b3_single_precedence_inside_the_composite():
    carrier = {"b3": f"{B3_TRACE}-{B3_SPAN}-0", "X-B3-TraceId": "1" * 16,
               "X-B3-SpanId": "2" * 16, "X-B3-Sampled": "1"}
    context = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(carrier)
    assert (context.trace_id, context.span_id, context.flags) == (
        int(B3_TRACE, 16), int(B3_SPAN, 16), 0)


def test_ids_win_over_an_earlier_codec_without_ids():
    # b3: 0 is a bare decision; the first codec with ids provides the context.
    carrier = {"b3": "0", **W3C_HEADERS}
    context = build_text_codec(["b3", "w3c"], url_encoding=True).extract(carrier)
    assert context.trace_id == int(W3C_TRACE, 16)


def test_baggage_from_other_codecs_is_merged():
    carrier = {**B3_HEADERS, **JAEGER_HEADERS}
    context = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(carrier)
    assert (context.trace_id, context.span_id, context.flags, context.sampling_deferred) == (
        int(B3_TRACE, 16), int(B3_SPAN, 16), 1, False)
    assert context.baggage == {"user": "alice", "tenant": "acme"}


def test_chosen_context_wins_baggage_conflicts():
    carrier = {"uber-trace-id": "1:2:0:1", "uberctx-k": "jaeger"}

    class FixedBaggage(B3Codec):
        def extract_from(self, headers):
            return SpanContext(0, 0, baggage={"k": "other", "only": "other"})

    codec = CompositeCodec([FixedBaggage(), JaegerCodec()])
    context = codec.extract(carrier)
    assert (context.trace_id, context.span_id) == (1, 2)
    assert context.baggage == {"k": "jaeger", "only": "other"}


def test_earlier_codec_wins_conflicts_among_the_others():
    class Fixed(B3Codec):
        def __init__(self, context):
            super().__init__()
            self.context = context

        def extract_from(self, headers):
            return self.context

    codec = CompositeCodec([
        Fixed(SpanContext(0, 0, baggage={"k": "first"})),
        Fixed(SpanContext(0, 0, baggage={"k": "second", "x": "second"})),
        Fixed(SpanContext(5, 6, 0, 1)),
    ])
    context = codec.extract({})
    assert (context.trace_id, context.baggage) == (5, {"k": "first", "x": "second"})


def test_without_ids_the_first_result_wins_and_keeps_the_others_extras():
    carrier = {"b3": "0", "uberctx-user": "alice", "jaeger-debug-id": "dbg"}
    context = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(carrier)
    assert (context.trace_id, context.span_id, context.flags, context.sampling_deferred) == (
        0, 0, 0, False)
    assert context.baggage == {"user": "alice"}
    assert context.debug_id == "dbg"


def test_baggage_only():
    context = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(
        {"uberctx-a": "1"})
    assert (context.trace_id, context.baggage) == (0, {"a": "1"})


def test_tracestate_of_the_same_trace_is_kept():
    carrier = {"X-B3-TraceId": W3C_TRACE, "X-B3-SpanId": W3C_SPAN, **W3C_HEADERS}
    context = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(carrier)
    assert context.sampling_deferred  # from B3, which has no Sampled header
    assert context.trace_state == "w=1"


def test_nothing_found():
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    assert codec.extract({}) is None
    assert codec.extract({"x-b3-sampled": "garbage", "traceparent": "x",
                          "uber-trace-id": "y"}) is None


def test_single_codec_result_is_returned_as_is():
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    context = codec.extract(B3_HEADERS)
    assert context == B3Codec().extract(B3_HEADERS)


def test_carrier_read_once():
    calls = []

    class Carrier:
        def items(self):
            calls.append(1)
            return iter(B3_HEADERS.items())

    build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).extract(Carrier())
    assert len(calls) == 1


def test_inject_writes_every_configured_format():
    context = SpanContext(int(B3_TRACE, 16), int(B3_SPAN, 16), 0x20, 1,
                          baggage={"user": "a b"}, trace_state="w=1")
    carrier = {}
    build_text_codec(["b3", "b3single", "w3c", "jaeger"], url_encoding=True).inject(
        context, carrier)
    assert carrier == {
        "x-b3-traceid": B3_TRACE,
        "x-b3-spanid": B3_SPAN,
        "x-b3-parentspanid": "0000000000000020",
        "x-b3-sampled": "1",
        "b3": f"{B3_TRACE}-{B3_SPAN}-1-0000000000000020",
        "traceparent": f"00-{B3_TRACE}-{B3_SPAN}-01",
        "tracestate": "w=1",
        "uber-trace-id": f"{B3_TRACE}:{B3_SPAN}:20:1",
        "uberctx-user": "a%20b",
    }
    # Every configured order reads the same context back.
    for names in (["b3", "w3c", "jaeger"], ["w3c", "jaeger", "b3"], ["jaeger", "b3", "w3c"]):
        back = build_text_codec(names, url_encoding=True).extract(carrier)
        assert (back.trace_id, back.span_id, back.flags, back.baggage, back.trace_state) == (
            context.trace_id, context.span_id, 1, {"user": "a b"}, "w=1")


def test_inject_rejects_wrong_carrier():
    with pytest.raises(InvalidCarrierException):
        build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).inject(SpanContext(1, 2), [])
