"""Zipkin v1 JSON -> span model: Istio 1.0 Envoys (shared client/server spans) and v1 rules."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DEBUG_FLAG,
    DOUBLE,
    LONG,
    SAMPLED_FLAG,
    STRING,
    Log,
    Reference,
    Span,
    Tag,
    span_kind,
)
from opentracing_sls.shim.zipkin import (
    UNKNOWN_SERVICE_NAME,
    ZipkinDecodeResult,
    decode_zipkin_v1_json,
    shared_server_span_id,
)

TRACE = "463ac35c9f6413ad"
PARENT = "a2fb4a1d1a96d312"  # the ingress gateway's span
SHARED = "b7ad6b7169203331"  # productpage -> details, shared by both sidecars
PRODUCTPAGE = {"ipv4": "10.4.0.12", "port": 0, "serviceName": "productpage"}
DETAILS = {"ipv4": "10.4.0.15", "port": 0, "serviceName": "details"}


def tags_of(span: Span) -> Dict[str, Tag]:
    out = {tag.key: tag for tag in span.tags}
    assert len(out) == len(span.tags), "duplicate tag keys: %r" % (span.tags,)
    return out


def decode(spans: List[Dict[str, Any]]) -> ZipkinDecodeResult:
    return decode_zipkin_v1_json(json.dumps(spans).encode())


def one(span: Dict[str, Any]) -> Span:
    result = decode([span])
    assert result.skipped == 0, result.first_error
    assert len(result.spans) == 1
    return result.spans[0]


def ann(timestamp: int, value: str, endpoint: Dict[str, Any]) -> Dict[str, Any]:
    return {"timestamp": timestamp, "value": value, "endpoint": endpoint}


def envoy_binary(url: str, status: str) -> List[Dict[str, Any]]:
    # Envoy's v1 binary annotations carry no endpoint.
    return [{"key": "guid:x-request-id", "value": "8a1b2c3d-0000-4000-8000-0123456789ab"},
            {"key": "http.url", "value": url}, {"key": "http.method", "value": "GET"},
            {"key": "http.protocol", "value": "HTTP/1.1"},
            {"key": "http.status_code", "value": status},
            {"key": "node_id", "value": "sidecar~10.4.0.12~productpage-v1-5d9f.default~default"},
            {"key": "response_flags", "value": "-"}]


def istio10_client() -> Dict[str, Any]:
    """productpage's sidecar: the client side, owner of timestamp/duration (cs/cr)."""
    return {"traceId": TRACE, "name": "details:9080/*", "id": SHARED, "parentId": PARENT,
            "timestamp": 1532000000100000, "duration": 6000,
            "annotations": [ann(1532000000100000, "cs", PRODUCTPAGE),
                            ann(1532000000106000, "cr", PRODUCTPAGE)],
            "binaryAnnotations": envoy_binary("http://details:9080/details/0", "200")}


def istio10_server() -> Dict[str, Any]:
    """details' sidecar with shared_span_context: same id, sr/ss, no timestamp/duration."""
    return {"traceId": TRACE, "name": "details:9080/*", "id": SHARED, "parentId": PARENT,
            "annotations": [ann(1532000000101000, "sr", DETAILS),
                            ann(1532000000104500, "ss", DETAILS)],
            "binaryAnnotations": envoy_binary("http://details:9080/details/0", "200")}


def test_istio10_client_span() -> None:
    span = one(istio10_client())
    assert (span.trace_id, span.span_id, span.parent_id) == (
        int(TRACE, 16), int(SHARED, 16), int(PARENT, 16))
    assert span.references == (Reference(CHILD_OF, int(TRACE, 16), int(PARENT, 16)),)
    assert span_kind(span) == "client"
    assert span.operation_name == "details:9080/*"
    assert (span.start_time, span.duration) == (1532000000100000, 6000)
    assert span.process.service_name == "productpage"
    assert span.process.tags == (Tag("ip", STRING, "10.4.0.12"),)
    tags = tags_of(span)
    assert tags["http.url"] == Tag("http.url", STRING, "http://details:9080/details/0")
    assert tags["http.status_code"] == Tag("http.status_code", STRING, "200")
    assert "shared" not in tags
    assert span.logs == ()  # cs/cr are consumed: they made the kind and the timing
    assert span.flags == SAMPLED_FLAG


