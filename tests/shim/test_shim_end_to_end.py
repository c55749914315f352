"""A real shim on loopback fed by real clients: our tracer (compact, binary, HTTP),
jaeger-client (compact UDP) and Zipkin JSON (gzip too); spans land in the local store."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request

import opentracing
import pytest

from opentracing_sls import Config
from opentracing_sls.shim.model import BOOL, DOUBLE, LONG, STRING, span_kind
from opentracing_sls.shim.store import LocalStore


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def stored_trace(running, trace_id, count):
    store = LocalStore(running.store_path)
    try:
        return wait_for(lambda: (lambda s: s if len(s) >= count else None)(
            store.get_trace(trace_id))) or store.get_trace(trace_id)
    finally:
        store.close()


def our_tracer(running, **config):
    base = {"local_agent": {"reporting_host": "127.0.0.1",
                            "reporting_port": running.ports["compact_port"]},
            "sampler": {"type": "const", "param": 1}, "tags": {"pod": "p-1"},
            "generate_128bit_trace_id": True}
    base.update(config)
    return Config(base, service_name="frontend", validate=True).new_tracer()


def exercise(tracer):
    with tracer.start_active_span("GET /productpage") as root:
        root.span.set_tag("http.status_code", 200).set_tag("ok", True).set_tag("ratio", 0.5)
        with tracer.start_active_span("db.query") as child:
            child.span.log_kv({"event": "rows", "count": 2})
        later = tracer.start_span("async.work",
                                  references=[opentracing.follows_from(child.span.context)])
        later.finish()
    return root.span, child.span, later


@pytest.mark.parametrize("transport", ["compact", "binary", "http"])
def test_our_tracer_to_local_store_keeps_every_field(shim_factory, transport):
    running = shim_factory()
    if transport == "compact":
        tracer = our_tracer(running)
    elif transport == "binary":
        tracer = our_tracer(running, local_agent={
            "reporting_host": "127.0.0.1", "reporting_port": running.ports["binary_port"],
            "reporting_protocol": "binary"})
    else:
        tracer = our_tracer(running, endpoint=running.url("http_port", "/api/traces"))
    root, child, later = exercise(tracer)
    assert tracer.close(timeout=5)
    spans = {s.operation_name: s for s in stored_trace(running, root.context.trace_id, 3)}
    assert set(spans) == {"GET /productpage", "db.query", "async.work"}
    stored_root = spans["GET /productpage"]
    assert stored_root.trace_id == root.context.trace_id and stored_root.trace_id >> 64
    assert stored_root.span_id == root.context.span_id and stored_root.parent_id == 0
    assert stored_root.flags == 1
    tags = {t.key: (t.type, t.value) for t in stored_root.tags}
    assert tags["http.status_code"] == (LONG, 200)
    assert tags["ok"] == (BOOL, True) and tags["ratio"] == (DOUBLE, 0.5)
    assert tags["sampler.type"] == (STRING, "const")
    assert spans["db.query"].parent_id == root.context.span_id
    [log] = spans["db.query"].logs
    assert {f.key: f.value for f in log.fields} == {"event": "rows", "count": 2}
    [ref] = spans["async.work"].references
    assert (ref.ref_type, ref.span_id) == (1, child.context.span_id)
    process = stored_root.process
    assert process.service_name == "frontend"
    assert {t.key: t.value for t in process.tags}["pod"] == "p-1"


def test_jaeger_client_compact_udp(shim_factory):
    import jaeger_client

    running = shim_factory()
    tracer = jaeger_client.Config({
        "sampler": {"type": "const", "param": 1},
        "local_agent": {"reporting_host": "127.0.0.1",
                        "reporting_port": running.ports["compact_port"]},
        "reporter_flush_interval": 0.1,
    }, service_name="legacy-service", validate=True).new_tracer()
    with tracer.start_span("legacy-op") as span:
        span.set_tag("answer", 42)
        trace_id = span.trace_id
    spans = stored_trace(running, trace_id, 1)
    assert [s.operation_name for s in spans] == ["legacy-op"]
    assert spans[0].process.service_name == "legacy-service"
    assert {t.key: t.value for t in spans[0].tags}["answer"] == 42


def post(url, body, headers=None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


ENVOY_V2 = [
    {"traceId": "80f198ee56343ba864fe8b2a57d3eff7", "id": "e457b5a2e4d86bd1",
     "kind": "SERVER", "name": "productpage.default.svc.cluster.local:9080/*",
     "timestamp": 1700000000000000, "duration": 5000,
     "localEndpoint": {"serviceName": "productpage.default", "ipv4": "10.0.0.1"},
     "tags": {"http.status_code": "200", "guid:x-request-id": "abc"}},
    {"traceId": "80f198ee56343ba864fe8b2a57d3eff7", "id": "05e3ac9a4f6e3b90",
     "parentId": "e457b5a2e4d86bd1", "kind": "CLIENT",
     "name": "details.default.svc.cluster.local:9080/*",
     "timestamp": 1700000000001000, "duration": 2000,
     "localEndpoint": {"serviceName": "productpage.default"}},
]


@pytest.mark.parametrize("compressed", [False, True])
def test_zipkin_v2_from_envoy_answers_202_and_is_stored(shim_factory, compressed):
    running = shim_factory()
    body = json.dumps(ENVOY_V2).encode()
    headers = {"Content-Type": "application/json"}
    if compressed:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, _ = post(running.url("zipkin_port", "/api/v2/spans"), body, headers)
    assert status == 202
    spans = stored_trace(running, 0x80F198EE56343BA864FE8B2A57D3EFF7, 2)
    by_kind = {span_kind(s): s for s in spans}
    assert by_kind["client"].parent_id == by_kind["server"].span_id
    assert by_kind["server"].process.service_name == "productpage.default"


def test_bad_inputs_are_answered_and_counted(shim_factory):
    import socket

    running = shim_factory()
    status, text = post(running.url("zipkin_port", "/api/v2/spans"), b"{not json")
    assert status == 400 and b"malformed" in text
    status, _ = post(running.url("http_port", "/api/traces"), b"\x00\x01garbage")
    assert status == 400
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(5):
            sock.sendto(b"\x82\x81garbage", ("127.0.0.1", running.ports["compact_port"]))
    with urllib.request.urlopen(running.url("admin_port", "/metrics"), timeout=5) as r:
        assert r.status == 200
    metrics = wait_for(lambda: _metric(running, 'malformed_inputs_total{format="jaeger.compact"}')
                       == 5.0 and _metrics_text(running))
    assert 'opentracing_sls_shim_malformed_inputs_total{format="zipkin.v2"} 1.0' in metrics
    assert 'opentracing_sls_shim_malformed_inputs_total{format="jaeger.http"} 1.0' in metrics
    with urllib.request.urlopen(running.url("admin_port", "/healthz"), timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"


def _metrics_text(running):
    with urllib.request.urlopen(running.url("admin_port", "/metrics"), timeout=5) as r:
        return r.read().decode()


def _metric(running, name):
    for line in _metrics_text(running).splitlines():
        if line.startswith("opentracing_sls_shim_" + name):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_sampling_endpoint_drives_our_remote_sampler(shim_factory, tmp_path):
    strategies = tmp_path / "strategies.json"
    strategies.write_text(json.dumps({"service_strategies": [
        {"service": "frontend", "type": "probabilistic", "param": 1.0}]}))
    running = shim_factory(**{"sampling.strategies_file": str(strategies)})
    from opentracing_sls.sampling import RemoteControlledSampler

    sampler = RemoteControlledSampler(
        "frontend", sampling_endpoint=running.url("sampling_port", "/sampling"),
        start_polling=False)
    assert sampler.poll_once()
    assert sampler.is_sampled(12345, "op")[0] is True
    sampler.close()
    with urllib.request.urlopen(running.url("sampling_port", "/?service=frontend")) as r:
        assert json.loads(r.read())["strategyType"] == 0
    try:
        urllib.request.urlopen(running.url("sampling_port", "/sampling"))
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    else:
        raise AssertionError("expected 400 without a service")
