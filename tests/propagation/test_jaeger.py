"""The Jaeger text codec: uber-trace-id, uberctx- baggage, jaeger-debug-id, jaeger-baggage."""

from __future__ import annotations

import pytest
from opentracing import InvalidCarrierException

from opentracing_sls.propagation import JaegerCodec
from opentracing_sls.span_context import SpanContext

T64 = 0x463AC35C9F6413AD
T128 = 0x063AC35C9F6413AD48485A3953BB6124
S = 0xA2FB4A1D1A96D312
P = 0x20000000000001


def fields(context):
    return (context.trace_id, context.span_id, context.parent_id, context.flags,
            context.sampling_deferred)


@pytest.mark.parametrize("value, expected", [
    ("463ac35c9f6413ad:a2fb4a1d1a96d312:0:1", (T64, S, 0, 1, False)),
    ("463ac35c9f6413ad:a2fb4a1d1a96d312:20000000000001:0", (T64, S, P, 0, False)),
    ("463ac35c9f6413ad:a2fb4a1d1a96d312:0:3", (T64, S, 0, 3, False)),
    ("463ac35c9f6413ad:a2fb4a1d1a96d312:0:2", (T64, S, 0, 2, False)),
    # jaeger-client writes unpadded ids: a 128-bit id with a leading zero nibble is 31 digits
    ("63ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1", (T128, S, 0, 1, False)),
    ("063ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1", (T128, S, 0, 1, False)),
    ("1:2:3:1", (1, 2, 3, 1, False)),
    ("463AC35C9F6413AD:A2FB4A1D1A96D312:0:1", (T64, S, 0, 1, False)),
    (" 1:2:0:1 ", (1, 2, 0, 1, False)),
    ("1%3A2%3A0%3A1", (1, 2, 0, 1, False)),  # URL-encoded by a proxy
])
def test_extract_uber_trace_id(value, expected):
    assert fields(JaegerCodec().extract({"Uber-Trace-Id": value})) == expected


@pytest.mark.parametrize("value", [
    "", "1:2:0", "1:2:0:1:5", "0:2:0:1", "1:0:0:1", "x:2:0:1", "1:2:0:x", "1::0:1",
    "0x1:2:0:1", "+1:2:0:1", "1:2:-0:1", "1_0:2:0:1", "1:2:0:100",
    "1" * 33 + ":2:0:1", "1:" + "2" * 17 + ":0:1", "1:2:" + "3" * 17 + ":1",
    "1-2-0-1", "héllo", "1:2:0:1\n1", "1:2:0:1 1",
])
def test_extract_malformed_uber_trace_id_gives_none(value):
    assert JaegerCodec().extract({"uber-trace-id": value}) is None


def test_malformed_ids_keep_baggage_and_debug_id():
    context = JaegerCodec().extract({"uber-trace-id": "garbage", "uberctx-k": "v",
                                     "jaeger-debug-id": "dbg"})
    assert (context.trace_id, context.span_id) == (0, 0)
    assert not context.has_trace
    assert context.baggage == {"k": "v"}
    assert context.debug_id == "dbg"


def test_debug_id_only():
    context = JaegerCodec().extract({"Jaeger-Debug-Id": "  abc  "})
    assert (context.trace_id, context.span_id, context.debug_id) == (0, 0, "abc")
    assert JaegerCodec().extract({"jaeger-debug-id": "   "}) is None


def test_debug_id_next_to_ids_is_kept():
    context = JaegerCodec().extract({"uber-trace-id": "1:2:0:1", "jaeger-debug-id": "x"})
    assert context.has_trace and context.debug_id == "x"


def test_baggage_prefix_and_header_merge():
    context = JaegerCodec().extract({
        "uber-trace-id": "1:2:0:1",
        "UberCtx-User": "alice",
        "jaeger-baggage": "k1=v1, k2 = v2,bad,=x,user=bob,k3=a=b",
    })
    # uberctx-* wins over jaeger-baggage; keys of uberctx-* headers are lowercase.
    assert context.baggage == {"user": "alice", "k1": "v1", "k2": "v2", "k3": "a=b"}


def test_baggage_only():
    context = JaegerCodec().extract({"jaeger-baggage": "a=1"})
    assert (context.trace_id, context.baggage) == (0, {"a": "1"})
    assert JaegerCodec().extract({"jaeger-baggage": "nothing here"}) is None
    assert JaegerCodec().extract({"uberctx-": "no key"}) is None
    assert JaegerCodec().extract({}) is None


