"""The batching Reporter, end to end through real loopback UDP sockets.

Every datagram is decoded with jaeger-client 4.8.0's own generated Thrift classes and the
Apache ``thrift`` runtime, never with our encoder, so these tests check the wire format the
agent sees. jaeger-client's classes predate ``Batch.seqNo`` and ``Batch.stats`` (fields 3
and 4) and skip them, so a second small reader pulls those two fields out of the same bytes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from jaeger_client.thrift_gen.agent import Agent
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.Thrift import TType
from thrift.transport import TTransport

from opentracing_sls.constants import CLIENT_UUID_TAG_KEY, MAX_UDP_PACKET_SIZE
from opentracing_sls.metrics import Metrics
from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM, SpanRecord
from opentracing_sls.reporting import Reporter, UdpSender
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.testing import make_span_record as make_record

MASK_64 = (1 << 64) - 1
PROTOCOLS = {
    "compact": TCompactProtocol.TCompactProtocol,
    "binary": TBinaryProtocol.TBinaryProtocol,
}


# ----------------------------------------------------------------------------- helpers


class UdpSink:
    """A UDP receiver on an ephemeral loopback port that collects datagrams in a thread."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # Large enough that bursts of 65 000-byte datagrams are never dropped by the kernel.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.datagrams: List[bytes] = []
        self._decoded: Dict[Tuple[int, str], DecodedBatch] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                self.datagrams.append(self.sock.recv(70000))
            except socket.timeout:
                continue
            except OSError:
                return

    def wait_for(self, count: int, protocol: str = "compact", timeout: float = 5.0) -> List[Any]:
        """Decoded batches once they hold at least ``count`` spans (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            batches = [self._decode(i, d, protocol) for i, d in enumerate(list(self.datagrams))]
            if sum(len(b.spans) for b in batches) >= count or time.monotonic() > deadline:
                return batches
            time.sleep(0.01)

    def _decode(self, index: int, datagram: bytes, protocol: str) -> DecodedBatch:
        key = (index, protocol)
        if key not in self._decoded:  # jaeger-client's pure-Python decoding is slow
            self._decoded[key] = decode_datagram(datagram, protocol)
        return self._decoded[key]

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()


class DecodedBatch:
    def __init__(
        self, batch: Any, seq_no: Optional[int], stats: Optional[Tuple[int, ...]], size: int
    ) -> None:
        self.process = batch.process
        self.spans = batch.spans or []
        self.seq_no = seq_no
        self.stats = stats
        self.size = size

    @property
    def process_tags(self) -> Dict[str, Any]:
        return {t.key: tag_value(t) for t in self.process.tags or []}


def tag_value(tag: Any) -> Any:
    return (tag.vStr, tag.vDouble, tag.vBool, tag.vLong, tag.vBinary)[tag.vType]


def decode_datagram(datagram: bytes, protocol: str = "compact") -> DecodedBatch:
    proto_class = PROTOCOLS[protocol]
    iprot = proto_class(TTransport.TMemoryBuffer(datagram))
    name, message_type, _seqid = iprot.readMessageBegin()
    assert name == "emitBatch"
    assert message_type == 4  # ONEWAY
    args = Agent.emitBatch_args()
    args.read(iprot)
    iprot.readMessageEnd()
    # Second pass for the fields jaeger-client's generated Batch does not know.
    iprot = proto_class(TTransport.TMemoryBuffer(datagram))
    iprot.readMessageBegin()
    iprot.readStructBegin()
    seq_no, stats = None, None
    while True:
        _, ftype, fid = iprot.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 1 and ftype == TType.STRUCT:
            seq_no, stats = read_batch_extras(iprot)
        else:
            iprot.skip(ftype)
        iprot.readFieldEnd()
    return DecodedBatch(args.batch, seq_no, stats, len(datagram))


def read_batch_extras(iprot: Any) -> Tuple[Optional[int], Optional[Tuple[int, ...]]]:
    """``Batch.seqNo`` (3, i64) and ``Batch.stats`` (4, ClientStats of three i64)."""
    seq_no, stats = None, None
    iprot.readStructBegin()
    while True:
        _, ftype, fid = iprot.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 3 and ftype == TType.I64:
            seq_no = iprot.readI64()
        elif fid == 4 and ftype == TType.STRUCT:
            values = {}
            iprot.readStructBegin()
            while True:
                _, ftype2, fid2 = iprot.readFieldBegin()
                if ftype2 == TType.STOP:
                    break
                values[fid2] = iprot.readI64() if ftype2 == TType.I64 else iprot.skip(ftype2)
                iprot.readFieldEnd()
            iprot.readStructEnd()
            stats = (values.get(1), values.get(2), values.get(3))
        else:
            iprot.skip(ftype)
        iprot.readFieldEnd()
    iprot.readStructEnd()
    return seq_no, stats


def all_spans(batches: List[DecodedBatch]) -> List[Any]:
    return [span for batch in batches for span in batch.spans]


def span_ids(batches: List[DecodedBatch]) -> List[int]:
    return [span.spanId & MASK_64 for span in all_spans(batches)]


@pytest.fixture
def sink():
    sink = UdpSink()
    yield sink
    sink.close()


def udp_reporter(
    reporters: List[Reporter], port: int, protocol: str = "compact", **kwargs: Any
) -> Reporter:
    reporter = Reporter(UdpSender("127.0.0.1", port, protocol=protocol), **kwargs)
    reporter.set_process("test-service", {"hostname": "box-1", "ip": "10.0.0.7"})
    reporters.append(reporter)
    return reporter


# ----------------------------------------------------------------------- wire contents


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_every_field_decodes_with_jaeger_client_classes(sink, reporters, protocol):
    reporter = udp_reporter(reporters, sink.port, protocol)
    trace_id = (0xFEDCBA9876543210 << 64) | 0x8000000000000001  # 128-bit, low half >= 2^63
    record = SpanRecord(
        trace_id=trace_id,
        span_id=0xFFFFFFFFFFFFFFFF,
        parent_id=0x1234,
        operation_name="GET /product/ü",
        flags=3,
        start_time=1_700_000_000_123_456,
        duration=4321,
        # jaeger-client's generated reader decodes vBinary as UTF-8 text, so the test bytes
        # must be valid UTF-8 to survive its decoder.
        tags={"s": "text", "d": 2.5, "b": True, "l": -42, "big": 2**63 - 1, "bin": b"\x00\x7fraw"},
        logs=[(1_700_000_000_123_500, {"event": "error", "attempt": 2, "ok": False})],
        references=[(CHILD_OF, trace_id, 0x1234), (FOLLOWS_FROM, 0x77, 0x88)],
    )
    reporter.report_span(record)
    reporter.report_span(make_record(1))
    assert reporter.flush(5)

    batches = sink.wait_for(2, protocol)
    assert len(batches) == 1
    batch = batches[0]
    assert batch.process.serviceName == "test-service"
    tags = batch.process_tags
    assert tags["hostname"] == "box-1" and tags["ip"] == "10.0.0.7"
    assert tags[CLIENT_UUID_TAG_KEY] == reporter.client_uuid
    assert len(reporter.client_uuid) == 36
    assert batch.seq_no == 1
    assert batch.stats == (0, 0, 0)

    span = batch.spans[0]
    assert span.traceIdHigh & MASK_64 == 0xFEDCBA9876543210
    assert span.traceIdLow & MASK_64 == 0x8000000000000001
    assert span.traceIdLow < 0  # signed i64 on the wire
    assert span.spanId & MASK_64 == 0xFFFFFFFFFFFFFFFF
    assert span.parentSpanId == 0x1234
    assert span.operationName == "GET /product/ü"
    assert span.flags == 3
    assert span.startTime == 1_700_000_000_123_456
    assert span.duration == 4321
    by_key = {t.key: t for t in span.tags}
    assert [by_key[k].vType for k in ("s", "d", "b", "l", "big", "bin")] == [0, 1, 2, 3, 3, 4]
    assert {k: tag_value(t) for k, t in by_key.items()} == {
        "s": "text",
        "d": 2.5,
        "b": True,
        "l": -42,
        "big": 2**63 - 1,
        "bin": "\x00\x7fraw",
    }
    assert len(span.logs) == 1
    assert span.logs[0].timestamp == 1_700_000_000_123_500
    assert [(f.key, tag_value(f)) for f in span.logs[0].fields] == [
        ("event", "error"),
        ("attempt", 2),
        ("ok", False),
    ]
    refs = [
        (r.refType, r.traceIdHigh & MASK_64, r.traceIdLow & MASK_64, r.spanId)
        for r in span.references
    ]
    assert refs == [(0, 0xFEDCBA9876543210, 0x8000000000000001, 0x1234), (1, 0, 0x77, 0x88)]

    root = batch.spans[1]
    assert root.parentSpanId == 0 and root.traceIdHigh == 0
    assert not root.references and not root.logs


def test_seq_no_increases_per_datagram_and_stats_are_cumulative(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, queue_size=10, batch_size=10, flush_interval=60)
    for round_no in range(3):
        for i in range(3):
            reporter.report_span(make_record(i))
        assert reporter.flush(5)
        sink.wait_for(3 * (round_no + 1))
    reporter.report_span(make_record(9, tags={f"k{i}": "x" * 1000 for i in range(70)}))
    reporter.report_span(make_record(10))
    assert reporter.flush(5)
    batches = sink.wait_for(10)
    assert [b.seq_no for b in batches] == [1, 2, 3, 4]
    assert [b.stats for b in batches] == [(0, 0, 0)] * 3 + [(0, 1, 0)]
    assert len({b.process_tags[CLIENT_UUID_TAG_KEY] for b in batches}) == 1


# ----------------------------------------------------------------------- packet sizes


def test_batch_over_65000_bytes_is_split_and_nothing_is_lost(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=60)
    records = [make_record(i, tags={"payload": "p" * 900, "i": i}) for i in range(400)]
    for record in records:
        reporter.report_span(record)
    assert reporter.flush(5)
    batches = sink.wait_for(400)
    assert len(batches) >= 6  # ~400 KB of spans
    assert all(b.size <= MAX_UDP_PACKET_SIZE for b in batches)
    assert max(b.size for b in batches) > 60000  # packed, not one span per datagram
    assert sorted(span_ids(batches)) == sorted(r.span_id for r in records)
    assert [b.seq_no for b in batches] == list(range(1, len(batches) + 1))
    assert reporter.metrics.snapshot()["reporter.spans.reported"] == 400


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_oversize_span_is_dropped_and_counted_while_neighbours_arrive(sink, reporters, protocol):
    reporter = udp_reporter(reporters, sink.port, protocol, flush_interval=60)
    before, after = make_record(1), make_record(3)
    huge = make_record(2, tags={f"tag{i}": "v" * 1000 for i in range(80)})  # ~80 KB alone
    for record in (before, huge, after):
        reporter.report_span(record)
    assert reporter.flush(5)
    batches = sink.wait_for(2, protocol)
    assert span_ids(batches) == [before.span_id, after.span_id]
    assert batches[-1].stats == (0, 1, 0)  # tooLargeDroppedSpans
    assert reporter.metrics.snapshot()["reporter.spans.dropped.too_large"] == 1


def test_smaller_max_packet_size_is_honoured(sink, reporters):
    # macOS' default UDP limit is 9216 bytes; the limit is a parameter, not a constant.
    reporter = Reporter(UdpSender("127.0.0.1", sink.port, max_packet_size=9216), flush_interval=60)
    reporters.append(reporter)
    for i in range(200):
        reporter.report_span(make_record(i, tags={"pad": "x" * 200}))
    assert reporter.flush(5)
    batches = sink.wait_for(200)
    assert len(span_ids(batches)) == 200
    assert all(b.size <= 9216 for b in batches) and len(batches) >= 5


# ------------------------------------------------------------------- queue and wake-up


class GatedSender(UdpSender):
    """A real UDP sender whose sends wait for a gate, to hold the worker still."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def send(self, payload: bytes) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().send(payload)


