"""Span encoders: every field of a ``SpanRecord`` must survive a round trip through our
bytes and two independent decoders: jaeger-client's own generated classes on the Apache
``thrift`` runtime, and thriftpy2 with our IDL."""

from __future__ import annotations

import enum
import math
import random
import time

import pytest
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.transport import TTransport
from thriftpy2.protocol.binary import TBinaryProtocol as Tp2Binary
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM, SpanRecord
from opentracing_sls.reporting import _wire, compact
from opentracing_sls.reporting.encoding import PROTOCOLS, get_encoder
from opentracing_sls.reporting.idl import jaeger

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456
STRING, DOUBLE, BOOL, LONG, BINARY = 0, 1, 2, 3, 4


def signed(u: int) -> int:
    u &= M64
    return u - (1 << 64) if u >> 63 else u


def make_record(**overrides) -> SpanRecord:
    fields = dict(
        trace_id=0x1234_5678_9ABC_DEF0,
        span_id=0xFEDC_BA98_7654_3210,
        parent_id=0x0BAD_CAFE_0000_0001,
        operation_name="GET /api/user",
        flags=1,
        start_time=NOW_US,
        duration=1234,
        tags={"http.url": "http://x/y", "http.status_code": 200, "error": False},
        logs=[(NOW_US + 5, {"event": "x", "value": 42})],
        references=[],
    )
    fields.update(overrides)
    return SpanRecord(**fields)


def apache_decode(data: bytes, protocol: str) -> ttypes.Span:
    buf = TTransport.TMemoryBuffer(data)
    proto = (TCompactProtocol.TCompactProtocol(buf) if protocol == "compact"
             else TBinaryProtocol.TBinaryProtocol(buf))
    span = ttypes.Span()
    span.read(proto)
    assert buf._buffer.tell() == len(data), "trailing bytes after the Span struct"
    return span


def idl_decode(data: bytes, protocol: str):
    buf = TMemoryBuffer(data)
    proto = Tp2Compact(buf) if protocol == "compact" else Tp2Binary(buf)
    span = jaeger.Span()
    proto.read_struct(span)
    assert buf.read(1) == b"", "trailing bytes after the Span struct"
    return span


def tag_value(tag):
    return {STRING: tag.vStr, DOUBLE: tag.vDouble, BOOL: tag.vBool, LONG: tag.vLong,
            BINARY: tag.vBinary}[tag.vType]


def decoded_tags(tags):
    if tags is None:
        return None
    out = []
    for tag in tags:
        set_fields = [f for f in ("vStr", "vDouble", "vBool", "vLong", "vBinary")
                      if getattr(tag, f) is not None]
        assert len(set_fields) == 1, f"exactly one value field per tag: {tag}"
        out.append((tag.key, tag.vType, tag_value(tag)))
    return out


def expected_tag(key, value, apache: bool):
    """Our typing rules, stated independently of the encoder."""
    if isinstance(value, bool):
        return (key, BOOL, value)
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return (key, LONG, int(value))
        return (key, STRING, str(value))
    if isinstance(value, float):
        return (key, DOUBLE, value)
    if isinstance(value, (bytes, bytearray)):
        # Apache's generated Tag.read decodes vBinary as a UTF-8 str (IDL "string" there)
        return (key, BINARY, bytes(value).decode("utf-8") if apache else bytes(value))
    return (key, STRING, str(value))


def expected_tags(mapping, apache):
    if not mapping:
        return None
    return [expected_tag(str(k), v, apache) for k, v in mapping.items()]


def assert_tags_equal(got, want):
    assert (got is None) == (want is None), (got, want)
    if got is None:
        return
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w[1] == DOUBLE and math.isnan(w[2]):
            assert g[:2] == w[:2] and math.isnan(g[2])
        else:
            assert g == w
            assert type(g[2]) is type(w[2])


