"""Process, Batch and emitBatch messages: decodable by jaeger-client's generated classes
(which predate seqNo/stats and must skip them) and by thriftpy2 with our IDL; and the
size bound the reporter uses to fill 65 000-byte datagrams."""

from __future__ import annotations

import random

import pytest
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTransport
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.protocol.binary import TBinaryProtocol as Tp2Binary
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.transport import TCyMemoryBuffer
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.constants import MAX_UDP_PACKET_SIZE
from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting.encoding import PROTOCOLS, get_encoder
from opentracing_sls.reporting.idl import agent, jaeger

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456
I64_MAX = (1 << 63) - 1
PROCESS_TAGS = {"hostname": "web-1", "ip": "10.1.2.3", "jaeger.version": "Python-4.8.0",
                "client-uuid": "6f1c0a0e", "pid": 4242, "cpu": 0.75, "debug": True}


@pytest.fixture(params=PROTOCOLS)
def protocol(request) -> str:
    return request.param


def signed(u: int) -> int:
    u &= M64
    return u - (1 << 64) if u >> 63 else u


def zigzag(v: int) -> int:
    v = signed(v)
    return 2 * v if v >= 0 else -2 * v - 1


def varint_size(z: int) -> int:
    return max(1, -(-z.bit_length() // 7))


def record(i: int = 0, **overrides) -> SpanRecord:
    rnd = random.Random(i)
    fields = dict(
        trace_id=rnd.getrandbits(128), span_id=rnd.getrandbits(64),
        parent_id=rnd.getrandbits(64), operation_name=f"op-{i}", flags=1,
        start_time=NOW_US + i, duration=100 + i,
        tags={"i": i, "s": "v" * (i % 50), "b": bool(i % 2)},
        logs=[(NOW_US + i, {"event": "x", "value": i})], references=[])
    fields.update(overrides)
    return SpanRecord(**fields)


def apache_message(data: bytes, protocol: str):
    buf = TTransport.TMemoryBuffer(data)
    proto = (TCompactProtocol.TCompactProtocol(buf) if protocol == "compact"
             else TBinaryProtocol.TBinaryProtocol(buf))
    name, mtype, seqid = proto.readMessageBegin()
    args = Agent.emitBatch_args()
    args.read(proto)
    proto.readMessageEnd()
    assert buf._buffer.tell() == len(data)
    return name, mtype, seqid, args.batch


def idl_message(data: bytes, protocol: str, cython: bool = False):
    if cython:
        buf = TCyMemoryBuffer(data)
        proto = TCyBinaryProtocol(buf)
    else:
        buf = TMemoryBuffer(data)
        proto = Tp2Compact(buf) if protocol == "compact" else Tp2Binary(buf)
    name, mtype, seqid = proto.read_message_begin()
    args = agent.Agent.emitBatch_args()
    proto.read_struct(args)
    proto.read_message_end()
    if not cython:
        assert buf.read(1) == b""
    return name, mtype, seqid, args.batch


def tags_of(tags):
    values = {0: "vStr", 1: "vDouble", 2: "vBool", 3: "vLong", 4: "vBinary"}
    return {t.key: getattr(t, values[t.vType]) for t in tags or ()}


def test_process_round_trip(protocol):
    encoder = get_encoder(protocol)
    data = encoder.encode_process("product-page ✓", PROCESS_TAGS)
    for process, buf in ((ttypes.Process(), TTransport.TMemoryBuffer(data)),):
        process.read(TCompactProtocol.TCompactProtocol(buf) if protocol == "compact"
                     else TBinaryProtocol.TBinaryProtocol(buf))
        assert process.serviceName == "product-page ✓"
        assert tags_of(process.tags) == PROCESS_TAGS
        assert [t.vType for t in process.tags] == [0, 0, 0, 0, 3, 1, 2]
    empty = ttypes.Process()
    empty.read(TCompactProtocol.TCompactProtocol(TTransport.TMemoryBuffer(
        get_encoder("compact").encode_process("svc", {}))))
    assert empty.serviceName == "svc" and empty.tags is None


def test_process_with_many_tags(protocol):
    tags = {f"t{i}": i for i in range(100)}
    encoder = get_encoder(protocol)
    spans = [encoder.encode_span(record())]
    data = encoder.encode_emit_batch(encoder.encode_process("s", tags), spans, 1, (0, 0, 0))
    assert tags_of(apache_message(data, protocol)[3].process.tags) == tags


@pytest.mark.parametrize("count", [0, 1, 14, 15, 16, 300])
def test_emit_batch_round_trip(protocol, count):
    encoder = get_encoder(protocol)
    records = [record(i) for i in range(count)]
    process = encoder.encode_process("svc", PROCESS_TAGS)
    data = encoder.encode_emit_batch(process, [encoder.encode_span(r) for r in records],
                                     77, (5, 6, 7))

    name, mtype, seqid, batch = apache_message(data, protocol)
    assert (name, mtype, seqid) == ("emitBatch", TMessageType.ONEWAY, 1)
    assert batch.process.serviceName == "svc"
    assert tags_of(batch.process.tags) == PROCESS_TAGS
    assert [s.operationName for s in batch.spans] == [r.operation_name for r in records]
    assert [s.spanId for s in batch.spans] == [signed(r.span_id) for r in records]
    assert [s.traceIdHigh for s in batch.spans] == [signed(r.trace_id >> 64) for r in records]
    assert [tags_of(s.tags) for s in batch.spans] == [r.tags for r in records]
    # jaeger-client's Batch has no seqNo/stats: it skipped fields 3 and 4 cleanly.

    decoders = [idl_message(data, protocol)]
    if protocol == "binary":
        decoders.append(idl_message(data, protocol, cython=True))
    for name, mtype, seqid, batch in decoders:
        assert (name, mtype, seqid) == ("emitBatch", TMessageType.ONEWAY, 1)
        assert batch.seqNo == 77
        assert (batch.stats.fullQueueDroppedSpans, batch.stats.tooLargeDroppedSpans,
                batch.stats.failedToEmitSpans) == (5, 6, 7)
        assert [s.parentSpanId for s in batch.spans] == [signed(r.parent_id) for r in records]
        assert [s.logs[0].fields[1].vLong for s in batch.spans] == list(range(count))


@pytest.mark.parametrize("seq_no, stats", [
    (0, (0, 0, 0)), (I64_MAX, (I64_MAX, I64_MAX, I64_MAX)), (-1, (-1, -(1 << 63), 1)),
    (M64, (M64, 1 << 63, 0)),  # unsigned counters wrap to i64 like ids
])
def test_seq_no_and_stats_extremes(protocol, seq_no, stats):
    encoder = get_encoder(protocol)
    data = encoder.encode_emit_batch(encoder.encode_process("s", {}),
                                     [encoder.encode_span(record())], seq_no, stats)
    batch = idl_message(data, protocol)[3]
    assert batch.seqNo == signed(seq_no)
    assert (batch.stats.fullQueueDroppedSpans, batch.stats.tooLargeDroppedSpans,
            batch.stats.failedToEmitSpans) == tuple(signed(s) for s in stats)


def test_encode_batch_is_a_bare_batch(protocol):
    """The HTTP collector body: a Batch struct, no message header."""
    encoder = get_encoder(protocol)
    records = [record(i) for i in range(20)]
    data = encoder.encode_batch(encoder.encode_process("svc", {"ip": "1.2.3.4"}),
                                [encoder.encode_span(r) for r in records], 9, (1, 2, 3))
    buf = TMemoryBuffer(data)
    batch = jaeger.Batch()
    (Tp2Compact(buf) if protocol == "compact" else Tp2Binary(buf)).read_struct(batch)
    assert buf.read(1) == b""
    assert batch.process.serviceName == "svc" and batch.seqNo == 9
    assert batch.stats.tooLargeDroppedSpans == 2
    assert [s.spanId for s in batch.spans] == [signed(r.span_id) for r in records]

    apache = ttypes.Batch()
    apache.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(data))
                if protocol == "binary"
                else TCompactProtocol.TCompactProtocol(TTransport.TMemoryBuffer(data)))
    assert len(apache.spans) == 20