def test_full_queue_drops_and_counts_exactly_without_blocking(sink, reporters):
    sender = GatedSender("127.0.0.1", sink.port)
    reporter = Reporter(sender, queue_size=100, batch_size=1, flush_interval=60)
    reporters.append(reporter)
    reporter.report_span(make_record(0))
    assert sender.entered.wait(5)  # the worker is now stuck in send with an empty queue

    started = time.perf_counter()
    for i in range(1, 1001):
        reporter.report_span(make_record(i))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, elapsed  # ~1 µs per call; a blocking put would take 10 s
    assert reporter.queue_length == 100
    assert reporter.metrics.snapshot()["reporter.spans.dropped.queue_full"] == 900

    sender.gate.set()
    assert reporter.close(5)
    batches = sink.wait_for(101)
    assert len(span_ids(batches)) == 101
    assert batches[-1].stats == (900, 0, 0)
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.reported"] == 101
    assert snapshot["reporter.spans.dropped.queue_full"] == 900


def test_queue_full_is_logged_once_then_rate_limited(sink, reporters, caplog):
    sender = GatedSender("127.0.0.1", sink.port)
    reporter = Reporter(sender, queue_size=5, batch_size=1, flush_interval=60)
    reporters.append(reporter)
    caplog.set_level(logging.WARNING, logger="opentracing_sls.reporting.reporter")
    reporter.report_span(make_record(0))
    assert sender.entered.wait(5)
    for i in range(20):
        reporter.report_span(make_record(i))
    sender.gate.set()
    assert reporter.flush(5)
    deadline = time.monotonic() + 5
    while not queue_full_lines(caplog) and time.monotonic() < deadline:
        time.sleep(0.01)  # logged by the worker after its drain
    for i in range(20):  # more drops within the same minute: counted, not logged again
        reporter.report_span(make_record(i))
    assert reporter.close(5)
    assert queue_full_lines(caplog) == ["dropped 15 span(s): reporter queue full (queue_size=5)"]
    assert reporter.metrics.snapshot()["reporter.spans.dropped.queue_full"] > 15