def test_istio10_server_span_shares_the_id_and_gets_its_own() -> None:
    span = one(istio10_server())
    shared_id = int(SHARED, 16)
    assert span.span_id == shared_server_span_id(int(TRACE, 16), shared_id) != shared_id
    assert span.parent_id == shared_id  # under its client half
    assert span_kind(span) == "server"
    assert tags_of(span)["shared"] == Tag("shared", BOOL, True)
    assert (span.start_time, span.duration) == (1532000000101000, 3500)
    assert span.process.service_name == "details"
    assert span.process.tags == (Tag("ip", STRING, "10.4.0.15"),)


def test_istio10_merged_shared_span_splits_like_separate_reports() -> None:
    merged = istio10_client()
    merged["annotations"] += istio10_server()["annotations"]
    merged["binaryAnnotations"] = [
        {"key": "http.url", "value": "http://details:9080/details/0", "endpoint": PRODUCTPAGE},
        {"key": "upstream_cluster", "value": "out.details", "endpoint": PRODUCTPAGE},
        {"key": "downstream_cluster", "value": "-", "endpoint": DETAILS},
        {"key": "sa", "value": True, "endpoint": {"serviceName": "details", "ipv4": "10.4.0.15",
                                                  "port": 9080}},
        {"key": "ca", "value": True, "endpoint": {"ipv4": "10.4.0.12", "port": 51234}},
    ]
    merged["annotations"].append(ann(1532000000102000, "db.query", DETAILS))
    result = decode([merged])
    assert result.skipped == 0
    client, server = result.spans
    separate_client, separate_server = decode([istio10_client(), istio10_server()]).spans
    for mine, theirs in ((client, separate_client), (server, separate_server)):
        assert (mine.span_id, mine.parent_id, mine.start_time, mine.duration) == (
            theirs.span_id, theirs.parent_id, theirs.start_time, theirs.duration)
        assert mine.process == theirs.process
        assert span_kind(mine) == span_kind(theirs)
    # Annotations go to the side whose service their endpoint names; addresses by role.
    assert set(tags_of(client)) == {"http.url", "upstream_cluster", "span.kind", "peer.service",
                                    "peer.ipv4", "peer.port"}
    assert tags_of(client)["peer.port"] == Tag("peer.port", LONG, 9080)
    assert set(tags_of(server)) == {"downstream_cluster", "span.kind", "peer.ipv4", "peer.port",
                                    "shared"}
    assert tags_of(server)["peer.port"] == Tag("peer.port", LONG, 51234)
    assert client.logs == ()
    assert server.logs == (Log(1532000000102000, (Tag("event", STRING, "db.query"),)),)


def test_server_span_with_its_own_timestamp_is_not_shared() -> None:
    server = istio10_server()
    server.update(timestamp=1532000000101000, duration=3500)
    span = one(server)
    assert span.span_id == int(SHARED, 16)
    assert span.parent_id == int(PARENT, 16)
    assert "shared" not in tags_of(span)
    assert (span.start_time, span.duration) == (1532000000101000, 3500)


def test_timing_from_annotations_without_span_timestamp() -> None:
    client = istio10_client()
    del client["timestamp"], client["duration"]
    span = one(client)
    assert (span.start_time, span.duration) == (1532000000100000, 6000)
    # A server clock stepping back between sr and ss gives 0, not a negative duration.
    server = istio10_server()
    server["annotations"][1]["timestamp"] = 1532000000100999
    assert one(server).duration == 0


