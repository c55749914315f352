"""Byte-for-byte comparison with generic Thrift writers: Apache ``thrift`` writing
jaeger-client's generated classes, and thriftpy2 writing our IDL. Field order and every
encoding choice (varint sizes, list headers, bool ctypes, double byte order) must match."""

from __future__ import annotations

import random

import pytest
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTransport
from thriftpy2.protocol.binary import TBinaryProtocol as Tp2Binary
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM, SpanRecord
from opentracing_sls.reporting.encoding import PROTOCOLS, get_encoder
from opentracing_sls.reporting.idl import agent, jaeger

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456


BOUNDARY_IDS = [
    0, 1, 0x7F, 0x80, 0x1FFF, 0x2000, 0x3FFF, 0x4000, (1 << 55) - 1, 1 << 55, (1 << 56) - 1,
    1 << 56, (1 << 63) - 1, 1 << 63, (1 << 64) - (1 << 55) - 1, (1 << 64) - (1 << 55),
    (1 << 64) - (1 << 56), M64 - 1, M64,
]

TIMES = [
    0, 1, 0x3F, 0x40, 0x3FF, 0x400, 0x1FFF, 0x2000, 0xFFFFFF, 0x1000000, 0x7FFFFFF, 0x8000000,
    (1 << 40) - 1, 1 << 40, (1 << 41) - 1, 1 << 41, NOW_US, (1 << 52) - 1, 1 << 52,
    (1 << 53) - 1, 1 << 53, (1 << 54) + 3, (1 << 63) - 1, -1, -(1 << 63),
]


def signed(u: int) -> int:
    u &= M64
    return u - (1 << 64) if u >> 63 else u


def ref_tag(module, key, value):
    """A Tag of ``module`` (ttypes or our IDL), typed by our rules, written independently."""
    if isinstance(value, bool):
        return module.Tag(key=key, vType=2, vBool=value)
    if isinstance(value, int):
        return module.Tag(key=key, vType=3, vLong=value)
    if isinstance(value, float):
        return module.Tag(key=key, vType=1, vDouble=value)
    if isinstance(value, bytes):
        # Apache's generated write() passes vBinary to writeString (str -> UTF-8)
        return module.Tag(key=key, vType=4,
                          vBinary=value.decode() if module is ttypes else value)
    return module.Tag(key=key, vType=0, vStr=value)


def ref_span(module, record: SpanRecord):
    tid = record.trace_id
    return module.Span(
        traceIdLow=signed(tid), traceIdHigh=signed(tid >> 64), spanId=signed(record.span_id),
        parentSpanId=signed(record.parent_id), operationName=record.operation_name,
        references=[module.SpanRef(refType=t, traceIdLow=signed(r), traceIdHigh=signed(r >> 64),
                                   spanId=signed(s)) for t, r, s in record.references] or None,
        flags=record.flags, startTime=record.start_time, duration=record.duration,
        tags=[ref_tag(module, k, v) for k, v in record.tags.items()] or None,
        logs=[module.Log(timestamp=ts, fields=[ref_tag(module, k, v) for k, v in f.items()])
              for ts, f in record.logs] or None,
    )


def apache_bytes(obj, protocol: str) -> bytes:
    buf = TTransport.TMemoryBuffer()
    obj.write(TCompactProtocol.TCompactProtocol(buf) if protocol == "compact"
              else TBinaryProtocol.TBinaryProtocol(buf))
    return buf.getvalue()


def tp2_proto(buf, protocol):
    return Tp2Compact(buf) if protocol == "compact" else Tp2Binary(buf)


def tp2_bytes(obj, protocol: str) -> bytes:
    buf = TMemoryBuffer()
    tp2_proto(buf, protocol).write_struct(obj)
    return buf.getvalue()


