"""Zipkin v2 JSON -> span model: Envoy's output, an Istio pair, and each mapping rule."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from opentracing_sls.shim.model import (
    BOOL,
    CHILD_OF,
    DEBUG_FLAG,
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
    decode_zipkin_v2_json,
    shared_server_span_id,
)

# b3-istio-bookinfo.md section 8 (envoyproxy/envoy issue #29131), verbatim shape; the request id
# was shortened there with an ellipsis, spelled out here.
ENVOY_EXAMPLE = (
    b'[{"traceId":"5341a3f65e389606","id":"5341a3f65e389606","kind":"SERVER",'
    b'"name":"172.16.0.226:8000","timestamp":1692354579079400,"duration":4622,'
    b'"localEndpoint":{"ipv4":"172.16.0.226"},'
    b'"annotations":[{"timestamp":1692354579084446,"value":"ss"}],'
    b'"tags":{"component":"proxy","guid:x-request-id":"40a5e8d9-3f4b-9d0e-a5b2-6c1d2e3f4a5b",'
    b'"http.method":"GET","http.status_code":"200","http.url":"http://172.16.0.226:8000/",'
    b'"upstream_cluster":"cluster_http"},"shared":true}]'
)

TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
GATEWAY_SPAN = "e457b5a2e4d86bd1"
PRODUCTPAGE_SERVER = "05e3ac9a4f6e3b90"
PRODUCTPAGE_TO_DETAILS = "3c1a2b4d5e6f7a8b"


def tags_of(span: Span) -> Dict[str, Tag]:
    out = {tag.key: tag for tag in span.tags}
    assert len(out) == len(span.tags), "duplicate tag keys: %r" % (span.tags,)
    return out


def decode(spans: List[Dict[str, Any]]) -> ZipkinDecodeResult:
    return decode_zipkin_v2_json(json.dumps(spans).encode())


def one(span: Dict[str, Any]) -> Span:
    result = decode([span])
    assert result.skipped == 0, result.first_error
    assert len(result.spans) == 1
    return result.spans[0]


def base(**fields: Any) -> Dict[str, Any]:
    span = {"traceId": TRACE, "id": PRODUCTPAGE_SERVER, "name": "op",
            "timestamp": 1700000000000000, "duration": 10}
    span.update(fields)
    return {k: v for k, v in span.items() if v is not None}


def test_envoy_example_shared_server_span() -> None:
    result = decode_zipkin_v2_json(ENVOY_EXAMPLE)
    assert isinstance(result, ZipkinDecodeResult) and result.skipped == 0
    assert result.first_error == ""
    (span,) = result.spans
    shared_id = 0x5341A3F65E389606
    assert span.trace_id == shared_id
    # The server half of a shared span gets its own id, under the client that owns the Zipkin id.
    assert span.span_id == shared_server_span_id(shared_id, shared_id) != shared_id
    assert span.parent_id == shared_id
    assert span.references == (Reference(CHILD_OF, shared_id, shared_id),)
    assert span.operation_name == "172.16.0.226:8000"
    assert span.flags == SAMPLED_FLAG
    assert (span.start_time, span.duration) == (1692354579079400, 4622)
    assert span_kind(span) == "server"
    tags = tags_of(span)
    assert tags["shared"] == Tag("shared", BOOL, True)
    for key, value in [("component", "proxy"), ("http.method", "GET"),
                       ("http.status_code", "200"), ("http.url", "http://172.16.0.226:8000/"),
                       ("upstream_cluster", "cluster_http"),
                       ("guid:x-request-id", "40a5e8d9-3f4b-9d0e-a5b2-6c1d2e3f4a5b")]:
        assert tags[key] == Tag(key, STRING, value)
    assert len(tags) == 8  # 6 Envoy tags + span.kind + shared
    assert span.logs == (Log(1692354579084446, (Tag("event", STRING, "ss"),)),)
    # No serviceName in this localEndpoint: Jaeger's placeholder, the address as process tag.
    assert span.process.service_name == UNKNOWN_SERVICE_NAME == "unknown-service-name"
    assert span.process.tags == (Tag("ip", STRING, "172.16.0.226"),)


def istio_pair() -> List[Dict[str, Any]]:
    """productpage's sidecar: its SERVER span (under the gateway) and its CLIENT span to details,
    then details' SERVER span, as modern Istio sends them (128-bit ids, no shared context)."""
    istio_tags = {"istio.canonical_revision": "v1", "istio.mesh_id": "cluster.local",
                  "istio.namespace": "default", "component": "proxy", "response_flags": "-"}
    productpage = {"serviceName": "productpage.default", "ipv4": "10.244.0.12"}
    details = {"serviceName": "details.default", "ipv4": "10.244.0.15"}
    return [
        {"traceId": TRACE, "parentId": GATEWAY_SPAN, "id": PRODUCTPAGE_SERVER, "kind": "SERVER",
         "name": "productpage.default.svc.cluster.local:9080/*", "timestamp": 1700000000000000,
         "duration": 25000, "localEndpoint": productpage,
         "tags": dict(istio_tags, **{"istio.canonical_service": "productpage",
                                     "http.method": "GET", "http.status_code": "200",
                                     "http.url": "http://productpage:9080/productpage",
                                     "user_agent": "curl/8.0", "request_size": "0",
                                     "response_size": "5183"})},
        {"traceId": TRACE, "parentId": PRODUCTPAGE_SERVER, "id": PRODUCTPAGE_TO_DETAILS,
         "kind": "CLIENT", "name": "details.default.svc.cluster.local:9080/*",
         "timestamp": 1700000000003000, "duration": 4000, "localEndpoint": productpage,
         "remoteEndpoint": {"serviceName": "details.default", "ipv4": "10.96.0.20",
                            "port": 9080},
         "annotations": [{"timestamp": 1700000000003100, "value": "wire.send"},
                         {"timestamp": 1700000000006900, "value": "wire.recv"}],
         "tags": dict(istio_tags, **{"istio.canonical_service": "productpage",
                                     "upstream_cluster": "outbound|9080||details.default.svc",
                                     "http.status_code": "503", "error": "true"})},
        {"traceId": TRACE, "parentId": PRODUCTPAGE_TO_DETAILS, "id": "9a8b7c6d5e4f3a2b",
         "kind": "SERVER", "name": "details.default.svc.cluster.local:9080/*",
         "timestamp": 1700000000003500, "duration": 3000, "localEndpoint": details,
         "tags": dict(istio_tags, **{"istio.canonical_service": "details"})},
    ]