def queue_full_lines(caplog: Any) -> List[str]:
    return [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]


def test_batch_size_wakes_the_worker_before_the_flush_interval(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, batch_size=10, flush_interval=60)
    for i in range(10):
        reporter.report_span(make_record(i))
    assert len(span_ids(sink.wait_for(10, timeout=3))) == 10


def test_flush_interval_sends_a_few_spans_without_flush(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=0.05)
    reporter.report_span(make_record(1))
    assert len(span_ids(sink.wait_for(1, timeout=3))) == 1


def test_construction_starts_no_thread_and_opens_no_socket(sink):
    before = threading.active_count()
    sender = UdpSender("127.0.0.1", sink.port)
    reporter = Reporter(sender)
    reporter.set_process("svc", {})
    assert threading.active_count() == before
    assert sender._sock is None
    assert reporter.flush(1) and reporter.close(1)  # nothing reported: nothing to start
    assert threading.active_count() == before


def test_sustained_20000_spans_per_second_are_all_delivered(sink, reporters):
    """Default settings, one second at 20 000 spans/s: nothing dropped, nothing lost."""
    reporter = udp_reporter(reporters, sink.port)
    rate, total = 20000, 20000
    start = time.perf_counter()
    for i in range(total):
        reporter.report_span(make_record(i))
        if i % 200 == 199:  # pace in small bursts, like a busy service
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    assert reporter.close(10)
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.dropped.queue_full"] == 0
    assert snapshot["reporter.spans.reported"] == total
    assert len(set(span_ids(sink.wait_for(total)))) == total