def test_local_span_with_lc_and_typed_binary_annotations() -> None:
    span = one({
        "traceId": "1" * 32, "id": "2", "name": "compute", "timestamp": 1600000000000000,
        "duration": 42, "debug": True,
        "annotations": [ann(1600000000000010, "cache.miss", {"serviceName": "worker"})],
        "binaryAnnotations": [
            {"key": "lc", "value": "batch", "endpoint": {"serviceName": "worker",
                                                         "ipv4": "192.168.1.2"}},
            {"key": "b", "value": True, "type": "BOOL"},
            {"key": "bs", "value": "false", "type": "BOOL"},
            {"key": "i16", "value": -7, "type": "I16"},
            {"key": "i64", "value": "9223372036854775807", "type": "I64"},
            {"key": "d", "value": 2.5, "type": "DOUBLE"},
            {"key": "raw", "value": "AQID", "type": "BYTES"},
            {"key": "s", "value": "text", "type": "STRING"},
            {"key": "untyped.int", "value": 3},
            {"key": "untyped.bool", "value": False},
            {"key": "jaeger.version", "value": "Java-1.8.1"},
            {"key": "none", "value": None},
        ]})
    assert span.trace_id == int("1" * 32, 16)
    assert span_kind(span) == ""
    assert span.flags == SAMPLED_FLAG | DEBUG_FLAG
    assert (span.start_time, span.duration) == (1600000000000000, 42)
    assert span.process.service_name == "worker"
    assert span.process.tags == (Tag("ip", STRING, "192.168.1.2"),
                                 Tag("jaeger.version", STRING, "Java-1.8.1"))
    assert tags_of(span) == {
        "component": Tag("component", STRING, "batch"), "b": Tag("b", BOOL, True),
        "bs": Tag("bs", BOOL, False), "i16": Tag("i16", LONG, -7),
        "i64": Tag("i64", LONG, (1 << 63) - 1), "d": Tag("d", DOUBLE, 2.5),
        "raw": Tag("raw", BINARY, b"\x01\x02\x03"), "s": Tag("s", STRING, "text"),
        "untyped.int": Tag("untyped.int", LONG, 3),
        "untyped.bool": Tag("untyped.bool", BOOL, False)}
    assert span.logs == (Log(1600000000000010, (Tag("event", STRING, "cache.miss"),)),)


@pytest.mark.parametrize("item", [
    {"key": "x", "value": "maybe", "type": "BOOL"},
    {"key": "x", "value": 1 << 63, "type": "I64"},
    {"key": "x", "value": "12a", "type": "I32"},
    {"key": "x", "value": "not base64!", "type": "BYTES"},
    {"key": "x", "value": "1", "type": "UUID"},
    {"key": "x", "value": "1", "type": 6},
    {"key": "x", "value": {"nested": 1}},
    {"key": 7, "value": "1"},
])
def test_bad_binary_annotation_skips_the_span(item: Dict[str, Any]) -> None:
    good = istio10_client()
    bad = istio10_client()
    bad["binaryAnnotations"].append(item)
    result = decode([bad, good])
    assert (len(result.spans), result.skipped) == (1, 1)
    assert result.first_error and not result.first_error.startswith("unexpected")


def test_messaging_kinds_and_address() -> None:
    broker = {"serviceName": "kafka", "ipv4": "10.9.9.9", "port": 9092}
    producer = one({"traceId": TRACE, "id": "1", "name": "send",
                    "annotations": [ann(1000, "ms", {"serviceName": "orders"})],
                    "binaryAnnotations": [{"key": "ma", "value": True, "endpoint": broker}]})
    assert span_kind(producer) == "producer"
    assert producer.start_time == 1000
    assert tags_of(producer)["peer.service"] == Tag("peer.service", STRING, "kafka")
    consumer = one({"traceId": TRACE, "id": "1", "name": "recv",
                    "annotations": [ann(2000, "mr", {"serviceName": "billing"})]})
    assert span_kind(consumer) == "consumer"
    assert consumer.process.service_name == "billing"


def test_messaging_annotation_on_an_rpc_span_stays_an_event() -> None:
    client = istio10_client()
    client["annotations"].append(ann(1532000000101000, "ms", PRODUCTPAGE))
    span = one(client)
    assert span_kind(span) == "client"
    assert span.logs == (Log(1532000000101000, (Tag("event", STRING, "ms"),)),)


def test_address_only_local_span_and_unknown_service() -> None:
    span = one({"traceId": TRACE, "id": "1", "name": "x", "timestamp": 5,
                "binaryAnnotations": [{"key": "sa", "value": True,
                                       "endpoint": {"serviceName": "mysql", "port": 3306}}]})
    assert span_kind(span) == ""
    assert tags_of(span)["peer.service"].value == "mysql"
    # The address names the remote side, never the local service.
    assert span.process.service_name == UNKNOWN_SERVICE_NAME


def test_span_without_any_time_is_skipped() -> None:
    result = decode([{"traceId": TRACE, "id": "1", "name": "x"}])
    assert (result.spans, result.skipped) == ([], 1)
    assert "timestamp" in result.first_error