def assert_span_matches(span, record: SpanRecord, apache: bool) -> None:
    assert span.traceIdLow == signed(record.trace_id)
    assert span.traceIdHigh == signed(record.trace_id >> 64)
    assert span.spanId == signed(record.span_id)
    assert span.parentSpanId == signed(record.parent_id)
    assert span.operationName == record.operation_name
    assert span.flags == record.flags
    assert span.startTime == record.start_time
    assert span.duration == record.duration
    if record.references:
        refs = [(r.refType, r.traceIdLow, r.traceIdHigh, r.spanId) for r in span.references]
        assert refs == [(t, signed(tid), signed(tid >> 64), signed(sid))
                        for t, tid, sid in record.references]
    else:
        assert span.references is None
    assert_tags_equal(decoded_tags(span.tags), expected_tags(record.tags, apache))
    if record.logs:
        assert len(span.logs) == len(record.logs)
        for log, (ts, fields) in zip(span.logs, record.logs):
            assert log.timestamp == ts
            assert_tags_equal(decoded_tags(log.fields) or None, expected_tags(fields, apache))
    else:
        assert span.logs is None


def roundtrip(record: SpanRecord, protocol: str, apache: bool = True) -> bytes:
    data = get_encoder(protocol).encode_span(record)
    assert isinstance(data, bytes)
    if apache:
        assert_span_matches(apache_decode(data, protocol), record, apache=True)
    assert_span_matches(idl_decode(data, protocol), record, apache=False)
    return data


@pytest.fixture(params=PROTOCOLS)
def protocol(request) -> str:
    return request.param


def test_get_encoder():
    assert PROTOCOLS == ("compact", "binary")
    for name in PROTOCOLS:
        encoder = get_encoder(name)
        assert encoder.protocol == name
        for method in ("encode_process", "encode_span", "emit_batch_overhead",
                       "encode_emit_batch", "encode_batch"):
            assert callable(getattr(encoder, method))
    for bad in ("json", "COMPACT", "", None):
        with pytest.raises(ValueError, match="compact, binary"):
            get_encoder(bad)


def test_typical_span(protocol):
    roundtrip(make_record(), protocol)


def test_root_span_writes_parent_zero(protocol):
    record = make_record(parent_id=0, logs=[], tags={})
    for span in (apache_decode(roundtrip(record, protocol), protocol),):
        assert span.parentSpanId == 0  # present, not None
        assert span.tags is None and span.logs is None and span.references is None


BOUNDARY_IDS = [
    0, 1, 2, 0x7F, 0x80, 0x1FFF, 0x2000, 0x3FFF, 0x4000, (1 << 55) - 1, 1 << 55,
    (1 << 56) - 1, 1 << 56, (1 << 62) + 12345, (1 << 63) - 1, 1 << 63, (1 << 63) + 1,
    (1 << 64) - (1 << 55) - 1, (1 << 64) - (1 << 55), (1 << 64) - (1 << 56), M64 - 1, M64,
]


@pytest.mark.parametrize("value", BOUNDARY_IDS)
def test_boundary_ids(protocol, value):
    """Every id fast path and fallback, including ids >= 2^63 (negative on the wire)."""
    record = make_record(trace_id=value, span_id=value, parent_id=value)
    span = apache_decode(roundtrip(record, protocol), protocol)
    assert span.spanId == signed(value)
    if value >= 1 << 63:
        assert span.spanId < 0 and span.traceIdLow < 0 and span.parentSpanId < 0


def test_random_ids(protocol):
    rnd = random.Random(1234)
    for _ in range(300):
        bits = rnd.choice((64, 63, 56, 55, 54, 20, 128, 127, 65))
        record = make_record(trace_id=rnd.getrandbits(bits), span_id=rnd.getrandbits(64),
                             parent_id=rnd.getrandbits(rnd.choice((64, 56, 8, 0))))
        roundtrip(record, protocol)


@pytest.mark.parametrize("high", [1, 0x7FFF_FFFF_FFFF_FFFF, 1 << 63, M64, 0xDEADBEEF])
def test_128_bit_trace_ids(protocol, high):
    low = 0x8000_0000_0000_0001
    record = make_record(trace_id=(high << 64) | low)
    span = idl_decode(roundtrip(record, protocol), protocol)
    assert span.traceIdHigh == signed(high)
    assert span.traceIdLow == signed(low) < 0


