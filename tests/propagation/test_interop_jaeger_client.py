"""Interop with the real jaeger-client 4.8.0 codecs, in both directions.

Where jaeger-client's own bugs make it read something differently, the test asserts its
documented behaviour (shared/reference/jaeger-wire.md section 9) rather than hiding it.
"""

from __future__ import annotations

import pytest
from opentracing import SpanContextCorruptedException

jaeger_codecs = pytest.importorskip("jaeger_client.codecs")
from jaeger_client.span_context import SpanContext as JaegerSpanContext  # noqa: E402

from opentracing_sls.propagation import B3Codec, BinaryCodec, JaegerCodec  # noqa: E402
from opentracing_sls.span_context import SpanContext  # noqa: E402

T64 = 0x463AC35C9F6413AD
T128 = 0x863AC35C9F6413AD48485A3953BB6124
T128_LEADING_ZERO = 0x063AC35C9F6413AD48485A3953BB6124  # 31 hex digits unpadded
S = 0xA2FB4A1D1A96D312
P = 0x0020000000000001


def theirs(context):
    return (context.trace_id, context.span_id, context.parent_id or 0, context.flags,
            dict(context.baggage))


def ours(context):
    return (context.trace_id, context.span_id, context.parent_id, context.flags,
            dict(context.baggage))


# -- B3 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("trace_id, parent_id, flags, expected_flags, deferred", [
    (T64, None, 1, 1, False),
    (T64, P, 1, 1, False),
    (T128, P, 1, 1, False),
    (T64, None, 3, 3, False),  # X-B3-Flags: 1 -> debug and sampled
    # jaeger-client never writes X-B3-Sampled: 0 (bug 4): its deny reaches us as "no
    # decision", which the spec says defers to our sampler.
    (T64, P, 0, 0, True),
])
def test_jaeger_client_b3_headers_extract_with_ours(trace_id, parent_id, flags, expected_flags,
                                                    deferred):
    carrier = {}
    jaeger_codecs.B3Codec(generate_128bit_trace_id=trace_id > 2**64).inject(
        JaegerSpanContext(trace_id, S, parent_id, flags), carrier)
    context = B3Codec().extract(carrier)
    assert ours(context) == (trace_id, S, parent_id or 0, expected_flags, {})
    assert context.sampling_deferred is deferred


def test_jaeger_client_b3_drops_leading_zeros_of_128_bit_ids_unless_told():
    # generate_128bit_trace_id=False pads to 16 only: a 128-bit id with a leading zero nibble
    # becomes 31 digits, which B3 forbids; we start a new trace instead of guessing.
    carrier = {}
    jaeger_codecs.B3Codec().inject(JaegerSpanContext(T128_LEADING_ZERO, S, None, 1), carrier)
    assert len(carrier["X-B3-TraceId"]) == 31
    assert B3Codec().extract(carrier) is None
    carrier = {}
    jaeger_codecs.B3Codec(generate_128bit_trace_id=True).inject(
        JaegerSpanContext(T128_LEADING_ZERO, S, None, 1), carrier)
    assert B3Codec().extract(carrier).trace_id == T128_LEADING_ZERO


@pytest.mark.parametrize("context, their_flags, their_parent", [
    (SpanContext(T64, S, 0, 1), 1, None),
    (SpanContext(T128_LEADING_ZERO, S, P, 1), 1, P),  # we keep the 32 digits
    (SpanContext(T64, S, P, 0), 0, P),  # our X-B3-Sampled: 0 reads as not sampled
    # jaeger-client reads X-B3-Flags: 1 as DEBUG without SAMPLED (bug 3)
    (SpanContext(T64, S, 0, 3), 2, None),
    # and a missing X-B3-Sampled as not sampled (bug 2)
    (SpanContext(T64, S, 0, 0, sampling_deferred=True), 0, None),
])
def test_our_b3_headers_extract_with_jaeger_client(context, their_flags, their_parent):
    carrier = {}
    B3Codec().inject(context, carrier)
    extracted = jaeger_codecs.B3Codec().extract(carrier)
    assert (extracted.trace_id, extracted.span_id, extracted.parent_id, extracted.flags) == (
        context.trace_id, context.span_id, their_parent, their_flags)


def test_our_deny_only_b3_is_nothing_to_jaeger_client():
    carrier = {}
    B3Codec().inject(SpanContext(0, 0, flags=0), carrier)
    assert carrier == {"x-b3-sampled": "0"}
    assert jaeger_codecs.B3Codec().extract(carrier) is None


def test_malformed_b3_raises_in_jaeger_client_but_not_in_ours():
    carrier = {"X-B3-TraceId": "not-hex", "X-B3-SpanId": "a2fb4a1d1a96d312"}
    with pytest.raises(SpanContextCorruptedException):
        jaeger_codecs.B3Codec().extract(carrier)
    assert B3Codec().extract(carrier) is None