def records():
    rnd = random.Random(42)
    yield SpanRecord(0x1234, 0x5678, 0, "root", 1, NOW_US, 5, {}, [], [])
    yield SpanRecord(
        rnd.getrandbits(64), rnd.getrandbits(64), rnd.getrandbits(64), "GET /api/user", 1,
        NOW_US, 1234, {"http.url": "http://x/y", "http.status_code": 200, "error": False},
        [(NOW_US + 5, {"event": "x", "value": 42})], [])
    yield SpanRecord(
        (M64 << 64) | (1 << 63), M64, 1 << 63, "ünïcødé ✓", 3, -7, -1,
        {"s": "é" * 300, "d": -2.5, "t": True, "f": False, "l": -(1 << 63), "L": (1 << 63) - 1,
         "n": 1 << 40, "b": b"bin"},
        [(0, {}), (1 << 53, {"k": 1.5e300})] * 8,
        [(CHILD_OF, 1 << 64, 2), (FOLLOWS_FROM, M64, 1 << 63)])
    yield SpanRecord(1, 2, 3, "many", 0, NOW_US, 1 << 40,
                     {f"k{i}": i * 1000 for i in range(40)},
                     [(NOW_US, {f"f{i}": f"v{i}" for i in range(16)})],
                     [(i % 2, i, i) for i in range(16)])
    # every id fast path and fallback: a non-canonical varint would still decode, but not
    # compare equal to Apache's bytes
    for value in BOUNDARY_IDS:
        yield SpanRecord((value << 64) | value, value, value, "b", 1, value >> 1,
                         value >> 30, {}, [(value >> 9, {"v": value >> 1})],
                         [(CHILD_OF, value, value)])
    for t in TIMES:
        yield SpanRecord(1, 2, 3, "t", 1, t, t, {"t": t}, [(t, {}), (~t, {"t": ~t})], [])
    for _ in range(50):
        yield SpanRecord(
            rnd.getrandbits(rnd.choice((64, 128, 30))), rnd.getrandbits(64),
            rnd.getrandbits(rnd.choice((64, 0, 55))), "op", rnd.choice((0, 1, 3)),
            NOW_US + rnd.getrandbits(40), rnd.getrandbits(rnd.choice((5, 14, 28, 40))),
            {"i": rnd.getrandbits(62) - (1 << 61), "s": "x" * rnd.randrange(300)},
            [(NOW_US + rnd.getrandbits(30), {"event": "e", "n": rnd.randrange(2000)})], [])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_span_bytes_equal_apache_thrift(protocol):
    encoder = get_encoder(protocol)
    for record in records():
        assert encoder.encode_span(record) == apache_bytes(ref_span(ttypes, record), protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_span_bytes_equal_thriftpy2(protocol):
    encoder = get_encoder(protocol)
    for record in records():
        assert encoder.encode_span(record) == tp2_bytes(ref_span(jaeger, record), protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("seq_no, stats", [
    (1, (0, 0, 0)), (12345, (1, 2, 3)), ((1 << 63) - 1, ((1 << 63) - 1,) * 3),
    (-(1 << 63), (-(1 << 63), -1, 0)),
])
def test_batch_and_message_bytes_equal_thriftpy2(protocol, seq_no, stats):
    encoder = get_encoder(protocol)
    recs = list(records())[:20]
    process_tags = {"hostname": "web-1", "ip": "10.0.0.1", "jaeger.version": "Python-x",
                    "client-uuid": "abc", "n": 3, "ok": True}
    process = encoder.encode_process("svc-ü", process_tags)
    spans = [encoder.encode_span(r) for r in recs]
    batch = jaeger.Batch(
        process=jaeger.Process(serviceName="svc-ü",
                               tags=[ref_tag(jaeger, k, v) for k, v in process_tags.items()]),
        spans=[ref_span(jaeger, r) for r in recs], seqNo=seq_no,
        stats=jaeger.ClientStats(*stats))
    assert encoder.encode_batch(process, spans, seq_no, stats) == tp2_bytes(batch, protocol)

    buf = TMemoryBuffer()
    proto = tp2_proto(buf, protocol)
    proto.write_message_begin("emitBatch", TMessageType.ONEWAY, 1)
    proto.write_struct(agent.Agent.emitBatch_args(batch=batch))
    proto.write_message_end()
    assert encoder.encode_emit_batch(process, spans, seq_no, stats) == buf.getvalue()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_process_bytes_equal_apache_thrift(protocol):
    encoder = get_encoder(protocol)
    tags = {"hostname": "h", "ip": "127.0.0.1", "pid": 4242, "x": 0.5, "b": False}
    expected = ttypes.Process(serviceName="productpage",
                              tags=[ref_tag(ttypes, k, v) for k, v in tags.items()])
    assert encoder.encode_process("productpage", tags) == apache_bytes(expected, protocol)
    assert encoder.encode_process("svc", {}) == apache_bytes(
        ttypes.Process(serviceName="svc"), protocol)


def test_compact_datagram_header_matches_jaeger_client():
    """jaeger-client's datagrams start with 82 81 01 09 "emitBatch" (jaeger-wire.md s3)."""
    encoder = get_encoder("compact")
    data = encoder.encode_emit_batch(encoder.encode_process("s", {}), [], 1, (0, 0, 0))
    assert data.startswith(b"\x82\x81\x01\x09emitBatch")


def test_binary_datagram_header_is_strict_oneway():
    encoder = get_encoder("binary")
    data = encoder.encode_emit_batch(encoder.encode_process("s", {}), [], 1, (0, 0, 0))
    assert data.startswith(b"\x80\x01\x00\x04\x00\x00\x00\x09emitBatch\x00\x00\x00\x01")
