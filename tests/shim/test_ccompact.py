"""The C compact decoder (``opentracing_sls.shim._ccompact``) against the pure-Python one.

Differential: batches written by our encoder, by thriftpy2 (with a newer IDL's extra fields
and invalid UTF-8), by jaeger-client's Apache Thrift code and by a random hand-made writer
(any field order, duplicates, unknown fields of every type, long-form headers, non-minimal
varints, odd tags, missing fields, deep nesting) give equal results through both decoders;
truncated, bit-flipped, spliced and random versions of them either decode equally or raise
DecodeError in both. Then memory: no leak over 100 000 decodes of valid or malformed input,
and bounded caches. (The existing decode tests run against both backends too.)
"""

from __future__ import annotations

import gc
import math
import os
import random
import struct
import subprocess
import sys
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest
import thriftpy2
from jaeger_client.thrift_gen.agent import Agent as JcAgent
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TCompactProtocol
from thrift.Thrift import TMessageType as ApacheMessageType
from thrift.transport import TTransport
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.thrift import TMessageType
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim import thrift_compact, thrift_decode
from opentracing_sls.shim.model import DecodeError, Process, Span, Tag

ccompact = pytest.importorskip("opentracing_sls.shim._ccompact",
                               reason="C compact decoder not built (no compiler?)")

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456
PY = thrift_compact.decode
C = ccompact.decode
Case = Tuple[bytes, bool]  # (data, message framing?)


def outcome(decode: Callable[[Any, bool], Any], data: Any, message: bool) -> Any:
    """``"error"``, or a comparable picture of the result: its repr (class names, bool vs
    int, bytes vs str, -0.0; NaN compares equal this way) and which spans share the
    returned Process object."""
    try:
        spans, process, seq_no, stats = decode(data, message)
    except DecodeError as exc:
        assert str(exc)  # a short reason
        return "error"
    assert type(spans) is list and type(process) is Process
    assert all(type(s) is Span and type(s.process) is Process for s in spans)
    assert all(type(t) is Tag for s in spans for t in s.tags)
    return repr((spans, process, seq_no, stats)), [s.process is process for s in spans]


def assert_same(data: Any, message: bool) -> Any:
    expected = outcome(PY, data, message)
    got = outcome(C, data, message)
    if got != expected:  # pragma: no cover - the failure message
        pytest.fail("C and Python disagree on %r (message=%s):\n  python: %.2000s\n  c:      "
                    "%.2000s" % (bytes(data), message, expected, got))
    return expected


# --- random content ------------------------------------------------------------------------

KEYS = ["span.kind", "http.method", "http.status_code", "error", "component", "peer.service",
        "k", "ü-key", "sampler.type", "x" * 127, "y" * 128]
WORDS = ["", "server", "client", "GET", "POST", "ok", "héllo ✓", "😀", "a" * 64, "b" * 65]
INTS = [0, 1, -1, 200, 404, 500, 63, 64, -64, -65, (1 << 63) - 1, -(1 << 63), 1 << 40]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan]


def rand_text(rnd: random.Random) -> str:
    kind = rnd.randrange(5)
    if kind == 0:
        return rnd.choice(WORDS)
    if kind == 1:
        return "".join(chr(rnd.choice((0x41, 0x7A, 0xE9, 0x4E2D, 0x1F600, 0x7F, 0x80)))
                       for _ in range(rnd.randrange(0, 30)))
    if kind == 2:
        return "u" * rnd.choice((14, 15, 16, 63, 64, 65, 127, 128, 129, 300))
    return "w%d" % rnd.randrange(40)


def rand_value(rnd: random.Random) -> Any:
    kind = rnd.randrange(7)
    if kind == 0:
        return rand_text(rnd)
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.choice(INTS)
    if kind == 3:
        return signed(rnd.getrandbits(64))
    if kind == 4:
        return rnd.choice(FLOATS + [rnd.uniform(-1e6, 1e6)])
    if kind == 5:
        return rnd.randbytes(rnd.choice((0, 1, 5, 70)))
    return rnd.choice(WORDS)


ID64 = (64, 64, 1, 7, 56, 63)


def rand_id(rnd: random.Random, bits: Tuple[int, ...] = ID64 + (128,)) -> int:
    return rnd.getrandbits(rnd.choice(bits))


def rand_fields(rnd: random.Random, most: int) -> dict:
    n = rnd.choice((0, 1, 3, most, rnd.randrange(most + 1)))
    return {rnd.choice(KEYS) if rnd.random() < 0.6 else rand_text(rnd): rand_value(rnd)
            for _ in range(n)}