# -------------------------------------------------------------------- flush and close


def test_close_delivers_every_queued_span(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=60)
    records = [make_record(i) for i in range(5000)]
    for record in records:
        reporter.report_span(record)
    assert reporter.close(5)
    batches = sink.wait_for(5000)
    assert sorted(span_ids(batches)) == sorted(r.span_id for r in records)
    assert not reporter._worker.is_alive()  # close() stopped the worker ...
    assert reporter.sender._sock is None  # ... and closed the socket


def test_flush_waits_for_delivery_and_can_be_repeated(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=60)
    for i in range(300):
        reporter.report_span(make_record(i))
    assert reporter.flush(5)
    assert len(sink.wait_for(300, timeout=1)) >= 1
    assert reporter.metrics.snapshot()["reporter.spans.reported"] == 300
    for i in range(7):
        reporter.report_span(make_record(i))
    assert reporter.flush(5)
    assert reporter.metrics.snapshot()["reporter.spans.reported"] == 307
    assert reporter.flush(0)  # nothing pending: done at once, even with a zero timeout


def test_flush_returns_false_when_the_timeout_expires(sink, reporters):
    sender = GatedSender("127.0.0.1", sink.port)
    reporter = Reporter(sender, flush_interval=60)
    reporters.append(reporter)
    reporter.report_span(make_record(0))
    started = time.monotonic()
    assert reporter.flush(0.2) is False
    assert 0.15 < time.monotonic() - started < 2
    sender.gate.set()
    assert reporter.flush(5)


