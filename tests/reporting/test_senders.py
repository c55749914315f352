"""UdpSender and HttpSender against real loopback servers on ephemeral ports.

HTTP bodies are decoded as a binary-Thrift ``Batch`` with jaeger-client 4.8.0's generated
classes; ``seqNo``/``stats`` (fields 3 and 4, newer than those classes) are read by hand.
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TType
from thrift.transport import TTransport

from opentracing_sls.constants import CLIENT_UUID_TAG_KEY
from opentracing_sls.reporting import HttpSender, Reporter, UdpSender
from opentracing_sls.reporting import senders as senders_module
from opentracing_sls.reporting.senders import THRIFT_BINARY_CONTENT_TYPE
from opentracing_sls.testing import make_span_record as make_record

MASK_64 = (1 << 64) - 1


def decode_batch(body: bytes) -> Tuple[Any, Optional[int], Optional[Tuple[int, ...]]]:
    """(jaeger-client Batch, seqNo, ClientStats tuple) of a binary-Thrift Batch body."""
    batch = ttypes.Batch()
    batch.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(body)))
    iprot = TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(body))
    seq_no, stats = None, None
    iprot.readStructBegin()
    while True:
        _, ftype, fid = iprot.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 3 and ftype == TType.I64:
            seq_no = iprot.readI64()
        elif fid == 4 and ftype == TType.STRUCT:
            values: Dict[int, int] = {}
            iprot.readStructBegin()
            while True:
                _, ftype2, fid2 = iprot.readFieldBegin()
                if ftype2 == TType.STOP:
                    break
                values[fid2] = iprot.readI64()
                iprot.readFieldEnd()
            iprot.readStructEnd()
            stats = (values.get(1), values.get(2), values.get(3))
        else:
            iprot.skip(ftype)
        iprot.readFieldEnd()
    return batch, seq_no, stats


# ------------------------------------------------------------------------------ HTTP


class Collector:
    """A jaeger-collector stand-in: records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.status = 202
        self.drop_connection = False  # close the socket after answering, without saying so
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as jaeger-collector

            def do_POST(self) -> None:  # noqa: N802 - the http.server naming scheme
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "client": self.client_address,
                    }
                )
                self.send_response(collector.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if collector.drop_connection:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/traces"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def batches(self) -> List[Tuple[Any, Optional[int], Optional[Tuple[int, ...]]]]:
        return [decode_batch(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    collector = Collector()
    yield collector
    collector.close()


def http_reporter(reporters: List[Reporter], sender: HttpSender, **kwargs: Any) -> Reporter:
    reporter = Reporter(sender, flush_interval=60, **kwargs)
    reporter.set_process("http-service", {"hostname": "box-2"})
    reporters.append(reporter)
    return reporter


def test_http_posts_a_decodable_batch_with_headers_and_basic_auth(collector, reporters):
    reporter = http_reporter(reporters, HttpSender(collector.url, user="alice", password="s3cr"))
    trace_id = (0xABCDEF << 64) | 0xFFFFFFFFFFFFFFFE
    records = [
        make_record(0, trace_id=trace_id, tags={"http.status_code": 200, "ok": True}),
        make_record(1),
    ]
    for record in records:
        reporter.report_span(record)
    assert reporter.flush(5)

    assert len(collector.requests) == 1
    request = collector.requests[0]
    assert request["path"] == "/api/traces"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == THRIFT_BINARY_CONTENT_TYPE
    assert headers["b3"] == "0"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cr").decode()

    batch, seq_no, stats = decode_batch(request["body"])
    assert batch.process.serviceName == "http-service"
    process_tags = {t.key: t.vStr for t in batch.process.tags}
    assert process_tags["hostname"] == "box-2"
    assert process_tags[CLIENT_UUID_TAG_KEY] == reporter.client_uuid
    assert seq_no == 1 and stats == (0, 0, 0)
    first = batch.spans[0]
    assert first.traceIdHigh == 0xABCDEF
    assert first.traceIdLow & MASK_64 == 0xFFFFFFFFFFFFFFFE
    assert {t.key: (t.vType, t.vLong, t.vBool) for t in first.tags} == {
        "http.status_code": (3, 200, None),
        "ok": (2, None, True),
    }
    assert [s.spanId & MASK_64 for s in batch.spans] == [r.span_id for r in records]


def test_http_without_user_sends_no_authorization(collector, reporters):
    reporter = http_reporter(reporters, HttpSender(collector.url))
    reporter.report_span(make_record())
    assert reporter.flush(5)
    headers = {k.lower() for k in collector.requests[0]["headers"]}
    assert "authorization" not in headers


def test_http_bodies_are_split_at_max_body_size_over_one_connection(collector, reporters):
    reporter = http_reporter(reporters, HttpSender(collector.url, max_body_size=4096))
    records = [make_record(i, tags={"pad": "x" * 150}) for i in range(100)]
    for record in records:
        reporter.report_span(record)
    assert reporter.flush(5)
    assert len(collector.requests) >= 5
    assert all(len(r["body"]) <= 4096 for r in collector.requests)
    decoded = collector.batches()
    ids = [s.spanId & MASK_64 for batch, _, _ in decoded for s in batch.spans]
    assert sorted(ids) == sorted(r.span_id for r in records)
    assert [seq for _, seq, _ in decoded] == list(range(1, len(decoded) + 1))
    assert len({r["client"] for r in collector.requests}) == 1  # kept alive


def test_http_non_2xx_is_a_counted_failure(collector, reporters, caplog):
    collector.status = 500
    reporter = http_reporter(reporters, HttpSender(collector.url))
    for i in range(3):
        reporter.report_span(make_record(i))
    assert reporter.flush(5)  # accounted for: lost and counted, not pending
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.dropped.send_failed"] == 3
    assert snapshot["reporter.batches.failed"] == 1
    assert snapshot["reporter.spans.reported"] == 0
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)

    collector.status = 202
    reporter.report_span(make_record(9))
    assert reporter.flush(5)
    _, seq_no, stats = collector.batches()[-1]
    assert stats == (0, 0, 3) and seq_no == 2


def test_http_reconnects_when_the_server_drops_a_kept_alive_connection(collector, reporters):
    collector.drop_connection = True
    reporter = http_reporter(reporters, HttpSender(collector.url))
    for round_no in range(3):
        reporter.report_span(make_record(round_no))
        assert reporter.flush(5)
        time.sleep(0.05)  # let the server close its end
    assert len(collector.requests) == 3
    assert reporter.metrics.snapshot()["reporter.spans.dropped.send_failed"] == 0


def test_http_collector_down_fails_without_raising(reporters):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reporter = http_reporter(
        reporters, HttpSender(f"http://127.0.0.1:{port}/api/traces", timeout=1)
    )
    reporter.report_span(make_record())
    assert reporter.flush(5)
    assert reporter.close(5)
    assert reporter.metrics.snapshot()["reporter.spans.dropped.send_failed"] == 1


def test_http_sender_validates_its_settings_and_does_no_io_when_built():
    with pytest.raises(ValueError, match="endpoint"):
        HttpSender("localhost:14268/api/traces")
    with pytest.raises(ValueError, match="timeout"):
        HttpSender("http://collector:14268/api/traces", timeout=0)
    with pytest.raises(ValueError, match="max_body_size"):
        HttpSender("http://collector:14268/api/traces", max_body_size=10)
    sender = HttpSender("https://collector.invalid:14268/api/traces?format=jaeger.thrift")
    assert sender.protocol == "binary" and sender._conn is None
    assert sender._path == "/api/traces?format=jaeger.thrift"


# ------------------------------------------------------------------------------- UDP


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_udp_agent_absent_gives_no_error(reporters):
    reporter = Reporter(UdpSender("127.0.0.1", free_udp_port()), flush_interval=60)
    reporters.append(reporter)
    for i in range(10):
        reporter.report_span(make_record(i))
    assert reporter.flush(5)
    assert reporter.close(5)
    snapshot = reporter.metrics.snapshot()
    # An unconnected socket never sees ICMP port-unreachable: the datagram left the process.
    assert snapshot["reporter.spans.reported"] == 10
    assert snapshot["reporter.spans.dropped.send_failed"] == 0


def test_udp_unresolvable_host_counts_failures_and_does_not_retry_dns_per_batch(
    reporters, monkeypatch, caplog
):
    lookups: List[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def counting_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(senders_module.socket, "getaddrinfo", counting_getaddrinfo)
    reporter = Reporter(UdpSender("nonexistent.invalid", 6831), flush_interval=60)
    reporters.append(reporter)
    for _ in range(3):
        for i in range(5):
            reporter.report_span(make_record(i))
        assert reporter.flush(5)
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.dropped.send_failed"] == 15
    assert snapshot["reporter.batches.failed"] == 3
    assert lookups == ["nonexistent.invalid"]  # retried only after UDP_RESOLVE_RETRY
    failures = [r.getMessage() for r in caplog.records if "failed to send" in r.getMessage()]
    assert len(failures) == 1 and "nonexistent.invalid" in failures[0]  # first one, at once
    assert reporter.close(5)


def test_udp_sender_opens_its_socket_lazily_and_again_after_fork_reset():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        sender = UdpSender("127.0.0.1", sink.getsockname()[1])
        assert sender._sock is None
        sender.send(b"one")
        assert sink.recv(100) == b"one"
        first = sender._sock
        sender.reset_after_fork()
        assert sender._sock is None and first.fileno() == -1
        sender.send(b"two")
        assert sink.recv(100) == b"two"
        with pytest.raises(ValueError, match="max_packet_size"):
            sender.send(b"x" * 65001)
        sender.close()
        sender.close()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_udp_sender_follows_getaddrinfo_to_ipv6(reporters):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sink:
        sink.bind(("::1", 0))
        sink.settimeout(2)
        sender = UdpSender("::1", sink.getsockname()[1], protocol="binary")
        reporter = Reporter(sender, flush_interval=60)
        reporters.append(reporter)
        reporter.report_span(make_record())
        assert reporter.flush(5)
        datagram = sink.recv(70000)
        assert datagram[:4] == b"\x80\x01\x00\x04"  # strict binary header, ONEWAY
        assert sender._sock.family == socket.AF_INET6


def test_udp_sender_validates_its_settings():
    with pytest.raises(ValueError, match="protocol"):
        UdpSender(protocol="json")
    with pytest.raises(ValueError, match="port"):
        UdpSender(port=0)
    with pytest.raises(ValueError, match="max_packet_size"):
        UdpSender(max_packet_size=70000)
    assert repr(UdpSender("agent", 6832, "binary")) == "UdpSender(agent:6832, binary)"