def test_istio_pair_ids_parents_kinds_services() -> None:
    result = decode(istio_pair())
    assert result.skipped == 0
    server, client, details = result.spans
    trace_id = int(TRACE, 16)
    assert trace_id >> 64, "128-bit trace id kept"
    assert {s.trace_id for s in result.spans} == {trace_id}
    assert (server.span_id, server.parent_id) == (int(PRODUCTPAGE_SERVER, 16),
                                                  int(GATEWAY_SPAN, 16))
    assert server.references == (Reference(CHILD_OF, trace_id, int(GATEWAY_SPAN, 16)),)
    assert (client.span_id, client.parent_id) == (int(PRODUCTPAGE_TO_DETAILS, 16),
                                                  server.span_id)
    assert details.parent_id == client.span_id
    assert [span_kind(s) for s in result.spans] == ["server", "client", "server"]
    assert [s.process.service_name for s in result.spans] == [
        "productpage.default", "productpage.default", "details.default"]
    # One Process object per distinct local endpoint in a body.
    assert server.process is client.process
    assert server.process.tags == (Tag("ip", STRING, "10.244.0.12"),)
    assert "shared" not in tags_of(server)


def test_istio_pair_tags_and_logs() -> None:
    server, client, details = decode(istio_pair()).spans
    tags = tags_of(server)
    assert tags["istio.canonical_service"] == Tag("istio.canonical_service", STRING,
                                                  "productpage")
    assert tags["http.status_code"] == Tag("http.status_code", STRING, "200")  # no invented type
    assert tags["response_size"].type == STRING
    assert "error" not in tags and "peer.service" not in tags
    assert server.logs == ()

    tags = tags_of(client)
    assert tags["error"] == Tag("error", BOOL, True)
    assert "error.message" not in tags
    assert tags["peer.service"] == Tag("peer.service", STRING, "details.default")
    assert tags["peer.ipv4"] == Tag("peer.ipv4", STRING, "10.96.0.20")
    assert tags["peer.port"] == Tag("peer.port", LONG, 9080)
    assert tags["span.kind"] == Tag("span.kind", STRING, "client")
    assert client.logs == (Log(1700000000003100, (Tag("event", STRING, "wire.send"),)),
                           Log(1700000000006900, (Tag("event", STRING, "wire.recv"),)))
    assert (client.start_time, client.duration) == (1700000000003000, 4000)
    assert tags_of(details)["istio.canonical_service"].value == "details"