def rand_record(rnd: random.Random) -> SpanRecord:
    trace_id = rand_id(rnd)
    return SpanRecord(
        trace_id, rand_id(rnd), rnd.choice((0, rand_id(rnd))),
        rnd.choice(("GET /api", "op", "", "ö" * 20, rand_text(rnd))),
        rnd.choice((0, 1, 2, 3, (1 << 31) - 1)),
        rnd.choice((NOW_US + rnd.getrandbits(30), 0, -1, (1 << 63) - 1, -(1 << 63))),
        rnd.choice((rnd.getrandbits(20), 0, rnd.getrandbits(40))),
        rand_fields(rnd, 20),
        rnd.choice(([], [], [(rnd.choice((NOW_US, 0, -5)), rand_fields(rnd, 16))],
                    [(NOW_US + i, rand_fields(rnd, 2)) for i in range(rnd.choice((2, 15, 16)))])),
        [(rnd.randrange(2), rnd.choice((trace_id, rand_id(rnd))), rand_id(rnd))
         for _ in range(rnd.choice((0, 0, 1, 3, 15)))])


def ours(rnd: random.Random) -> Iterator[Case]:
    """Our tracer's encoder (the C one when built: opentracing_sls.reporting.compact)."""
    encoder = get_encoder("compact")
    process = encoder.encode_process(rnd.choice(("svc", "sérvice", "")),
                                     rand_fields(rnd, 8))
    spans = [encoder.encode_span(rand_record(rnd))
             for _ in range(rnd.choice((0, 1, 2, 5, 14, 15, 16, 20)))]
    stats = (rnd.getrandbits(63), 0, rnd.randrange(10))
    seq = rnd.getrandbits(63) - (1 << 62)
    yield encoder.encode_emit_batch(process, spans, seq, stats), True
    yield encoder.encode_batch(process, spans, seq, stats), False


# --- thriftpy2, with a newer IDL: extra fields in every struct --------------------------------

FUTURE_IDL = """
struct Inner { 1: optional i32 a  2: optional string b  3: optional list<i64> c
               4: optional map<string, list<bool>> d  5: optional set<double> e
               6: optional byte f }
struct Tag { 1: required string key  2: required i32 vType  3: optional string vStr
             4: optional double vDouble  5: optional bool vBool  6: optional i64 vLong
             7: optional binary vBinary  8: optional Inner extra  20: optional list<Inner> more }
struct Log { 1: required i64 timestamp  2: required list<Tag> fields  3: optional set<string> s }
struct SpanRef { 1: required i32 refType  2: required i64 traceIdLow  3: required i64 traceIdHigh
                 4: required i64 spanId  5: optional binary note }
struct Span { 1: required i64 traceIdLow  2: required i64 traceIdHigh  3: required i64 spanId
              4: required i64 parentSpanId  5: required string operationName
              6: optional list<SpanRef> references  7: required i32 flags
              8: required i64 startTime  9: required i64 duration  10: optional list<Tag> tags
              11: optional list<Log> logs  12: optional string note  13: optional map<i32, Inner> m
              14: optional bool flag  15: optional double d  1000: optional i64 far }
struct Process { 1: required string serviceName  2: optional list<Tag> tags
                 3: optional map<string, string> attrs }
struct ClientStats { 1: required i64 fullQueueDroppedSpans  2: required i64 tooLargeDroppedSpans
                     3: required i64 failedToEmitSpans  4: optional i64 more }
struct Batch { 1: required Process process  2: required list<Span> spans  3: optional i64 seqNo
               4: optional ClientStats stats  5: optional list<Inner> extra }
service Agent { oneway void emitBatch(1: Batch batch, 2: string extra) }
"""


@pytest.fixture(scope="module")
def future(tmp_path_factory):
    path = tmp_path_factory.mktemp("idl") / "ccompact_future.thrift"
    path.write_text(FUTURE_IDL)
    return thriftpy2.load(str(path), module_name="opentracing_sls_test_ccompact_future_thrift")


def tp2_text(rnd: random.Random) -> Any:
    """A str, or raw bytes that may be invalid UTF-8 (thriftpy2 writes bytes as they are)."""
    if rnd.random() < 0.2:
        return rnd.choice((b"\xff", b"ok\xc3", b"\xe2\x82\xac", b"\xed\xa0\x80", b"a\x00b"))
    return rand_text(rnd)


def tp2_inner(m: Any, rnd: random.Random) -> Any:
    if rnd.random() < 0.5:
        return None
    return m.Inner(a=rnd.randrange(-9, 9), b=tp2_text(rnd), c=[signed(rand_id(rnd, ID64))] * 3,
                   d={"k": [True, False]}, e={0.5}, f=rnd.randrange(-128, 128))