def test_jaeger_client_ignores_our_single_b3_header():
    carrier = {}
    B3Codec(multi_header=False, single_header=True).inject(SpanContext(T64, S, 0, 1), carrier)
    assert jaeger_codecs.B3Codec().extract(carrier) is None


# -- uber-trace-id ------------------------------------------------------------------------------

CONTEXTS = [
    (T64, S, None, 1, {}),
    (T64, S, P, 0, {"user": "alice"}),
    (T128, S, P, 3, {"a": "1", "spaced": "a b&c=d/é"}),
    (T128_LEADING_ZERO, S, None, 1, {}),
]


@pytest.mark.parametrize("url_encoding", [False, True])
@pytest.mark.parametrize("trace_id, span_id, parent_id, flags, baggage", CONTEXTS)
def test_jaeger_client_text_extracts_with_ours(trace_id, span_id, parent_id, flags, baggage,
                                                url_encoding):
    carrier = {}
    jaeger_codecs.TextCodec(url_encoding=url_encoding).inject(
        JaegerSpanContext(trace_id, span_id, parent_id, flags, baggage), carrier)
    context = JaegerCodec(url_encoding=url_encoding).extract(carrier)
    assert ours(context) == (trace_id, span_id, parent_id or 0, flags, baggage)
    assert not context.sampling_deferred


@pytest.mark.parametrize("url_encoding", [False, True])
@pytest.mark.parametrize("trace_id, span_id, parent_id, flags, baggage", CONTEXTS)
def test_our_text_extracts_with_jaeger_client(trace_id, span_id, parent_id, flags, baggage,
                                              url_encoding):
    carrier = {}
    JaegerCodec(url_encoding=url_encoding).inject(
        SpanContext(trace_id, span_id, parent_id or 0, flags, baggage), carrier)
    context = jaeger_codecs.TextCodec(url_encoding=url_encoding).extract(carrier)
    assert theirs(context) == (trace_id, span_id, parent_id or 0, flags, baggage)


def test_trace_id_padding_differs_but_both_parse_it():
    context = SpanContext(T128_LEADING_ZERO, S, 0, 1)
    our_carrier, their_carrier = {}, {}
    JaegerCodec().inject(context, our_carrier)
    jaeger_codecs.TextCodec().inject(JaegerSpanContext(T128_LEADING_ZERO, S, None, 1),
                                     their_carrier)
    assert our_carrier["uber-trace-id"].split(":")[0] == f"{T128_LEADING_ZERO:032x}"
    assert their_carrier["uber-trace-id"].split(":")[0] == f"{T128_LEADING_ZERO:x}"
    assert JaegerCodec().extract(their_carrier).trace_id == T128_LEADING_ZERO
    assert jaeger_codecs.TextCodec().extract(our_carrier).trace_id == T128_LEADING_ZERO


def test_debug_id_and_baggage_header_read_alike():
    carrier = {"jaeger-debug-id": "req-42", "jaeger-baggage": "k1=v1, k2=v2"}
    theirs_ctx = jaeger_codecs.TextCodec().extract(carrier)
    ours_ctx = JaegerCodec().extract(carrier)
    assert theirs_ctx.debug_id == ours_ctx.debug_id == "req-42"
    assert dict(theirs_ctx.baggage) == ours_ctx.baggage == {"k1": "v1", "k2": "v2"}
    assert not ours_ctx.has_trace and theirs_ctx.trace_id is None


def test_malformed_uber_trace_id_raises_in_jaeger_client_but_not_in_ours():
    carrier = {"uber-trace-id": "1:2:3"}
    with pytest.raises(SpanContextCorruptedException):
        jaeger_codecs.TextCodec().extract(carrier)
    assert JaegerCodec().extract(carrier) is None


# -- binary -------------------------------------------------------------------------------------

@pytest.mark.parametrize("trace_id, span_id, parent_id, flags, baggage", CONTEXTS)
def test_jaeger_client_binary_extracts_with_ours(trace_id, span_id, parent_id, flags, baggage):
    carrier = bytearray()
    jaeger_codecs.BinaryCodec().inject(
        JaegerSpanContext(trace_id, span_id, parent_id, flags, baggage), carrier)
    assert ours(BinaryCodec().extract(carrier)) == (trace_id, span_id, parent_id or 0, flags,
                                                    baggage)


@pytest.mark.parametrize("trace_id, span_id, parent_id, flags, baggage", CONTEXTS)
def test_our_binary_extracts_with_jaeger_client(trace_id, span_id, parent_id, flags, baggage):
    carrier = bytearray()
    BinaryCodec().inject(SpanContext(trace_id, span_id, parent_id or 0, flags, baggage), carrier)
    their_carrier = bytearray()
    jaeger_codecs.BinaryCodec().inject(
        JaegerSpanContext(trace_id, span_id, parent_id, flags, baggage), their_carrier)
    assert carrier == their_carrier  # byte-for-byte the same
    assert theirs(jaeger_codecs.BinaryCodec().extract(carrier)) == (
        trace_id, span_id, parent_id or 0, flags, baggage)