@pytest.mark.parametrize("kind", ["CLIENT", "SERVER", "PRODUCER", "CONSUMER", "client"])
def test_kinds(kind: str) -> None:
    span = one(base(kind=kind))
    assert span_kind(span) == kind.lower()
    assert [t.key for t in span.tags].count("span.kind") == 1


def test_no_or_unknown_kind_is_local_and_keeps_a_span_kind_tag() -> None:
    assert span_kind(one(base())) == ""
    assert span_kind(one(base(kind="SIDEWAYS"))) == ""
    assert span_kind(one(base(tags={"span.kind": "internal"}))) == "internal"
    # The span's own kind wins over a contradicting tag.
    span = one(base(kind="SERVER", tags={"span.kind": "client"}))
    assert [t for t in span.tags if t.key == "span.kind"] == [Tag("span.kind", STRING, "server")]


def test_error_tag() -> None:
    assert tags_of(one(base(tags={"error": "true"})))["error"] == Tag("error", BOOL, True)
    assert tags_of(one(base(tags={"error": ""})))["error"] == Tag("error", BOOL, True)
    tags = tags_of(one(base(tags={"error": "connection refused"})))
    assert tags["error"] == Tag("error", BOOL, True)
    assert tags["error.message"] == Tag("error.message", STRING, "connection refused")
    assert tags_of(one(base(tags={"error": "false"})))["error"] == Tag("error", STRING, "false")


def test_special_tags_lc_and_process_tags() -> None:
    span = one(base(localEndpoint={"serviceName": "svc", "ipv4": "10.0.0.1", "port": 8080},
                    tags={"lc": "db", "jaegerClient": "Go-2.30", "jaeger.hostname": "pod-1",
                          "k": "v"}))
    assert tags_of(span) == {"component": Tag("component", STRING, "db"),
                             "k": Tag("k", STRING, "v")}
    assert span.process.service_name == "svc"
    assert span.process.tags == (Tag("ip", STRING, "10.0.0.1"), Tag("port", LONG, 8080),
                                 Tag("jaeger.version", STRING, "Go-2.30"),
                                 Tag("hostname", STRING, "pod-1"))
    assert "component" not in tags_of(one(base(tags={"lc": ""})))


def test_non_string_tag_values_keep_their_json_spelling_null_drops() -> None:
    tags = tags_of(one(base(tags={"b": True, "i": 42, "f": 1.5, "n": None})))
    assert tags == {"b": Tag("b", STRING, "true"), "i": Tag("i", STRING, "42"),
                    "f": Tag("f", STRING, "1.5")}


def test_endpoints_ipv6_and_remote() -> None:
    span = one(base(kind="SERVER", localEndpoint={"serviceName": "s", "ipv6": "::1"},
                    remoteEndpoint={"ipv6": "fe80::1", "port": 40000}))
    assert span.process.tags == (Tag("ip", STRING, "::1"),)
    tags = tags_of(span)
    assert tags["peer.ipv6"] == Tag("peer.ipv6", STRING, "fe80::1")
    assert tags["peer.port"] == Tag("peer.port", LONG, 40000)
    assert "peer.service" not in tags and "peer.ipv4" not in tags
    both = one(base(localEndpoint={"serviceName": "s", "ipv4": "10.0.0.1", "ipv6": "::1"}))
    assert both.process.tags == (Tag("ip", STRING, "10.0.0.1"), Tag("ipv6", STRING, "::1"))


def test_debug_flag() -> None:
    assert one(base(debug=True)).flags == SAMPLED_FLAG | DEBUG_FLAG
    assert one(base(debug=False)).flags == SAMPLED_FLAG


def test_root_and_parent_references() -> None:
    root = one(base())
    assert (root.parent_id, root.references) == (0, ())
    assert one(base(parentId="0000000000000000")).parent_id == 0
    assert one(base(parentId=PRODUCTPAGE_SERVER)).parent_id == 0  # its own parent: a root
    child = one(base(parentId="1"))
    assert child.parent_id == 1
    assert child.references == (Reference(CHILD_OF, int(TRACE, 16), 1),)