def tp2_tag(m: Any, rnd: random.Random) -> Any:
    vtype = rnd.choice((0, 1, 2, 3, 4) * 4 + (5, -1, 1 << 20))
    kw = {}
    if rnd.random() < 0.9:  # the selected value, sometimes others too, sometimes none
        for t in ((vtype,) if rnd.random() < 0.8 else range(5)):
            if t == 0:
                kw["vStr"] = tp2_text(rnd)
            elif t == 1:
                kw["vDouble"] = rnd.choice(FLOATS)
            elif t == 2:
                kw["vBool"] = rnd.random() < 0.5
            elif t == 3:
                kw["vLong"] = rnd.choice(INTS)
            elif t == 4:
                kw["vBinary"] = rnd.randbytes(rnd.randrange(4))
    return m.Tag(key=tp2_text(rnd) if rnd.random() < 0.3 else rnd.choice(KEYS), vType=vtype,
                 extra=tp2_inner(m, rnd), more=[m.Inner()] if rnd.random() < 0.1 else None,
                 **kw)


def signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def tp2_batch(m: Any, rnd: random.Random) -> Any:
    def tags(most: int) -> Optional[list]:
        return rnd.choice((None, [], [tp2_tag(m, rnd) for _ in range(rnd.randrange(most))]))

    spans = [m.Span(
        traceIdLow=signed(rand_id(rnd, (64, 1))), traceIdHigh=signed(rand_id(rnd, (64, 0))),
        spanId=signed(rand_id(rnd, ID64)), parentSpanId=signed(rand_id(rnd, ID64)),
        operationName=tp2_text(rnd),
        references=rnd.choice((None, [], [m.SpanRef(refType=rnd.randrange(3), traceIdLow=-1,
                                                     traceIdHigh=5, spanId=7,
                                                     note=rnd.choice((None, b"n")))] * 16)),
        flags=rnd.choice((0, 1, -1, 1 << 30)), startTime=NOW_US, duration=rnd.getrandbits(20),
        tags=tags(18),
        logs=rnd.choice((None, [], [m.Log(timestamp=NOW_US, fields=tags(4) or [],
                                          s=rnd.choice((None, {"a"})))] * 2)),
        note=rnd.choice((None, "n")), m=rnd.choice((None, {1: m.Inner(a=1)})),
        flag=rnd.choice((None, True, False)), d=rnd.choice((None, 1.5)),
        far=rnd.choice((None, 1 << 40)))
        for _ in range(rnd.choice((0, 1, 3, 16)))]
    return m.Batch(process=m.Process(serviceName=tp2_text(rnd), tags=tags(5),
                                     attrs=rnd.choice((None, {"x": "y"}))),
                   spans=spans, seqNo=rnd.choice((None, 5, -(1 << 63))),
                   stats=rnd.choice((None, m.ClientStats(1, 2, 3, more=rnd.choice((None, 4))))),
                   extra=rnd.choice((None, [m.Inner(b="x")])))


def thriftpy2_cases(m: Any, rnd: random.Random) -> Iterator[Case]:
    batch = tp2_batch(m, rnd)
    buf = TMemoryBuffer()
    proto = Tp2Compact(buf)
    proto.write_message_begin("emitBatch", rnd.choice((TMessageType.ONEWAY, TMessageType.CALL)),
                              rnd.getrandbits(31))
    proto.write_struct(m.Agent.emitBatch_args(batch=batch, extra=rnd.choice((None, "x"))))
    proto.write_message_end()
    yield buf.getvalue(), True
    bare = TMemoryBuffer()
    Tp2Compact(bare).write_struct(batch)
    yield bare.getvalue(), False


# --- jaeger-client (Apache Thrift 0.9.3-generated classes, pure Python and C protocols) ---------


def jc_tag(rnd: random.Random) -> Any:
    vtype = rnd.randrange(5)
    value = rand_value(rnd)
    kw = [{"vStr": rand_text(rnd)}, {"vDouble": rnd.choice(FLOATS)},
          {"vBool": bool(value)}, {"vLong": rnd.choice(INTS)},
          {"vBinary": rnd.choice(("", "ab", "\x00\x7f"))}][vtype]
    return ttypes.Tag(key=rnd.choice(KEYS), vType=vtype, **kw)


