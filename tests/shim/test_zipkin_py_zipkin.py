"""py_zipkin's own V2_JSON and V1_JSON encoders as the peer: what they write decodes correctly,
and the v1 and v2 encodings of one span decode to the same model span."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest

from opentracing_sls.shim.model import BOOL, LONG, STRING, Log, Span, Tag, span_kind
from opentracing_sls.shim.zipkin import (
    decode_zipkin_v1_json,
    decode_zipkin_v2_json,
    shared_server_span_id,
)

encoding = pytest.importorskip("py_zipkin.encoding")
from py_zipkin import Encoding, Kind  # noqa: E402

TRACE_64 = "6b221d5bc9e6496c"
TRACE_128 = "463ac35c9f6413ad48485a3953bb6124"
# Times exactly representable as binary floats: py_zipkin takes seconds and writes int(s * 1e6).
START = 1700000000.5
DURATION = 0.25
START_US = 1700000000500000
DURATION_US = 250000

DECODERS: Dict[Any, Callable[[bytes], Any]] = {
    Encoding.V2_JSON: decode_zipkin_v2_json,
    Encoding.V1_JSON: decode_zipkin_v1_json,
}


def encode(spans: List[Any], enc: Any) -> bytes:
    encoder = encoding.get_encoder(enc)
    body = encoder.encode_queue([encoder.encode_span(span) for span in spans])
    return body.encode() if isinstance(body, str) else body


def roundtrip(spans: List[Any], enc: Any) -> List[Span]:
    result = DECODERS[enc](encode(spans, enc))
    assert result.skipped == 0, result.first_error
    return result.spans


def zspan(kind: Any, trace_id: str = TRACE_128, **fields: Any) -> Any:
    args: Dict[str, Any] = dict(
        trace_id=trace_id, name="get /details", parent_id="0000000000000abc",
        span_id="00000000000000de", kind=kind, timestamp=START, duration=DURATION,
        local_endpoint=encoding.create_endpoint(9080, "details", "10.0.0.7"),
        tags={"http.method": "GET", "http.status_code": "200"},
        annotations={"cache.hit": START + 0.125})
    args.update(fields)
    return encoding.Span(**args)


@pytest.mark.parametrize("enc", [Encoding.V2_JSON, Encoding.V1_JSON])
@pytest.mark.parametrize("trace_id", [TRACE_64, TRACE_128])
@pytest.mark.parametrize("kind", [Kind.CLIENT, Kind.SERVER])
def test_rpc_span(enc: Any, trace_id: str, kind: Any) -> None:
    remote = encoding.create_endpoint(0 if kind == Kind.CLIENT else 40312,
                                      "productpage" if kind == Kind.CLIENT else None,
                                      "10.0.0.9")
    (span,) = roundtrip([zspan(kind, trace_id, remote_endpoint=remote)], enc)
    assert span.trace_id == int(trace_id, 16)
    assert (span.trace_id >> 64 != 0) == (len(trace_id) == 32)
    assert (span.span_id, span.parent_id) == (0xDE, 0xABC)
    assert span.operation_name == "get /details"
    assert (span.start_time, span.duration) == (START_US, DURATION_US)
    assert span_kind(span) == kind.value.lower()
    assert span.process.service_name == "details"
    assert span.process.tags == (Tag("ip", STRING, "10.0.0.7"), Tag("port", LONG, 9080))
    tags = {t.key: t for t in span.tags}
    assert tags["http.status_code"] == Tag("http.status_code", STRING, "200")
    assert tags["peer.ipv4"] == Tag("peer.ipv4", STRING, "10.0.0.9")
    if kind == Kind.CLIENT:
        assert tags["peer.service"] == Tag("peer.service", STRING, "productpage")
        assert "peer.port" not in tags
    else:
        assert tags["peer.port"] == Tag("peer.port", LONG, 40312)
        # create_endpoint(service_name=None) defaults to "unknown".
        assert tags["peer.service"] == Tag("peer.service", STRING, "unknown")
    assert span.logs == (Log(START_US + 125000, (Tag("event", STRING, "cache.hit"),)),)


@pytest.mark.parametrize("kind", [Kind.CLIENT, Kind.SERVER, Kind.PRODUCER, Kind.CONSUMER,
                                  Kind.LOCAL])
def test_v1_and_v2_encodings_decode_alike(kind: Any) -> None:
    span = zspan(kind)
    v2 = roundtrip([span], Encoding.V2_JSON)
    v1 = roundtrip([span], Encoding.V1_JSON)
    assert v1 == v2
    assert span_kind(v2[0]) == ("" if kind == Kind.LOCAL else kind.value.lower())


@pytest.mark.parametrize("enc", [Encoding.V2_JSON, Encoding.V1_JSON])
def test_shared_server_span(enc: Any) -> None:
    # py_zipkin's v1 writer leaves timestamp/duration off a shared span (the v1 convention).
    client = zspan(Kind.CLIENT, span_id="00000000000000de",
                   local_endpoint=encoding.create_endpoint(0, "productpage", "10.0.0.9"))
    server = zspan(Kind.SERVER, span_id="00000000000000de", shared=True,
                   timestamp=START + 0.0625, duration=0.125, annotations={})
    c, s = roundtrip([client, server], enc)
    assert (c.span_id, c.parent_id) == (0xDE, 0xABC)
    assert s.span_id == shared_server_span_id(int(TRACE_128, 16), 0xDE)
    assert s.parent_id == 0xDE
    assert Tag("shared", BOOL, True) in s.tags
    assert (s.start_time, s.duration) == (START_US + 62500, 125000)
    assert [c.process.service_name, s.process.service_name] == ["productpage", "details"]


@pytest.mark.parametrize("enc", [Encoding.V2_JSON, Encoding.V1_JSON])
def test_error_tag(enc: Any) -> None:
    # (py_zipkin's encoders never write "debug", so the DEBUG flag is tested by hand elsewhere.)
    (span,) = roundtrip([zspan(Kind.SERVER, tags={"error": "timeout"})], enc)
    tags = {t.key: t for t in span.tags}
    assert tags["error"] == Tag("error", BOOL, True)
    assert tags["error.message"] == Tag("error.message", STRING, "timeout")