def test_references_both_types(protocol):
    refs = [(CHILD_OF, (5 << 64) | (1 << 63), M64), (FOLLOWS_FROM, 7, 0x1234),
            (FOLLOWS_FROM, (M64 << 64) | 3, 1 << 63)]
    span = apache_decode(roundtrip(make_record(references=refs), protocol), protocol)
    assert [r.refType for r in span.references] == [0, 1, 1]
    assert span.references[2].traceIdHigh == -1


def test_references_without_tags_or_logs(protocol):
    roundtrip(make_record(references=[(CHILD_OF, 1, 2)], tags={}, logs=[]), protocol)


def test_many_references_long_list_header(protocol):
    refs = [(i % 2, (i << 64) | (M64 - i), i * 7919) for i in range(40)]
    roundtrip(make_record(references=refs), protocol)


class Color(enum.IntEnum):
    RED = 7


class Label(str):
    pass


class Unprintable:
    def __str__(self):
        raise RuntimeError("boom")


TAG_VALUES = {
    "str": "hello",
    "empty": "",
    "unicode": "héllo wörld ✓ 日本語 🚀",
    "true": True,
    "false": False,
    "zero": 0,
    "small": 42,
    "edge_small": 1023,
    "edge_small2": 1024,
    "negative": -5,
    "big": 123456789012345,
    "i64_max": (1 << 63) - 1,
    "i64_min": -(1 << 63),
    "too_big": 1 << 63,  # does not fit an i64: STRING
    "too_small": -(1 << 63) - 1,
    "float": 3.25,
    "neg_float": -1e-300,
    "inf": float("inf"),
    "nan": float("nan"),
    "bytes": b"\x00\xffraw",
    "bytearray": bytearray(b"abc"),
    "none": None,
    "list": [1, "a"],
    "intenum": Color.RED,  # an int subclass: LONG
    "strsub": Label("lbl"),
    "long_str": "x" * 20000,  # length varint of 3 bytes
}


def test_tags_of_every_type(protocol):
    record = make_record(tags=dict(TAG_VALUES), logs=[(NOW_US, dict(TAG_VALUES))])
    # Apache's generated code decodes vBinary as UTF-8, so it only sees UTF-8 payloads
    roundtrip(record, protocol, apache=False)
    apache_safe = {k: v for k, v in TAG_VALUES.items() if k != "bytes"}
    roundtrip(make_record(tags=apache_safe, logs=[(NOW_US, apache_safe)]), protocol)
    span = idl_decode(get_encoder(protocol).encode_span(record), protocol)
    by_key = {t.key: t for t in span.tags}
    assert by_key["bytes"].vType == BINARY and by_key["bytes"].vBinary == b"\x00\xffraw"
    assert by_key["true"].vType == BOOL and by_key["true"].vBool is True
    assert by_key["too_big"].vType == STRING and by_key["too_big"].vStr == str(1 << 63)
    assert by_key["none"].vStr == "None"
    assert by_key["intenum"].vType == LONG and by_key["intenum"].vLong == 7


def test_unprintable_value_does_not_raise(protocol):
    span = idl_decode(get_encoder(protocol).encode_span(
        make_record(tags={"obj": Unprintable()})), protocol)
    assert span.tags[0].vType == STRING and "unprintable" in span.tags[0].vStr


def test_non_string_keys(protocol):
    encoder = get_encoder(protocol)
    record = make_record(tags={1: "one", 2.5: 1, "1": "string one", None: False})
    span = idl_decode(encoder.encode_span(record), protocol)
    assert [(t.key, tag_value(t)) for t in span.tags] == [
        ("1", "one"), ("2.5", 1), ("1", "string one"), ("None", False)]
    # True == 1 == 1.0 as dict keys: a cache keyed by them would mix up their spellings
    for key in (True, 1.0, 1):
        span = idl_decode(encoder.encode_span(make_record(tags={key: 0})), protocol)
        assert span.tags[0].key == str(key)