EXTREMES = [
    (1, (0, 0, 0)),
    (-(1 << 63), (-(1 << 63), -(1 << 63), -(1 << 63))),
    (I64_MAX, (I64_MAX, I64_MAX, I64_MAX)),
    (M64, (M64, M64, M64)),  # -1 on the wire: one byte each
    (1 << 63, (1 << 63, (1 << 63) + 1, I64_MAX)),  # i64 minimum as unsigned
]


@pytest.mark.parametrize("count", [0, 1, 14, 15, 200, 2000])
@pytest.mark.parametrize("seq_no, stats", EXTREMES)
def test_emit_batch_overhead_is_an_upper_bound(protocol, count, seq_no, stats):
    encoder = get_encoder(protocol)
    process = encoder.encode_process("svc", PROCESS_TAGS)
    spans = [encoder.encode_span(record(0, span_id=i)) for i in range(count)]
    size = len(encoder.encode_emit_batch(process, spans, seq_no, stats))
    bound = encoder.emit_batch_overhead(process) + sum(map(len, spans))
    assert size <= bound
    if protocol == "compact":
        # The bound takes 10-byte varints for seqNo and the 3 counters and a 6-byte list
        # header (1 + varint32); the slack is exactly what these values did not use.
        header = 1 if count < 15 else 1 + varint_size(count)
        slack = sum(10 - varint_size(zigzag(v)) for v in (seq_no, *stats)) + 6 - header
        assert bound - size == slack
        if all(varint_size(zigzag(v)) == 10 for v in (seq_no, *stats)):
            assert bound - size <= 5, "overhead bound is too loose"
        assert bound - size <= 41
    if protocol == "binary":
        assert size == bound  # everything has a fixed size in the binary protocol


def test_overhead_small_values_slack_is_bounded():
    encoder = get_encoder("compact")
    process = encoder.encode_process("s", {})
    size = len(encoder.encode_emit_batch(process, [], 0, (0, 0, 0)))
    # seqNo and 3 counters at 1 byte instead of 10, list header 1 byte instead of 6
    assert encoder.emit_batch_overhead(process) - size == 4 * 9 + 5


def test_fill_a_65000_byte_datagram(protocol):
    """How the reporter uses the API: add spans while the bound stays within the limit."""
    encoder = get_encoder(protocol)
    process = encoder.encode_process("svc", PROCESS_TAGS)
    budget = MAX_UDP_PACKET_SIZE - encoder.emit_batch_overhead(process)
    spans, used, i = [], 0, 0
    while True:
        span = encoder.encode_span(record(i, tags={"payload": "p" * (i % 700)}))
        if used + len(span) > budget:
            break
        spans.append(span)
        used += len(span)
        i += 1
    data = encoder.encode_emit_batch(process, spans, M64, (M64, M64, M64))
    assert MAX_UDP_PACKET_SIZE - 200 < len(data) <= MAX_UDP_PACKET_SIZE
    assert len(apache_message(data, protocol)[3].spans) == len(spans) > 15
