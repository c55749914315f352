"""The whole tracer, configured like a user would, reporting over real loopback sockets.

Datagrams are decoded with the jaeger-client package's own Thrift classes.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading

import opentracing
import pytest
from jaeger_client.thrift_gen.jaeger import ttypes

from opentracing_sls import Config

S64 = 1 << 64


def unsigned(value: int) -> int:
    return value & (S64 - 1)


def make_tracer(port: int, **extra):
    config = {"local_agent": {"reporting_host": "127.0.0.1", "reporting_port": port},
              "sampler": {"type": "const", "param": 1},
              "tags": {"build": "e2e", "replicas": 3}, **extra}
    return Config(config, service_name="e2e-service", validate=True).new_tracer()


def exercise(tracer):
    """One trace with every kind of field; returns the live spans (root, child, follower)."""
    with tracer.start_active_span("root") as root_scope:
        root = root_scope.span
        root.set_tag("str", "value").set_tag("bool", True).set_tag("long", -42)
        # jaeger-client's generated code reads vBinary with readString (UTF-8), so the
        # bytes must be valid UTF-8 for the peer to decode them at all.
        root.set_tag("double", 2.5).set_tag("binary", b"\x01bin")
        with tracer.start_active_span("child") as child_scope:
            child = child_scope.span
            child.log_kv({"event": "cache.miss", "key": "k1"}, timestamp=1700000000.25)
        follower = tracer.start_span("follower",
                                     references=[opentracing.follows_from(child.context)])
        follower.finish()
    return root, child, follower


def tag_map(tags):
    out = {}
    for tag in tags or []:
        out[tag.key] = {ttypes.TagType.STRING: tag.vStr, ttypes.TagType.BOOL: tag.vBool,
                        ttypes.TagType.LONG: tag.vLong, ttypes.TagType.DOUBLE: tag.vDouble,
                        ttypes.TagType.BINARY: tag.vBinary}[tag.vType]
    return out


def check_batches(batches, root, child, follower):
    process = batches[0].process
    assert process.serviceName == "e2e-service"
    ptags = tag_map(process.tags)
    assert ptags["build"] == "e2e" and ptags["replicas"] == 3
    assert ptags["jaeger.version"].startswith("Python-")
    assert ptags["client-uuid"]
    spans = {s.operationName: s for b in batches for s in b.spans}
    assert set(spans) == {"root", "child", "follower"}
    high = root.context.trace_id >> 64
    low = unsigned(root.context.trace_id)
    for span in spans.values():
        assert unsigned(span.traceIdHigh) == high and unsigned(span.traceIdLow) == low
        assert span.flags == 1
    assert high != 0  # 128-bit ids were configured
    r, c, f = spans["root"], spans["child"], spans["follower"]
    assert unsigned(r.spanId) == root.context.span_id and r.parentSpanId == 0
    assert unsigned(c.parentSpanId) == root.context.span_id
    assert unsigned(f.parentSpanId) == child.context.span_id
    [ref] = f.references
    assert ref.refType == ttypes.SpanRefType.FOLLOWS_FROM
    assert unsigned(ref.spanId) == child.context.span_id
    assert (unsigned(ref.traceIdHigh), unsigned(ref.traceIdLow)) == (high, low)
    rtags = tag_map(r.tags)
    assert rtags["str"] == "value" and rtags["bool"] is True and rtags["long"] == -42
    assert rtags["double"] == 2.5 and rtags["binary"] == "\x01bin"
    assert [t.vType for t in r.tags if t.key == "binary"] == [ttypes.TagType.BINARY]
    assert rtags["sampler.type"] == "const"
    [log] = c.logs
    assert log.timestamp == 1700000000250000
    assert tag_map(log.fields) == {"event": "cache.miss", "key": "k1"}
    assert r.duration >= c.duration >= 0 and r.startTime <= c.startTime


def check_seq_and_stats(batches):
    seqs = [b.seqNo for b in batches]
    assert all(s is not None for s in seqs) and seqs == sorted(set(seqs))
    stats = batches[-1].stats
    assert (stats.fullQueueDroppedSpans, stats.tooLargeDroppedSpans,
            stats.failedToEmitSpans) == (0, 0, 0)


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_udp_reporting_decodes_with_jaeger_client(udp_sink, jaeger_client_decode, idl_decode,
                                                  protocol):
    tracer = make_tracer(udp_sink.port, generate_128bit_trace_id=True,
                         local_agent={"reporting_host": "127.0.0.1",
                                      "reporting_port": udp_sink.port,
                                      "reporting_protocol": protocol})
    spans = exercise(tracer)
    assert tracer.close(timeout=5)
    datagrams = udp_sink.receive(1)
    check_batches([jaeger_client_decode(d, protocol) for d in datagrams], *spans)
    check_seq_and_stats([idl_decode(d, protocol) for d in datagrams])


def test_http_collector_path_decodes_with_jaeger_client():
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTransport

    bodies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append((self.path, dict(self.headers),
                           self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = "http://127.0.0.1:%d/api/traces" % server.server_address[1]
        tracer = make_tracer(1, endpoint=endpoint, generate_128bit_trace_id=True)
        spans = exercise(tracer)
        assert tracer.close(timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    batches = []
    for path, headers, body in bodies:
        assert path == "/api/traces"
        assert headers["b3"] == "0"
        batch = ttypes.Batch()
        batch.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(body)))
        batches.append(batch)
    check_batches(batches, *spans)
    ours = []
    for _, _, body in bodies:
        from thriftpy2.protocol import TBinaryProtocol as Binary
        from thriftpy2.transport import TMemoryBuffer

        from opentracing_sls.reporting.idl import jaeger

        batch = jaeger.Batch()
        batch.read(Binary(TMemoryBuffer(body)))
        ours.append(batch)
    check_seq_and_stats(ours)


def test_absent_agent_never_raises():
    tracer = Config({"local_agent": {"reporting_host": "nonexistent.invalid"},
                     "sampler": {"type": "const", "param": 1}}, service_name="svc").new_tracer()
    for _ in range(10):
        with tracer.start_active_span("op"):
            pass
    tracer.close(timeout=5)
    assert tracer.metrics.snapshot()["tracer.spans.finished"] == 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_reports_its_own_spans_with_distinct_ids(udp_sink, jaeger_client_decode):
    tracer = make_tracer(udp_sink.port)
    with tracer.start_active_span("parent-before-fork"):
        pass
    assert tracer.flush(timeout=5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            ids = []
            for _ in range(20):
                with tracer.start_active_span("child-op") as scope:
                    ids.append(scope.span.context.span_id)
            ok = tracer.close(timeout=5)
            os.write(write_end, (",".join(map(str, ids))).encode())
            code = 0 if ok else 3
        finally:
            os._exit(code)
    os.close(write_end)
    parent_ids = []
    for _ in range(20):
        with tracer.start_active_span("parent-op") as scope:
            parent_ids.append(scope.span.context.span_id)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    child_ids = [int(x) for x in os.read(read_end, 100000).decode().split(",")]
    os.close(read_end)
    assert tracer.close(timeout=5)
    assert not set(child_ids) & set(parent_ids)
    received = [jaeger_client_decode(d) for d in udp_sink.receive(3)]
    by_op = {}
    uuids = {}
    for batch in received:
        uuid = tag_map(batch.process.tags)["client-uuid"]
        for span in batch.spans:
            by_op.setdefault(span.operationName, []).append(unsigned(span.spanId))
            uuids.setdefault(span.operationName, set()).add(uuid)
    assert sorted(by_op["child-op"]) == sorted(child_ids)
    assert sorted(by_op["parent-op"]) == sorted(parent_ids)
    assert len(by_op["parent-before-fork"]) == 1  # not re-sent by the child
    assert uuids["child-op"].isdisjoint(uuids["parent-op"])


def test_spans_are_flushed_at_interpreter_exit(udp_sink, jaeger_client_decode):
    program = textwrap.dedent("""
        from opentracing_sls import Config
        tracer = Config({"local_agent": {"reporting_host": "127.0.0.1",
                                         "reporting_port": %d},
                         "sampler": {"type": "const", "param": 1},
                         "reporter_flush_interval": 60},
                        service_name="short-job").new_tracer()
        for i in range(300):
            tracer.start_span("job-%%d" %% i).finish()
        # no close(), no sleep: the atexit hook must deliver everything
    """) % udp_sink.port
    subprocess.run([sys.executable, "-c", program], check=True, timeout=30)
    names = [s.operationName for d in udp_sink.receive(1, timeout=5)
             for s in jaeger_client_decode(d).spans]
    assert sorted(names) == sorted("job-%d" % i for i in range(300))