def test_non_ascii_strings(protocol):
    record = make_record(operation_name="получить /юзер ✓", tags={"ключ": "значение"},
                         logs=[(NOW_US, {"événement": "ça"})])
    roundtrip(record, protocol)


def test_lone_surrogates_are_replaced(protocol):
    record = make_record(operation_name="op\udc80", tags={"k\ud800": "v\udcff", "ok": 1},
                         logs=[(NOW_US, {"event": "bad\udc00"})])
    span = apache_decode(get_encoder(protocol).encode_span(record), protocol)
    assert span.operationName == "op?"
    assert [(t.key, tag_value(t)) for t in span.tags] == [("k?", "v?"), ("ok", 1)]
    assert span.logs[0].fields[0].vStr == "bad?"


@pytest.mark.parametrize("flags", [0, 1, 2, 3, 255, 256, (1 << 31) - 1, -1])
def test_flags(protocol, flags):
    roundtrip(make_record(flags=flags), protocol)
    roundtrip(make_record(flags=flags, references=[(CHILD_OF, 1, 2)]), protocol)


TIMES = [0, 1, -1, 0x3F, 0x40, 0x3FF, 0x400, 0x1FFF, 0x2000, 0xFFFFFF, 0x1000000, 0x7FFFFFF,
         0x8000000, (1 << 41) - 1, 1 << 41, NOW_US, (1 << 52) - 1, 1 << 52, (1 << 53) - 1,
         1 << 53, (1 << 62), (1 << 63) - 1, -(1 << 63)]


@pytest.mark.parametrize("value", TIMES)
def test_times(protocol, value):
    record = make_record(start_time=value, duration=value,
                         logs=[(value, {"event": "x"}), (NOW_US, {})])
    roundtrip(record, protocol)


def test_logs_shapes(protocol):
    logs = [(NOW_US + i, {f"f{j}": j for j in range(i)}) for i in range(20)]  # 0..19 fields
    roundtrip(make_record(logs=logs), protocol)
    roundtrip(make_record(logs=logs, tags={}), protocol)  # logs field right after duration
    roundtrip(make_record(logs=[(NOW_US, {})]), protocol)  # a log with no fields


def test_many_tags_long_list_header(protocol):
    tags = {f"tag.{i}": (i if i % 3 else f"v{i}") for i in range(300)}
    roundtrip(make_record(tags=tags), protocol)


def test_huge_span(protocol):
    record = make_record(
        tags={**{f"k{i}": "v" * 100 for i in range(1000)}, "blob": "é" * 100_000},
        logs=[(NOW_US + i, {"event": "e" * 50, "i": i, "f": i / 3}) for i in range(500)],
        references=[(CHILD_OF, i, i) for i in range(20)],
    )
    data = roundtrip(record, protocol)
    assert len(data) > 300_000


def test_compact_typical_span_size():
    """A typical child span is about 150 bytes in compact: ids are varints."""
    data = get_encoder("compact").encode_span(make_record(span_id=M64, parent_id=1 << 62))
    assert 100 < len(data) < 170


def test_caches_stay_bounded(protocol):
    encoder = get_encoder(protocol)
    module = compact if protocol == "compact" else __import__(
        "opentracing_sls.reporting.binary", fromlist=["_KEYS"])
    for i in range(_wire.CACHE_LIMIT + 50):
        record = make_record(operation_name=f"op-{i}", tags={f"key-{i}": i}, logs=[])
        if i % 997 == 0:
            roundtrip(record, protocol)
        else:
            encoder.encode_span(record)
    assert len(module._KEYS) <= _wire.CACHE_LIMIT
    assert len(module._OPS) <= _wire.CACHE_LIMIT
    roundtrip(make_record(), protocol)


def test_records_with_real_time_and_random_ids(protocol):
    rnd = random.Random(99)
    now = int(time.time() * 1e6)
    for i in range(200):
        record = make_record(trace_id=rnd.getrandbits(128), span_id=rnd.getrandbits(64),
                             parent_id=rnd.getrandbits(64), start_time=now + i,
                             duration=rnd.randrange(1 << 30), flags=rnd.choice((1, 3)))
        roundtrip(record, protocol)