def test_report_after_close_is_dropped_and_counted(sink, reporters):
    reporter = udp_reporter(reporters, sink.port)
    reporter.report_span(make_record(0))
    assert reporter.close(5)
    assert reporter.close(5)  # idempotent
    for i in range(3):
        reporter.report_span(make_record(i))
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.dropped.closed"] == 3
    assert snapshot["reporter.spans.reported"] == 1
    assert reporter.flush(1)


def test_shared_metrics_and_queue_length(sink, reporters):
    metrics = Metrics()
    reporter = udp_reporter(reporters, sink.port, metrics=metrics, flush_interval=60)
    assert reporter.metrics is metrics
    for i in range(5):
        reporter.report_span(make_record(i))
    assert reporter.queue_length == 5
    assert reporter.flush(5)
    assert reporter.queue_length == 0
    assert metrics.snapshot()["reporter.batches.sent"] == 1


def test_invalid_settings_raise_value_error():
    sender = UdpSender()
    with pytest.raises(ValueError, match="queue_size"):
        Reporter(sender, queue_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        Reporter(sender, queue_size=10, batch_size=11)
    with pytest.raises(ValueError, match="flush_interval"):
        Reporter(sender, flush_interval=0)
    with pytest.raises(ValueError, match="protocol"):
        Reporter(sender, encoder=get_encoder("binary"))


# ----------------------------------------------------------------------- failure paths


class ExplodingEncoder:
    """The real compact encoder, except for spans whose operation is ``explode``."""

    protocol = "compact"

    def __init__(self) -> None:
        self._real = get_encoder("compact")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def encode_span(self, record: SpanRecord) -> bytes:
        if record.operation_name == "explode":
            raise RuntimeError("cannot encode")
        return self._real.encode_span(record)


def test_encoding_error_drops_only_that_span(sink, reporters, caplog):
    reporter = Reporter(
        UdpSender("127.0.0.1", sink.port), encoder=ExplodingEncoder(), flush_interval=60
    )
    reporters.append(reporter)
    good = [make_record(1), make_record(3)]
    reporter.report_span(good[0])
    reporter.report_span(make_record(2, operation_name="explode"))
    reporter.report_span(good[1])
    assert reporter.flush(5)
    batches = sink.wait_for(2)
    assert span_ids(batches) == [r.span_id for r in good]
    assert batches[0].stats == (0, 0, 1)
    assert reporter.metrics.snapshot()["reporter.spans.dropped.encode_error"] == 1
    assert any("could not be encoded" in r.getMessage() for r in caplog.records)
    reporter.report_span(make_record(4))  # the worker survived
    assert reporter.flush(5)
    assert len(span_ids(sink.wait_for(3))) == 3


class FailingSender(UdpSender):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 1

    def send(self, payload: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(105, "No buffer space available")
        super().send(payload)


def test_send_failure_is_counted_logged_at_once_and_reported_in_client_stats(
    sink, reporters, caplog
):
    caplog.set_level(logging.WARNING, logger="opentracing_sls.reporting.reporter")
    reporter = Reporter(FailingSender("127.0.0.1", sink.port), flush_interval=60)
    reporters.append(reporter)
    for i in range(4):
        reporter.report_span(make_record(i))
    assert reporter.flush(5)  # the spans are accounted for (lost and counted)
    snapshot = reporter.metrics.snapshot()
    assert snapshot["reporter.spans.dropped.send_failed"] == 4
    assert snapshot["reporter.batches.failed"] == 1
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("opentracing_sls")]
    assert len(messages) == 1 and "failed to send 4 span(s)" in messages[0]

    reporter.report_span(make_record(5))
    assert reporter.flush(5)
    batches = sink.wait_for(1)
    assert batches[0].stats == (0, 0, 4)
    assert batches[0].seq_no == 2  # seqNo 1 was lost: the gap tells the agent


# ------------------------------------------------------------------ process lifecycle


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_reports_with_its_own_identity_and_not_the_parent_queue(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=60)
    sent_before = [make_record(i) for i in range(5)]
    for record in sent_before:
        reporter.report_span(record)
    assert reporter.flush(5)
    queued = [make_record(i) for i in range(5, 10)]
    for record in queued:  # queued, not yet sent, when the process forks
        reporter.report_span(record)
    assert reporter.queue_length == 5

    pid = os.fork()
    if pid == 0:  # child: always leave through os._exit
        code = 1
        try:
            ok = reporter.queue_length == 0
            for i in range(3):
                reporter.report_span(make_record(100 + i, operation_name="child"))
            code = 0 if reporter.close(5) and ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reporter.flush(5)

    batches = sink.wait_for(13)
    ids = span_ids(batches)
    assert len(ids) == 13 and len(set(ids)) == 13  # the child did not re-send `queued`
    parent_uuid = reporter.client_uuid
    child_batches = [b for b in batches if b.process_tags[CLIENT_UUID_TAG_KEY] != parent_uuid]
    assert len(child_batches) == 1
    child_spans = child_batches[0].spans
    assert [s.operationName for s in child_spans] == ["child"] * 3
    assert child_batches[0].seq_no == 1  # a new client starts its own sequence
    parent_ids = {r.span_id for r in sent_before + queued}
    assert not parent_ids & {s.spanId & MASK_64 for s in child_spans}
    assert parent_ids == set(ids) - {s.spanId & MASK_64 for s in child_spans}


def test_spans_are_flushed_at_interpreter_exit_without_close(sink):
    script = textwrap.dedent(
        f"""
        from opentracing_sls.ids import new_id
        from opentracing_sls.record import SpanRecord
        from opentracing_sls.reporting import Reporter, UdpSender

        reporter = Reporter(UdpSender("127.0.0.1", {sink.port}), flush_interval=60)
        reporter.set_process("exiting-job", {{}})
        for i in range(1500):
            reporter.report_span(
                SpanRecord(new_id(), new_id(), 0, "job", 1, 1, 1, {{"i": i}}, [], [])
            )
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    batches = sink.wait_for(1500)
    assert len(set(span_ids(batches))) == 1500
    assert {b.process.serviceName for b in batches} == {"exiting-job"}


def _libc_fork() -> Any:
    """libc's fork(), which skips os.register_at_fork hooks like a C-level pre-fork server."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).fork
    except (ImportError, OSError, AttributeError):
        return None


@pytest.mark.skipif(_libc_fork() is None, reason="needs libc fork() (Linux)")
def test_fork_without_at_fork_hooks_is_caught_by_the_pid_check(sink, reporters):
    reporter = udp_reporter(reporters, sink.port, flush_interval=60, batch_size=50)
    for i in range(5):
        reporter.report_span(make_record(i, operation_name="parent"))
    assert reporter.queue_length == 5  # queued in the parent when it forks

    pid = _libc_fork()()
    if pid == 0:  # child, with the parent's queue, stale worker and locks
        code = 1
        try:
            for i in range(60):  # the 50th queued span triggers the pid check
                reporter.report_span(make_record(i, operation_name="child"))
            ok = reporter.close(5)
            dropped = reporter.metrics.snapshot()["reporter.spans.dropped.fork"]
            code = 0 if ok and dropped == 50 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reporter.flush(5)
    batches = sink.wait_for(5 + 15)
    operations = [s.operationName for s in all_spans(batches)]
    # The parent's 5 spans arrive once (from the parent); the child's first 45 went down
    # with them in the inherited queue (counted), the 15 after the check arrive.
    assert sorted(operations) == ["child"] * 15 + ["parent"] * 5
    uuids = {b.process_tags[CLIENT_UUID_TAG_KEY] for b in batches}
    assert len(uuids) == 2


@pytest.mark.skipif(importlib.util.find_spec("gevent") is None, reason="gevent not installed")
def test_works_under_gevent_monkey_patching_including_the_exit_flush(sink):
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import gevent
        from opentracing_sls.ids import new_id
        from opentracing_sls.record import SpanRecord
        from opentracing_sls.reporting import Reporter, UdpSender

        def span(i):
            return SpanRecord(new_id(), new_id(), 0, "green", 1, 1, 1, {{"i": i}}, [], [])

        reporter = Reporter(UdpSender("127.0.0.1", {sink.port}), flush_interval=0.05)
        for i in range(1000):
            reporter.report_span(span(i))
            if i % 100 == 0:
                gevent.sleep(0)  # a handler yielding on I/O
        gevent.sleep(0.5)  # wake-ups alone (no flush) deliver
        assert reporter.metrics.snapshot()["reporter.spans.reported"] == 1000
        for i in range(500):  # left for the exit hook
            reporter.report_span(span(i))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert len(set(span_ids(sink.wait_for(1500)))) == 1500