def jaeger_client_cases(rnd: random.Random) -> Iterator[Case]:
    spans = [ttypes.Span(
        traceIdLow=signed(rand_id(rnd, ID64)), traceIdHigh=signed(rand_id(rnd, (64, 0))),
        spanId=signed(rand_id(rnd, ID64)),
        parentSpanId=signed(rnd.choice((0, rand_id(rnd, ID64)))),
        operationName=rand_text(rnd), flags=rnd.randrange(4), startTime=NOW_US,
        duration=rnd.getrandbits(24),
        tags=[jc_tag(rnd) for _ in range(rnd.choice((0, 2, 15)))],
        logs=[ttypes.Log(timestamp=NOW_US, fields=[jc_tag(rnd)])] * rnd.randrange(3),
        references=[ttypes.SpanRef(refType=1, traceIdLow=1, traceIdHigh=-1, spanId=2)]
        * rnd.randrange(2))
        for _ in range(rnd.choice((1, 4, 15)))]
    batch = ttypes.Batch(process=ttypes.Process(serviceName=rand_text(rnd),
                                                tags=[jc_tag(rnd) for _ in range(3)]),
                         spans=spans)
    protocol = rnd.choice((TCompactProtocol.TCompactProtocol,
                           TCompactProtocol.TCompactProtocolAccelerated))
    buf = TTransport.TMemoryBuffer()
    proto = protocol(buf)
    proto.writeMessageBegin("emitBatch", ApacheMessageType.ONEWAY, rnd.getrandbits(31))
    JcAgent.emitBatch_args(batch=batch).write(proto)
    proto.writeMessageEnd()
    yield buf.getvalue(), True


# --- a hand-made writer: every layout the wire allows ----------------------------------------


def zigzag(v: int) -> int:
    return ((v << 1) ^ (v >> 63)) & M64


