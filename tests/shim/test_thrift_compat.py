"""Forward compatibility and unusual-but-valid layouts: unknown fields of every type are
skipped, fields in any order and every valid encoding choice decode the same spans."""

from __future__ import annotations

import struct

import pytest
import thriftpy2
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.protocol.binary import TBinaryProtocol as Tp2Binary
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TCyMemoryBuffer
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting._varint import varint
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim.model import (
    BOOL,
    DOUBLE,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.thrift_decode import (
    BatchInfo,
    decode_batch_binary,
    decode_batch_compact,
    decode_emit_batch_binary,
    decode_emit_batch_binary_with_info,
    decode_emit_batch_compact,
    decode_emit_batch_compact_with_info,
)

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456


# Every test here runs against both compact decoders (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("compact_backend")


# A future jaeger.thrift: every struct gains fields of every Thrift type, some far away.
FUTURE_IDL = """
enum TagType { STRING = 0, DOUBLE = 1, BOOL = 2, LONG = 3, BINARY = 4 }
struct Inner {
  1: optional i32 a
  2: optional string b
  3: optional list<i64> c
  4: optional map<string, list<bool>> d
  5: optional set<double> e
}
struct Tag {
  1: required string key
  2: required TagType vType
  3: optional string vStr
  4: optional double vDouble
  5: optional bool vBool
  6: optional i64 vLong
  7: optional binary vBinary
  8: optional Inner extra
  9: optional list<Inner> extras
}
struct Log {
  1: required i64 timestamp
  2: required list<Tag> fields
  3: optional set<string> labels
}
struct SpanRef {
  1: required i32 refType
  2: required i64 traceIdLow
  3: required i64 traceIdHigh
  4: required i64 spanId
  5: optional binary note
}
struct Span {
  1: required i64 traceIdLow
  2: required i64 traceIdHigh
  3: required i64 spanId
  4: required i64 parentSpanId
  5: required string operationName
  6: optional list<SpanRef> references
  7: required i32 flags
  8: required i64 startTime
  9: required i64 duration
  10: optional list<Tag> tags
  11: optional list<Log> logs
  12: optional string note
  13: optional map<i32, Inner> m
  14: optional set<i16> s
  15: optional bool flag
  16: optional double d
  17: optional byte b
  18: optional list<list<string>> nested
  19: optional Inner inner
  1000: optional i64 far
}
struct Process {
  1: required string serviceName
  2: optional list<Tag> tags
  3: optional map<string, string> attrs
}
struct ClientStats {
  1: required i64 fullQueueDroppedSpans
  2: required i64 tooLargeDroppedSpans
  3: required i64 failedToEmitSpans
  4: optional i64 more
}
struct Batch {
  1: required Process process
  2: required list<Span> spans
  3: optional i64 seqNo
  4: optional ClientStats stats
  5: optional list<Inner> extra
  6: optional string note
}
service Agent {
  oneway void emitBatch(1: Batch batch, 2: string extra, 3: Inner more)
}
"""


@pytest.fixture(scope="module")
def future(tmp_path_factory):
    path = tmp_path_factory.mktemp("idl") / "jaeger_future.thrift"
    path.write_text(FUTURE_IDL)
    return thriftpy2.load(str(path), module_name="opentracing_sls_test_jaeger_future_thrift")


def inner(m, depth=0):
    return m.Inner(a=-5, b="inner", c=[1, -(1 << 63)], d={"k": [True, False, True]},
                   e={0.5, -1.0})


def future_batch(m):
    def tag(key, vtype, **kw):
        return m.Tag(key=key, vType=vtype, extra=inner(m), extras=[inner(m), m.Inner()], **kw)

    span = m.Span(
        traceIdLow=-1, traceIdHigh=5, spanId=-(1 << 63), parentSpanId=(1 << 63) - 1,
        operationName="future-op",
        references=[m.SpanRef(refType=1, traceIdLow=2, traceIdHigh=3, spanId=4, note=b"n")],
        flags=1, startTime=NOW_US, duration=77,
        tags=[tag("s", 0, vStr="v"), tag("d", 1, vDouble=1.25), tag("b", 2, vBool=True),
              tag("l", 3, vLong=-9), tag("x", 4, vBinary=b"\x00\x01")],
        logs=[m.Log(timestamp=NOW_US + 1, fields=[tag("event", 0, vStr="e")],
                    labels={"a", "b"})],
        note="new", m={1: inner(m), -2: m.Inner()}, s={1, 2, 3}, flag=True, d=2.5, b=-3,
        nested=[["a", "b"], [], ["c"]], inner=inner(m), far=1 << 40)
    plain = m.Span(traceIdLow=10, traceIdHigh=0, spanId=11, parentSpanId=0,
                   operationName="plain", flags=0, startTime=NOW_US, duration=1)
    return m.Batch(
        process=m.Process(serviceName="svc", tags=[tag("client-uuid", 0, vStr="u")],
                          attrs={"x": "y"}),
        spans=[span, plain], seqNo=8, stats=m.ClientStats(1, 2, 3, more=4),
        extra=[inner(m)], note="batch")


def future_expected():
    process = Process("svc", (Tag("client-uuid", STRING, "u"),))
    return [
        Span(5 << 64 | M64, 1 << 63, (1 << 63) - 1, "future-op", 1, NOW_US, 77,
             (Tag("s", STRING, "v"), Tag("d", DOUBLE, 1.25), Tag("b", BOOL, True),
              Tag("l", LONG, -9), Tag("x", 4, b"\x00\x01")),
             (Log(NOW_US + 1, (Tag("event", STRING, "e"),)),), (Reference(1, 3 << 64 | 2, 4),),
             process),
        Span(10, 11, 0, "plain", 0, NOW_US, 1, (), (), (), process),
    ]


@pytest.mark.parametrize("protocol", ["compact", "binary", "cybinary"])
def test_future_idl_fields_are_skipped(future, protocol):
    batch = future_batch(future)
    if protocol == "cybinary":
        buf = TCyMemoryBuffer()
        proto = TCyBinaryProtocol(buf)
    else:
        buf = TMemoryBuffer()
        proto = Tp2Compact(buf) if protocol == "compact" else Tp2Binary(buf)
    proto.write_message_begin("emitBatch", TMessageType.ONEWAY, 3)
    proto.write_struct(future.Agent.emitBatch_args(batch=batch, extra="x", more=inner(future)))
    proto.write_message_end()
    if protocol == "cybinary":
        proto.trans.flush()
    decode = (decode_emit_batch_compact_with_info if protocol == "compact"
              else decode_emit_batch_binary_with_info)
    for _ in range(2):
        spans, info = decode(buf.getvalue())
        assert spans == future_expected()
        assert info == BatchInfo(8, (1, 2, 3), "u")

    bare = TMemoryBuffer()
    (Tp2Compact(bare) if protocol == "compact" else Tp2Binary(bare)).write_struct(batch)
    decode_bare = decode_batch_compact if protocol == "compact" else decode_batch_binary
    assert decode_bare(bare.getvalue()) == future_expected()


# --- hand-written encodings ------------------------------------------------------------------


def zz(v: int) -> int:
    return (v << 1) ^ (v >> 63)


class C:
    """Compact writer with long-form field headers: any field id, in any order."""

    @staticmethod
    def field(fid, ctype, payload=b""):
        return bytes((ctype,)) + varint(zz(fid)) + payload

    @staticmethod
    def short(delta, ctype, payload=b""):
        return bytes((delta << 4 | ctype,)) + payload

    @staticmethod
    def int(v):
        return varint(zz(v))

    @staticmethod
    def str(b):
        return varint(len(b)) + b

    @staticmethod
    def list(etype, items, long_form=False):
        if len(items) < 15 and not long_form:
            return bytes((len(items) << 4 | etype,)) + b"".join(items)
        return bytes((0xF0 | etype,)) + varint(len(items)) + b"".join(items)

    @staticmethod
    def struct(*fields):
        return b"".join(fields) + b"\x00"


class B:
    """Binary writer."""

    @staticmethod
    def field(fid, ttype, payload=b""):
        return struct.pack(">bh", ttype, fid) + payload

    @staticmethod
    def i64(v):
        return struct.pack(">q", v)

    @staticmethod
    def i32(v):
        return struct.pack(">i", v)

    @staticmethod
    def str(b):
        return struct.pack(">i", len(b)) + b

    @staticmethod
    def list(etype, items):
        return struct.pack(">bi", etype, len(items)) + b"".join(items)

    @staticmethod
    def struct(*fields):
        return b"".join(fields) + b"\x00"


def c_tag(key, vtype, value_field):
    return C.struct(C.field(1, 8, C.str(key)), C.field(2, 5, C.int(vtype)), value_field)


def c_batch(*spans, process=None, spans_first=False):
    process = process or C.struct(C.field(1, 8, C.str(b"svc")))
    parts = [C.field(1, 12, process), C.field(2, 9, C.list(12, list(spans)))]
    return C.struct(*(parts[::-1] if spans_first else parts))


def c_message(batch, head=b"\x82\x81\x01\x09emitBatch"):
    return head + C.field(1, 12, batch) + b"\x00"


REVERSED_SPAN_EXPECTED = Span(
    2 << 64 | 1, 3, M64, "rev", 1, NOW_US, 9, (Tag("k", STRING, "v"), Tag("n", LONG, -1)),
    (Log(5, (Tag("e", BOOL, False),)),), (Reference(1, 7, 8),), Process("svc", ()))


def c_reversed_span():
    """Every Span field in reverse id order, long-form headers, long list headers."""
    tags = C.list(12, [c_tag(b"k", 0, C.field(3, 8, C.str(b"v"))),
                       c_tag(b"n", 3, C.field(6, 6, C.int(-1)))], long_form=True)
    log = C.struct(C.field(2, 9, C.list(12, [c_tag(b"e", 2, C.field(5, 2))])),
                   C.field(1, 6, C.int(5)))
    ref = C.struct(C.field(4, 6, C.int(8)), C.field(3, 6, C.int(0)), C.field(2, 6, C.int(7)),
                   C.field(1, 5, C.int(1)))
    return C.struct(
        C.field(11, 9, C.list(12, [log])), C.field(10, 9, tags), C.field(9, 6, C.int(9)),
        C.field(8, 6, C.int(NOW_US)), C.field(7, 5, C.int(1)), C.field(6, 9, C.list(12, [ref])),
        C.field(5, 8, C.str(b"rev")), C.field(4, 6, C.int(-1)), C.field(3, 6, C.int(3)),
        C.field(2, 6, C.int(2)), C.field(1, 6, C.int(1)))


def test_compact_any_field_order():
    data = c_message(c_batch(c_reversed_span(), c_reversed_span()))
    assert decode_emit_batch_compact(data) == [REVERSED_SPAN_EXPECTED] * 2


def test_compact_process_after_spans():
    process = C.struct(C.field(2, 9, C.list(12, [])), C.field(1, 8, C.str(b"late")))
    [span] = decode_batch_compact(c_batch(c_reversed_span(), process=process,
                                          spans_first=True))
    assert span == REVERSED_SPAN_EXPECTED._replace(process=Process("late", ()))


def our_span(protocol, **fields):
    record = SpanRecord(1, 2, 0, "op", 1, NOW_US, 3, {"k": "v"}, [], [])._replace(**fields)
    return get_encoder(protocol).encode_span(record)


def test_compact_unknown_fields_appended_by_hand():
    unknown = [
        C.field(300, 8, C.str(b"text")),  # far id, string
        C.field(-4, 6, C.int(-99)),  # negative id
        C.field(12, 1),  # bool true (no payload)
        C.field(13, 7, b"\x00" * 8),  # double
        C.field(14, 3, b"\x05"),  # byte
        C.field(15, 11, varint(2) + b"\x88" + C.str(b"a") + C.str(b"b") + C.str(b"c")
                + C.str(b"d")),  # map<string,string>
        C.field(16, 11, varint(0)),  # empty map: no type byte
        C.field(17, 10, C.list(1, [b"\x01", b"\x02"])),  # set<bool>: one byte each
        C.field(18, 9, C.list(9, [C.list(5, [C.int(1)]), C.list(5, [])])),  # list<list<i32>>
        C.field(19, 12, C.struct(C.field(1, 12, C.struct(C.field(2, 8, C.str(b"deep")))))),
        C.field(20, 13, b"\x11" * 16),  # UUID (Thrift 0.19+)
    ]
    span = our_span("compact")[:-1] + b"".join(unknown) + b"\x00"
    [decoded] = decode_batch_compact(c_batch(span))
    assert decoded == Span(1, 2, 0, "op", 1, NOW_US, 3, (Tag("k", STRING, "v"),), (), (),
                           Process("svc", ()))


def test_compact_duplicates_non_minimal_varints_and_odd_tags():
    # a 10-byte varint of 5 (zigzag 10) with a zero last byte: valid, non-minimal
    long_five = bytes((0x8A,) + (0x80,) * 8 + (0x00,))
    span = C.struct(
        C.short(1, 6, long_five), C.short(1, 6, C.int(0)), C.short(1, 6, C.int(6)),
        C.short(1, 6, C.int(0)), C.short(1, 8, C.str(b"first")),
        C.field(5, 8, C.str(b"second\xff")),  # duplicate: the last one wins; bad UTF-8
        C.field(7, 5, C.int(-1)), C.field(8, 6, C.int(1)), C.field(9, 6, C.int(2)),
        C.field(10, 9, C.list(12, [
            c_tag(b"unknown-type", 9, C.field(3, 8, C.str(b"x"))),
            c_tag(b"no-value", 3, b""),
            c_tag(b"mismatch", 0, C.field(6, 6, C.int(4))),  # vType STRING, vLong set
            c_tag(b"k\xc3", 0, C.field(3, 8, C.str(b"\xe2\x82"))),
            c_tag(b"wrong-field-type", 3, C.field(6, 8, C.str(b"skip me"))),
        ])))
    [decoded] = decode_emit_batch_compact(c_message(c_batch(span)))
    assert decoded.trace_id == 5 and decoded.span_id == 6
    assert decoded.operation_name == "second\ufffd" and decoded.flags == -1
    assert decoded.tags == (
        Tag("unknown-type", STRING, "unknown vType 9"), Tag("no-value", LONG, 0),
        Tag("mismatch", STRING, ""), Tag("k\ufffd", STRING, "\ufffd"),
        Tag("wrong-field-type", LONG, 0))


def test_compact_call_message_and_any_seqid():
    batch = c_batch(c_reversed_span())
    for head in (b"\x82\x21\x00\x09emitBatch", b"\x82\x81\xff\xff\xff\xff\x0f\x09emitBatch"):
        assert decode_emit_batch_compact(c_message(batch, head)) == [REVERSED_SPAN_EXPECTED]


def b_tag(key, vtype, value_field):
    return B.struct(B.field(1, 11, B.str(key)), B.field(2, 8, B.i32(vtype)), value_field)


def b_batch(*spans):
    return B.struct(B.field(1, 12, B.struct(B.field(1, 11, B.str(b"svc")))),
                    B.field(2, 15, B.list(12, list(spans))))


def test_binary_any_field_order_and_unknown_fields():
    tags = B.list(12, [b_tag(b"k", 0, B.field(3, 11, B.str(b"v"))),
                       b_tag(b"n", 3, B.field(6, 10, B.i64(-1))),
                       b_tag(b"t", 2, B.field(5, 2, b"\x02"))])  # any non-zero byte is true
    span = B.struct(
        B.field(99, 13, struct.pack(">bbi", 11, 15, 1) + B.str(b"k") + B.list(2, [b"\x01"])),
        B.field(11, 15, B.list(12, [B.struct(B.field(2, 15, B.list(12, [])),
                                             B.field(1, 10, B.i64(5)))])),
        B.field(10, 15, tags), B.field(9, 10, B.i64(9)), B.field(8, 10, B.i64(NOW_US)),
        B.field(7, 8, B.i32(1)), B.field(5, 11, B.str(b"rev")), B.field(4, 10, B.i64(-1)),
        B.field(-7, 16, b"\x00" * 16), B.field(3, 10, B.i64(3)), B.field(2, 10, B.i64(2)),
        B.field(1, 10, B.i64(1)), B.field(50, 14, B.list(4, [b"\x00" * 8] * 3)))
    expected = Span(2 << 64 | 1, 3, M64, "rev", 1, NOW_US, 9,
                    (Tag("k", STRING, "v"), Tag("n", LONG, -1), Tag("t", BOOL, True)),
                    (Log(5, ()),), (), Process("svc", ()))
    assert decode_batch_binary(b_batch(span, span)) == [expected, expected]
    # appended to our encoder's span: the fast path falls back for just that span
    ours = our_span("binary")
    [decoded, plain] = decode_batch_binary(b_batch(ours[:-1] + B.field(12, 11, B.str(b"x"))
                                                   + b"\x00", ours))
    assert decoded == plain


def test_binary_non_strict_and_call_headers():
    batch = b_batch(our_span("binary"))
    args = B.field(1, 12, batch) + b"\x00"
    strict_call = b"\x80\x01\x00\x01" + B.str(b"emitBatch") + B.i32(7) + args
    non_strict = B.str(b"emitBatch") + b"\x04" + B.i32(7) + args
    expected = decode_batch_binary(batch)
    assert decode_emit_batch_binary(strict_call) == expected
    assert decode_emit_batch_binary(non_strict) == expected