def test_url_encoding_round_trip():
    codec = JaegerCodec(url_encoding=True)
    context = SpanContext(T64, S, P, 1, baggage={"text": "a b&c=d/é,", "plain": "x"})
    carrier = {}
    codec.inject(context, carrier)
    assert carrier["uberctx-text"] == "a%20b%26c%3Dd/%C3%A9%2C"
    assert carrier["uberctx-plain"] == "x"
    assert codec.extract(carrier) == context


def test_without_url_encoding_values_are_verbatim():
    codec = JaegerCodec(url_encoding=False)
    context = SpanContext(T64, S, 0, 1, baggage={"text": "a%20b c"})
    carrier = {}
    codec.inject(context, carrier)
    assert carrier["uberctx-text"] == "a%20b c"
    assert codec.extract(carrier).baggage == {"text": "a%20b c"}


def test_url_encoded_debug_id_and_baggage_header():
    context = JaegerCodec(url_encoding=True).extract(
        {"jaeger-debug-id": "a%20b", "jaeger-baggage": "k%3Dv%2Ck2%3Dv%202"})
    assert context.debug_id == "a b"
    assert context.baggage == {"k": "v", "k2": "v 2"}


@pytest.mark.parametrize("context, value", [
    (SpanContext(T64, S, 0, 1), "463ac35c9f6413ad:a2fb4a1d1a96d312:0:1"),
    (SpanContext(T64, S, P, 0), "463ac35c9f6413ad:a2fb4a1d1a96d312:20000000000001:0"),
    (SpanContext(T64, S, 0, 3), "463ac35c9f6413ad:a2fb4a1d1a96d312:0:3"),
    # trace ids are padded (jaeger-client does not); span/parent ids stay unpadded like it
    (SpanContext(1, 2, 3, 1), "0000000000000001:2:3:1"),
    (SpanContext(T128, S, 0, 1), "063ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1"),
    (SpanContext(1 << 64, 2, 0, 1), "00000000000000010000000000000000:2:0:1"),
    # no "deferred" on this wire: written as not sampled
    (SpanContext(T64, S, 0, 0, sampling_deferred=True), "463ac35c9f6413ad:a2fb4a1d1a96d312:0:0"),
])
def test_inject(context, value):
    carrier = {}
    JaegerCodec().inject(context, carrier)
    assert carrier == {"uber-trace-id": value}
    back = JaegerCodec().extract(carrier)
    assert fields(back)[:3] == (context.trace_id, context.span_id, context.parent_id)


def test_inject_without_ids_writes_only_baggage():
    carrier = {"uber-trace-id": "stale:1:0:1"}
    JaegerCodec().inject(SpanContext(0, 0, baggage={"k": "v"}, debug_id="d"), carrier)
    assert carrier == {"uberctx-k": "v"}


def test_inject_does_not_write_debug_id_or_trace_state():
    carrier = {}
    JaegerCodec().inject(SpanContext(1, 2, 0, 3, debug_id="d", trace_state="a=b"), carrier)
    assert carrier == {"uber-trace-id": "0000000000000001:2:0:3"}


def test_round_trip_with_baggage():
    context = SpanContext(T128, S, P, 3, baggage={"a": "1", "b": "two"})
    for url_encoding in (False, True):
        carrier = {}
        JaegerCodec(url_encoding).inject(context, carrier)
        assert JaegerCodec(url_encoding).extract(carrier) == context


def test_wrong_carriers():
    with pytest.raises(InvalidCarrierException):
        JaegerCodec().inject(SpanContext(1, 2), [])
    with pytest.raises(InvalidCarrierException):
        JaegerCodec().extract(None)


def test_keys_that_cannot_be_header_names_are_not_written_as_headers():
    context = SpanContext(1, 2, 0, 1, baggage={"ok-key_1.x": "1", "with space": "2",
                                               "colon:key": "3", "ümlaut": "4", "": "5"})
    carrier = {}
    JaegerCodec(url_encoding=True).inject(context, carrier)
    assert sorted(carrier) == ["uber-trace-id", "uberctx-ok-key_1.x"]
    # A text map is not HTTP: every item travels.
    carrier = {}
    JaegerCodec(url_encoding=False).inject(context, carrier)
    assert len(carrier) == 6


def test_jaeger_baggage_keys_keep_their_case_like_jaeger_client():
    context = JaegerCodec().extract({"jaeger-baggage": "UserId=5", "UberCtx-Tenant": "x"})
    assert context.baggage == {"UserId": "5", "tenant": "x"}