class Hand:
    """Writes Jaeger structs field by field with random (but valid, unless ``odd``) choices:
    field order, long-form headers, duplicates, unknown fields of any type, non-minimal
    varints, long list headers. ``odd`` also drops required fields and uses wrong types."""

    def __init__(self, rnd: random.Random, odd: float) -> None:
        self.rnd = rnd
        self.odd = odd

    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def varint(self, n: int) -> bytes:
        out = bytearray()
        while True:
            if n < 0x80:
                out.append(n)
                break
            out.append(n & 0x7F | 0x80)
            n >>= 7
        if len(out) < 10 and self.chance(0.03):  # non-minimal: continued, then zero bytes
            out[-1] |= 0x80
            out += b"\x80" * self.rnd.randrange(0, 10 - len(out)) + b"\x00"
        return bytes(out)

    def i64(self, v: int) -> bytes:
        return self.varint(zigzag(v))

    def text(self, raw: bytes) -> bytes:
        return self.varint(len(raw)) + raw

    def list(self, etype: int, items: List[bytes]) -> bytes:
        if len(items) < 15 and not self.chance(0.1):
            return bytes((len(items) << 4 | etype,)) + b"".join(items)
        return bytes((0xF0 | etype,)) + self.varint(len(items)) + b"".join(items)

    def struct(self, fields: List[Tuple[int, int, bytes]], required: Tuple[int, ...] = ()
               ) -> bytes:
        """``fields``: (id, ctype, payload), in id order."""
        fields = list(fields)
        if self.odd and required and self.chance(self.odd):  # drop a required field
            drop = self.rnd.choice(required)
            fields = [f for f in fields if f[0] != drop]
        if self.chance(0.1) and fields:  # a duplicate (the last one wins)
            fields.insert(self.rnd.randrange(len(fields) + 1), self.rnd.choice(fields))
        if self.odd and self.chance(self.odd) and fields:  # a known field with another type
            fid = self.rnd.choice(fields)[0]
            fields.insert(self.rnd.randrange(len(fields) + 1), (fid, *self.unknown_value()))
        for _ in range(self.rnd.choice((0, 0, 0, 1, 2))):
            fid = self.rnd.choice((12, 13, 15, 16, 30, 31, 200, 1000, -3, 0, 32767))
            fields.insert(self.rnd.randrange(len(fields) + 1), (fid, *self.unknown_value()))
        if self.chance(0.15):
            self.rnd.shuffle(fields)
        out = bytearray()
        last = 0
        for fid, ctype, payload in fields:
            if 0 < fid - last <= 15 and not self.chance(0.1):
                out.append((fid - last) << 4 | ctype)
            else:
                out.append(ctype)
                out += self.varint(zigzag(fid))
            out += payload
            last = fid
        out.append(0 if self.chance(0.97) else self.rnd.choice((0x10, 0xF0)))  # STOP
        return bytes(out)

    def unknown_value(self, depth: int = 1) -> Tuple[int, bytes]:
        """A random (ctype, payload) of a field (bool: the ctype is the value)."""
        ctype = self.rnd.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13))
        if depth > 3 and ctype in (9, 10, 11, 12):
            ctype = 8
        return ctype, self.payload(ctype, depth, element=False)

    def payload(self, ctype: int, depth: int, element: bool) -> bytes:
        rnd = self.rnd
        if ctype in (1, 2):
            return bytes((rnd.choice((1, 2)),)) if element else b""
        if ctype == 3:
            return bytes((rnd.getrandbits(8),))
        if ctype in (4, 5, 6):
            return self.i64(signed(rnd.getrandbits(64)))
        if ctype == 7:
            return rnd.randbytes(8)
        if ctype == 8:
            return self.text(rnd.randbytes(rnd.randrange(6)))
        if ctype == 13:
            return rnd.randbytes(16)
        if ctype in (9, 10):
            etype = rnd.choice((1, 3, 5, 6, 7, 8, 9, 11, 12)) if depth < 3 else 5
            return self.list(etype, [self.payload(etype, depth + 1, True)
                                     for _ in range(rnd.choice((0, 1, 3, 15)))])
        if ctype == 11:
            n = rnd.choice((0, 1, 2))
            if n == 0:
                return self.varint(0)
            kt, vt = rnd.choice((8, 5, 1)), rnd.choice((8, 12, 9, 2)) if depth < 3 else 5
            return self.varint(n) + bytes((kt << 4 | vt,)) + b"".join(
                self.payload(kt, depth + 1, True) + self.payload(vt, depth + 1, True)
                for _ in range(n))
        return self.struct([(i + 1, *self.unknown_value(depth + 1))
                            for i in range(rnd.randrange(3))])

    def raw_text(self) -> bytes:
        if self.chance(0.15):
            return self.rnd.choice((b"\xff\xfe", b"ok\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80",
                                    b"\xed\xa0\x80", b"\xc0\xaf"))
        return rand_text(self.rnd).encode()

    def tag(self) -> bytes:
        rnd = self.rnd
        vtype = rnd.choice((0, 1, 2, 3, 4) * 6 + (5, 9, -1, (1 << 31) - 1))
        key = rnd.choice(KEYS).encode() if self.chance(0.7) else self.raw_text()
        fields = [(1, 8, self.text(key)), (2, 5, self.i64(vtype))]
        if vtype == 0 or self.chance(0.1):
            fields.append((3, 8, self.text(rnd.choice(WORDS).encode() if self.chance(0.5)
                                           else self.raw_text())))
        if vtype == 1 or self.chance(0.1):
            fields.append((4, 7, struct.pack("<d", rnd.choice(FLOATS))))
        if vtype == 2 or self.chance(0.1):
            fields.append((5, rnd.choice((1, 2)), b""))
        if vtype == 3 or self.chance(0.1):
            fields.append((6, 6, self.i64(rnd.choice(INTS + [signed(rnd.getrandbits(64))]))))
        if vtype == 4 or self.chance(0.1):
            fields.append((7, 8, self.text(rnd.randbytes(rnd.randrange(5)))))
        if 0 <= vtype <= 4 and self.chance(0.05):  # the selected value missing
            fields = [f for f in fields if f[0] != vtype + 3]
        return self.struct(fields, (1, 2))

    def tags(self, most: int) -> bytes:
        return self.list(12, [self.tag() for _ in range(self.rnd.choice((0, 1, 3, most)))])

    def ids(self, trace_id: int, low: int) -> List[Tuple[int, int, bytes]]:
        """traceIdLow (field ``low``) and traceIdHigh (the next one)."""
        return [(low, 6, self.i64(signed(trace_id & M64))),
                (low + 1, 6, self.i64(signed(trace_id >> 64)))]

    def span(self) -> bytes:
        rnd = self.rnd
        trace_id = rand_id(rnd)
        fields = self.ids(trace_id, 1) + [
            (3, 6, self.i64(signed(rand_id(rnd, ID64)))),
            (4, 6, self.i64(signed(rand_id(rnd, ID64)))),
            (5, 8, self.text(self.raw_text()))]
        if self.chance(0.3):
            refs = [self.struct([(1, 5, self.i64(rnd.randrange(-1, 3)))]
                                + self.ids(rnd.choice((trace_id, rand_id(rnd))), 2)
                                + [(4, 6, self.i64(signed(rand_id(rnd, ID64))))], (1, 2, 3, 4))
                    for _ in range(rnd.choice((0, 1, 2, 15)))]
            fields.append((6, 9, self.list(12, refs)))
        fields += [(7, 5, self.i64(rnd.choice((0, 1, -1, 1 << 31, (1 << 32) + 3)))),
                   (8, 6, self.i64(rnd.choice((NOW_US, 0, -1, 1 << 62)))),
                   (9, 6, self.i64(rnd.getrandbits(rnd.choice((5, 20, 63)))))]
        if self.chance(0.8):
            fields.append((10, 9, self.tags(16)))
        if self.chance(0.4):
            logs = [self.struct([(1, 6, self.i64(NOW_US + i)), (2, 9, self.tags(3))], (1, 2))
                    for i in range(rnd.choice((0, 1, 2, 15)))]
            fields.append((11, 9, self.list(12, logs)))
        return self.struct(fields, (1, 2, 3, 4, 5, 7, 8, 9))

    def batch(self) -> bytes:
        rnd = self.rnd
        process = self.struct([(1, 8, self.text(self.raw_text())), (2, 9, self.tags(4))], (1,))
        spans = self.list(12, [self.span() for _ in range(rnd.choice((0, 1, 2, 4, 15)))])
        fields = [(1, 12, process), (2, 9, spans)]
        if self.chance(0.5):
            fields.append((3, 6, self.i64(signed(rnd.getrandbits(64)))))
        if self.chance(0.5):
            fields.append((4, 12, self.struct([(i, 6, self.i64(i)) for i in (1, 2, 3)],
                                              (1, 2, 3))))
        return self.struct(fields, (1, 2))

    def message(self, batch: bytes) -> bytes:
        head = b"\x82" + bytes((self.rnd.choice((0x81, 0x81, 0x21)),))
        head += self.varint(self.rnd.getrandbits(32)) + self.text(b"emitBatch")
        return head + self.struct([(1, 12, batch)], (1,))