def test_id_forms() -> None:
    assert one(base(traceId="5341a3f65e389606")).trace_id == 0x5341A3F65E389606
    padded = one(base(traceId="00000000000000005341a3f65e389606"))
    assert padded.trace_id == 0x5341A3F65E389606
    assert one(base(traceId="ABC")).trace_id == 0xABC
    assert one(base(id="0000000000000000" + "00000000000000ff")).span_id == 0xFF
    assert one(base(id="ffffffffffffffff")).span_id == (1 << 64) - 1  # unsigned


@pytest.mark.parametrize("field, value", [
    ("traceId", None), ("traceId", ""), ("traceId", "0" * 16), ("traceId", "x" * 16),
    ("traceId", "1" * 33), ("traceId", "0x123"), ("traceId", " 123"), ("traceId", 123),
    ("id", None), ("id", "0"), ("id", "1" * 17), ("id", "-1"), ("id", "1_0"), ("id", ["1"]),
    ("parentId", "zz"), ("parentId", "1" * 17), ("parentId", 5),
])
def test_bad_ids_skip_only_that_span(field: str, value: Any) -> None:
    bad = base(id="1")
    bad[field] = value
    result = decode([base(id="2"), bad, base(id="3")])
    assert [s.span_id for s in result.spans] == [2, 3]
    assert result.skipped == 1
    assert field in result.first_error


def test_times() -> None:
    no_duration = one(base(duration=None))
    assert no_duration.duration == 0
    # No timestamp: the earliest annotation.
    span = one(base(timestamp=None, annotations=[{"timestamp": 20, "value": "b"},
                                                 {"timestamp": 10, "value": "a"}]))
    assert span.start_time == 10
    assert one(base(timestamp=1.7e15)).start_time == 1700000000000000
    result = decode([base(timestamp=None)])
    assert (result.spans, result.skipped) == ([], 1)
    assert "timestamp" in result.first_error


def test_annotation_with_json_object_value_becomes_fields() -> None:
    span = one(base(annotations=[
        {"timestamp": 5, "value": '{"event":"retry","attempt":"2"}'},
        {"timestamp": 6, "value": '{"not":1}'},
        {"timestamp": 7, "value": ""},
    ]))
    assert span.logs == (
        Log(5, (Tag("event", STRING, "retry"), Tag("attempt", STRING, "2"))),
        Log(6, (Tag("event", STRING, '{"not":1}'),)),
    )


def test_shared_span_pair_keeps_both_halves() -> None:
    client = base(kind="CLIENT", id="00000000000000aa", parentId="1",
                  localEndpoint={"serviceName": "a"})
    server = base(kind="SERVER", id="aa", parentId="1", shared=True,
                  localEndpoint={"serviceName": "b"}, timestamp=1700000000000002, duration=5)
    c, s = decode([client, server]).spans
    assert (c.span_id, c.parent_id) == (0xAA, 1)
    assert s.span_id == shared_server_span_id(c.trace_id, 0xAA)
    assert s.span_id not in (0, 0xAA, 1)
    assert (s.parent_id, s.references) == (0xAA, (Reference(CHILD_OF, c.trace_id, 0xAA),))
    assert tags_of(s)["shared"] == Tag("shared", BOOL, True)
    assert "shared" not in tags_of(c)
    # The same halves decoded from another body (a retry, another sidecar) agree.
    assert decode([server]).spans[0].span_id == s.span_id


def test_shared_server_span_id_is_a_deterministic_nonzero_bijection() -> None:
    trace_id = int(TRACE, 16)
    ids = {shared_server_span_id(trace_id, i) for i in range(1, 5001)}
    assert len(ids) == 5000 and 0 not in ids
    assert all(shared_server_span_id(trace_id, i) != i for i in range(1, 5001))
    assert shared_server_span_id(trace_id, 7) == shared_server_span_id(trace_id, 7)
    assert shared_server_span_id(trace_id, 7) != shared_server_span_id(trace_id + 1, 7)
    assert all(0 < x < 1 << 64 for x in ids)


def test_empty_array_and_str_body() -> None:
    assert decode_zipkin_v2_json(b"[]") == ZipkinDecodeResult([], 0, "")
    assert len(decode_zipkin_v2_json(ENVOY_EXAMPLE.decode()).spans) == 1
    assert len(decode_zipkin_v2_json(memoryview(ENVOY_EXAMPLE)).spans) == 1