def hand_cases(rnd: random.Random, odd: float = 0.0) -> Iterator[Case]:
    hand = Hand(rnd, odd)
    batch = hand.batch()
    yield batch, False
    yield hand.message(batch), True


def deep_nesting_cases() -> Iterator[Case]:
    """Unknown list<list<...>> and struct-in-struct fields around the depth limit (32)."""
    process = b"\x1c\x18\x03svc\x00"
    for depth in range(28, 36):
        lists = b"\x19" * (depth - 1) + b"\x09"  # depth lists, the innermost empty
        yield b"\x1c\x18\x03svc\x00\x19\x00" + b"\x99" + lists + b"\x00", False
        structs = b"\x1c" * (depth - 1) + b"\x00" * depth
        yield process + b"\x19\x00" + b"\x9c" + structs + b"\x00", False


# --- mutations -------------------------------------------------------------------------------


def mutate(rnd: random.Random, data: bytes, other: bytes) -> bytes:
    kind = rnd.randrange(8)
    n = len(data)
    if kind == 0 and n:  # truncated
        return data[:rnd.randrange(n)]
    if kind == 1 and n:  # bit flips
        out = bytearray(data)
        for _ in range(rnd.choice((1, 1, 2, 3))):
            out[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
        return bytes(out)
    if kind == 2 and n:  # bytes replaced
        out = bytearray(data)
        for _ in range(rnd.choice((1, 2, 4))):
            out[rnd.randrange(n)] = rnd.choice((0, 0x0F, 0x7F, 0x80, 0xFF, rnd.getrandbits(8)))
        return bytes(out)
    if kind == 3:  # bytes inserted or deleted
        i = rnd.randrange(n + 1)
        if rnd.random() < 0.5:
            return data[:i] + rnd.randbytes(rnd.randrange(1, 4)) + data[i:]
        return data[:i] + data[i + rnd.randrange(1, 4):]
    if kind == 4:  # spliced with another valid input
        return data[:rnd.randrange(n + 1)] + other[rnd.randrange(len(other) + 1):]
    if kind == 5:  # junk after a valid prefix
        return data[:rnd.randrange(n + 1)] + rnd.randbytes(rnd.randrange(1, 40))
    if kind == 6:  # extra bytes at the end
        return data + rnd.randbytes(rnd.randrange(1, 3))
    return rnd.randbytes(rnd.randrange(0, 80))


# --- tests -----------------------------------------------------------------------------------


def valid_cases(rnd: random.Random, future: Any, count: int) -> List[Case]:
    cases: List[Case] = []
    for i in range(count):
        cases += ours(rnd)
        cases += thriftpy2_cases(future, rnd)
        if i % 2 == 0:
            cases += jaeger_client_cases(rnd)
        cases += hand_cases(rnd)
    return cases


def test_valid_batches_decode_identically(future):
    rnd = random.Random("ccompact-valid")
    cases = valid_cases(rnd, future, 300)
    for _ in range(2):  # cold, then warm caches
        for data, message in cases:
            assert assert_same(data, message) != "error", (data, message)
    ccompact.clear_caches()
    for data, message in cases[:50]:
        assert_same(data, message)


def test_odd_layouts_agree():
    """Hand-made batches that drop required fields or use wrong field types now and then:
    errors and results agree."""
    rnd = random.Random("ccompact-odd")
    results = {"ok": 0, "error": 0}
    for _ in range(800):
        for data, message in hand_cases(rnd, odd=0.05):
            results["error" if assert_same(data, message) == "error" else "ok"] += 1
    assert results["ok"] > 200 and results["error"] > 200


def test_deep_nesting_agrees():
    results = [assert_same(data, message) for data, message in deep_nesting_cases()]
    assert "error" in results and any(r != "error" for r in results)


def test_mutations_agree(future):
    rnd = random.Random("ccompact-mutations")
    cases = valid_cases(rnd, future, 60)
    results = {"ok": 0, "error": 0}
    t0 = time.process_time()
    for data, message in cases:
        for _ in range(25):
            other = rnd.choice(cases)[0]
            mutated = mutate(rnd, data, other)
            results["error" if assert_same(mutated, message) == "error" else "ok"] += 1
    assert results["error"] > 2000 and results["ok"] > 200, results  # both paths reached
    assert time.process_time() - t0 < 30


def test_inputs_of_other_types_agree():
    data = next(ours(random.Random(1)))[0]
    for value in (bytearray(data), memoryview(data), memoryview(data)[::1],
                  memoryview(bytes(4) + data)[4:], b"", None, "text", 12, object(), [1, 2]):
        assert_same(value, True)
    assert outcome(C, bytearray(data), True) == outcome(PY, data, True) != "error"
    # a non-contiguous buffer is copied as bytes(memoryview(x)) copies it
    strided = memoryview(bytes(x for b in data for x in (b, 0)))[::2]
    assert outcome(C, strided, True) == outcome(PY, strided, True) != "error"
    with pytest.raises(TypeError):
        C(data)  # (a programming error, not malformed input)


def test_reasons_match_the_python_decoder():
    """Where the input is complete, the reasons are the Python decoder's, word for word."""
    process = b"\x1c\x18\x03svc\x00"
    cases = {
        b"": True, b"\x82\x82\x01\x09emitBatch": True, b"\x82\x41": True,
        b"\x82\x81\x01\x0femitZipkinBatch\x00": True, b"\x82\x81" + b"\xff" * 12: True,
        b"\x82\x81\x01\x09emitBatch\x00": True, b"\x82\x81\x01\xff\xff\x0f": True,
        process + b"\x19\x15\x02\x00": False, process + b"\x19\x0c\x3e\x00": False,
        process + b"\x19\xfc\xff\xff\xff\xff\x0f": False, b"\x00": False,
        process + b"\x00": False,
        process + b"\x19\x00\x00\x00": False, process + b"\x19\x1c\x16\x02\x00\x00": False,
        process + b"\x19\x0c\x2c\x16\x02\x00\x00": False,
        process + b"\x19\x1c" + b"\x9b\xff\xff\x01" + b"\x00" * 10: False,
    }
    for data, message in cases.items():
        reasons = []
        for decode in (PY, C):
            with pytest.raises(DecodeError) as info:
                decode(data, message)
            reasons.append(str(info.value))
        assert reasons[0] == reasons[1], data


def test_caches_stay_bounded_and_correct():
    """Thousands of distinct keys, names and values: the caches keep their fixed sizes, a
    key with many values stops caching them, and results never change."""
    ccompact.clear_caches()
    encoder = get_encoder("compact")
    records = [SpanRecord(i + 1, i + 2, 0, "op%d" % i, 1, NOW_US, i,
                          {"k%d" % i: "v%d" % i, "url": "/x/%d" % i, "kind": ("a", "b")[i % 2],
                           "n": i % 3, "b": i % 2 == 0}, [], [])
                for i in range(10_000)]
    for start in range(0, len(records), 500):
        chunk = records[start:start + 500]
        data = encoder.encode_batch(encoder.encode_process("s%d" % start, {}),
                                    [encoder.encode_span(r) for r in chunk], 0, (0, 0, 0))
        for _ in range(2):
            assert C(data, False) == PY(data, False)
    stats = ccompact.cache_stats()
    assert stats["keys"] <= stats["str_slots"] and stats["names"] <= stats["str_slots"]
    assert stats["values"] <= stats["value_slots"]
    assert stats["keys"] > 1000 and stats["names"] > 1000  # used, and bounded by design
    # repeated small values share Tag objects; a high-cardinality key's values do not
    data = encoder.encode_batch(encoder.encode_process("s", {}),
                                [encoder.encode_span(r) for r in records[:40]], 0, (0, 0, 0))
    spans = C(data, False)[0]
    kinds = [t for s in spans for t in s.tags if t.key == "kind"]
    # Not exactly 2: the value cache is direct-mapped and hashes the key object's address,
    # so another tag of the batch can evict "a" or "b" now and then, depending on memory
    # layout. Sharing still shows as far fewer Tag objects than tags.
    assert len(kinds) == 40 and len({id(t) for t in kinds}) <= 6
    urls = [t for s in spans for t in s.tags if t.key == "url"]
    assert len({id(t) for t in urls}) == len(urls)
    ccompact.clear_caches()
    assert ccompact.cache_stats()["values"] == 0
    assert C(data, False) == PY(data, False)


def _allocated() -> int:
    gc.collect()
    return sys.getallocatedblocks()


SHARED = (None, True, False, "", b"", 0, 1, 2, 3, 4)


def _leak_check(calls: Callable[[], None], rounds: int, decodes: int) -> None:
    """``rounds`` runs of ``calls`` (``decodes`` decodes in all) must not grow the number of
    the interpreter's allocated blocks (every small Python object, made in C or not), the
    reference counts of the shared objects the decoder hands out, nor, in a debug build, the
    total reference count. A leak of one object per decode, or even per 200, shows."""
    for _ in range(max(1, rounds // 10)):  # warm-up: caches, free lists, interned objects
        calls()
    total = getattr(sys, "gettotalrefcount", lambda: 0)
    # Collect first: garbage left by earlier tests (cycles holding True, None ...) freed by
    # the collection inside _allocated() would otherwise show as a drop in these counts.
    before = _allocated()
    refs = total()
    shared = [sys.getrefcount(x) for x in SHARED]
    for _ in range(rounds):
        calls()
    bound = decodes // 200
    grown = _allocated() - before
    assert grown < bound, "%d blocks more after %d decodes" % (grown, decodes)
    assert total() - refs < bound
    for x, count in zip(SHARED, shared):  # (immortal from 3.12: then constant)
        assert abs(sys.getrefcount(x) - count) < bound, x


@pytest.mark.skipif(not hasattr(sys, "getallocatedblocks"), reason="CPython only")
def test_no_leak_over_100k_valid_decodes(future):
    rnd = random.Random("ccompact-leak")
    # every struct, tag type and cache path: two valid batches, message and bare framing
    cases = list(ours(rnd)) + list(thriftpy2_cases(future, rnd))
    cases = [(d, m) for d, m in cases if outcome(C, d, m) != "error"][:2]
    assert len(cases) == 2

    def calls() -> None:
        for data, message in cases:
            C(data, message)

    # the objects a result shares with the caches keep their reference counts
    kept = [C(data, message) for data, message in cases]
    shared = [x for spans, process, _, _ in kept for x in (process.service_name, *(
        y for s in spans for t in s.tags for y in (s.operation_name, t, t.key, t.value)))]
    counts = [sys.getrefcount(x) for x in shared]
    _leak_check(calls, 50_000, 100_000)
    assert max(abs(sys.getrefcount(x) - n) for x, n in zip(shared, counts)) <= 2


@pytest.mark.skipif(not hasattr(sys, "getallocatedblocks"), reason="CPython only")
def test_malformed_corpus_never_crashes_or_leaks(future):
    """100 000 malformed inputs (the error paths free what they built): DecodeError or a
    result, never a crash, and no growth when the corpus is decoded again."""
    rnd = random.Random("ccompact-corpus")
    sources = valid_cases(rnd, future, 20)
    corpus = []
    for _ in range(100_000):
        data, message = rnd.choice(sources)
        corpus.append((mutate(rnd, data, rnd.choice(sources)[0]), message))
    errors = 0
    t0 = time.process_time()
    for data, message in corpus:
        try:
            C(data, message)
        except DecodeError:
            errors += 1
    assert errors > 80_000
    assert time.process_time() - t0 < 10
    sample = corpus[:2000]

    def calls() -> None:
        for data, message in sample:
            try:
                C(data, message)
            except DecodeError:
                pass

    _leak_check(calls, 50, 100_000)


def test_backend_selection():
    assert thrift_decode.COMPACT_BACKEND == (
        "python" if os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0") else "c")
    code = "from opentracing_sls.shim import thrift_decode as t; print(t.COMPACT_BACKEND)"
    for value, expected in (("1", "python"), ("0", "c"), ("", "c")):
        env = dict(os.environ, OPENTRACING_SLS_PURE_PYTHON=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected
