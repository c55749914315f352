"""Malformed input of any kind raises DecodeError, never another exception, quickly and
without large allocations."""

from __future__ import annotations

import random
import struct
import time

import pytest

from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM, SpanRecord
from opentracing_sls.reporting._varint import varint
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim.model import DecodeError, Process, Span
from opentracing_sls.shim.thrift_decode import (
    decode_batch_binary,
    decode_batch_compact,
    decode_emit_batch_binary,
    decode_emit_batch_compact,
)

NOW_US = 1_700_000_000_123_456
M64 = (1 << 64) - 1

# (decoder, protocol, message framing?)
CASES = [
    (decode_emit_batch_compact, "compact", True),
    (decode_batch_compact, "compact", False),
    (decode_emit_batch_binary, "binary", True),
    (decode_batch_binary, "binary", False),
]
IDS = ["emit-compact", "batch-compact", "emit-binary", "batch-binary"]


# Every test here runs against both compact decoders (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("compact_backend")


def valid(protocol: str, message: bool) -> bytes:
    """A small batch that exercises every struct and tag type."""
    rnd = random.Random(3)
    encoder = get_encoder(protocol)
    records = [
        SpanRecord(rnd.getrandbits(128), rnd.getrandbits(64), rnd.getrandbits(64), "GET /x", 1,
                   NOW_US, 1234, {"s": "v", "l": -3, "b": True, "d": 0.5, "x": b"\x01"},
                   [(NOW_US + 1, {"event": "e", "n": 7})],
                   [(CHILD_OF, 1, 2), (FOLLOWS_FROM, M64, 3)]),
        SpanRecord(5, 6, 0, "root", 0, NOW_US, 1, {}, [], []),
    ]
    process = encoder.encode_process("svc", {"client-uuid": "u", "n": 1})
    spans = [encoder.encode_span(r) for r in records]
    build = encoder.encode_emit_batch if message else encoder.encode_batch
    return build(process, spans, 3, (1, 2, 3))


def outcome(decode, data):
    """'ok' (after checking the result is well-formed) or 'error'; anything else fails."""
    try:
        spans = decode(data)
    except DecodeError as exc:
        assert str(exc)  # a short reason
        return "error"
    assert isinstance(spans, list)
    for span in spans:
        assert type(span) is Span and type(span.process) is Process
    return "ok"


@pytest.mark.parametrize("decode, protocol, message", CASES, ids=IDS)
def test_every_truncation_fails(decode, protocol, message):
    data = valid(protocol, message)
    assert outcome(decode, data) == "ok"
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:n])


@pytest.mark.parametrize("decode, protocol, message", CASES, ids=IDS)
def test_trailing_bytes_fail(decode, protocol, message):
    data = valid(protocol, message)
    for extra in (b"\x00", b"\x01\x02", data):
        with pytest.raises(DecodeError, match="after the end"):
            decode(data + extra)


@pytest.mark.parametrize("decode, protocol, message", CASES, ids=IDS)
def test_random_bit_flips(decode, protocol, message):
    rnd = random.Random(f"{protocol}-{message}")  # str seeds are stable across runs
    data = valid(protocol, message)
    results = {"ok": 0, "error": 0}
    t0 = time.perf_counter()
    for _ in range(2000):
        flipped = bytearray(data)
        for _ in range(rnd.choice((1, 1, 2, 3))):
            i = rnd.randrange(len(flipped))
            flipped[i] ^= 1 << rnd.randrange(8)
        results[outcome(decode, bytes(flipped))] += 1
    assert results["error"] > 500  # most flips are caught ...
    assert results["ok"] > 50  # ... flips in values decode (the test reaches both paths)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("decode, protocol, message", CASES, ids=IDS)
def test_random_bytes(decode, protocol, message):
    rnd = random.Random(11)
    prefix = valid(protocol, message)
    for i in range(2000):
        junk = rnd.randbytes(rnd.randrange(120))
        if i % 2:  # behind a valid start, so the junk reaches the struct readers
            junk = prefix[:rnd.randrange(len(prefix))] + junk
        assert outcome(decode, junk) == "error" or i % 2


@pytest.mark.parametrize("decode", [decode_emit_batch_compact, decode_batch_compact,
                                    decode_emit_batch_binary, decode_batch_binary])
@pytest.mark.parametrize("data", [b"", b"\x00", None, "text", 12, object(), [1, 2]])
def test_not_bytes_or_empty(decode, data):
    with pytest.raises(DecodeError):
        decode(data)


def compact_message(head: bytes, batch: bytes) -> bytes:
    return head + b"\x1c" + batch + b"\x00"


def test_compact_wrong_headers():
    batch = valid("compact", False)
    good = b"\x82\x81\x01\x09emitBatch"
    assert decode_emit_batch_compact(compact_message(good, batch))
    bad = {
        b"\x80\x81\x01\x09emitBatch": "not a compact",
        b"\x82\x82\x01\x09emitBatch": "version",
        b"\x82\x41\x01\x09emitBatch": "type 2",  # REPLY
        b"\x82\x61\x01\x09emitBatch": "type 3",  # EXCEPTION
        b"\x82\x01\x01\x09emitBatch": "type 0",
        b"\x82\xe1\x01\x09emitBatch": "type 7",
        b"\x82\x81\x01\x0femitZipkinBatch": "not emitBatch",
        b"\x82\x81\x01\x09emitBatcH": "not emitBatch",
        b"\x82\x81\x01\x00": "not emitBatch",
        b"\x82\x81\x01\xff\xff\xff\xff\x0f": "past the end",
        b"\x82\x81" + b"\xff" * 12: "varint",
    }
    for head, reason in bad.items():
        with pytest.raises(DecodeError, match=reason):
            decode_emit_batch_compact(compact_message(head, batch))
    # the binary decoder refuses compact data and vice versa
    with pytest.raises(DecodeError):
        decode_emit_batch_binary(valid("compact", True))
    with pytest.raises(DecodeError):
        decode_emit_batch_compact(valid("binary", True))


def test_binary_wrong_headers():
    args = b"\x0c\x00\x01" + valid("binary", False) + b"\x00"
    name = struct.pack(">i", 9) + b"emitBatch"
    assert decode_emit_batch_binary(b"\x80\x01\x00\x04" + name + b"\x00\x00\x00\x01" + args)
    bad = {
        b"\x80\x02\x00\x04" + name: "version",
        b"\x80\x01\x00\x02" + name: "type 2",
        b"\x80\x01\x00\x03" + name: "type 3",
        b"\x80\x01\x00\x04" + struct.pack(">i", 15) + b"emitZipkinBatch": "not emitBatch",
        b"\x80\x01\x00\x04" + struct.pack(">i", -1): "past the end",
        b"\x80\x01\x00\x04" + struct.pack(">i", 1 << 30) + b"emitBatch": "past the end",
        name + b"\x02": "type 2",  # non-strict REPLY
        struct.pack(">i", 0x7FFFFFFF) + b"emitBatch\x04": "past the end",
    }
    for head, reason in bad.items():
        with pytest.raises(DecodeError, match=reason):
            decode_emit_batch_binary(head + b"\x00\x00\x00\x01" + args)


def test_huge_declared_sizes_fail_fast():
    t0 = time.perf_counter()
    process = b"\x18\x03svc\x00"
    compact = [
        b"\x1c" + process + b"\x19\xfc" + varint((1 << 31) - 1),  # spans: 2^31 - 1
        b"\x1c" + process + b"\x19\xfc" + b"\xff" * 9 + b"\x01",  # spans: 2^64 - 1
        b"\x1c\x18" + varint(1 << 40) + b"svc",  # serviceName length
        b"\x1c" + process + b"\x19\x1c\x16\x02\x16\x00\x16\x04\x16\x00\x18\xff\xff\xff\x7f",
        b"\x1c" + process + b"\x19\x1c" + b"\x9b" + varint(1 << 40),  # unknown map
        b"\x1c" + process + b"\x19\x1c" + b"\x99\xfc" + varint(1 << 33),  # unknown list
        b"\x1c" + process + b"\x19\x1c" + b"\x99\xf9" + varint(1 << 20),  # list<list>
    ]
    for data in compact:
        with pytest.raises(DecodeError):
            decode_batch_compact(data + b"\x00" * 64)
    binary_process = b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x03svc\x00"
    binary = [
        binary_process + b"\x0f\x00\x02\x0c\x7f\xff\xff\xff",
        binary_process + b"\x0f\x00\x02\x0c\xff\xff\xff\xff",  # negative size
        b"\x0c\x00\x01\x0b\x00\x01\x7f\xff\xff\xff",
        b"\x0c\x00\x01\x0b\x00\x01\x80\x00\x00\x00",
        binary_process + b"\x0d\x00\x09\x0b\x0b\x7f\xff\xff\xff",  # unknown map
        binary_process + b"\x0f\x00\x09\x0a\x7f\xff\xff\xff",  # unknown list<i64>
        binary_process + b"\x0e\x00\x09\x0c\x10\x00\x00\x00",  # unknown set<struct>
    ]
    for data in binary:
        with pytest.raises(DecodeError):
            decode_batch_binary(data + b"\x00" * 64)
    assert time.perf_counter() - t0 < 1


def test_deep_nesting_fails_without_recursion_error():
    # an unknown field holding list<list<list<...>>> 10 000 deep, in both protocols
    compact = b"\x1c\x18\x03svc\x00" + b"\x19\x00" + b"\x99" + b"\x19" * 10_000
    with pytest.raises(DecodeError, match="nest"):
        decode_batch_compact(compact + b"\x00" * 10_002)
    binary = (b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x03svc\x00" + b"\x0f\x00\x09"
              + b"\x0f\x00\x00\x00\x01" * 10_000)
    with pytest.raises(DecodeError, match="nest"):
        decode_batch_binary(binary + b"\x00" * 10_002)
    nested_structs = b"\x1c\x18\x03svc\x00" + b"\x9c" + b"\x1c" * 10_000
    with pytest.raises(DecodeError, match="nest"):
        decode_batch_compact(nested_structs + b"\x00" * 10_002)


def test_missing_required_fields():
    cases = {
        b"\x82\x81\x01\x09emitBatch\x00": "without a batch",
        b"\x82\x81\x01\x09emitBatch\x1c\x00\x00": "without a process",
        b"\x82\x81\x01\x09emitBatch\x1c\x1c\x18\x01s\x00\x00\x00": "without spans",
        b"\x82\x81\x01\x09emitBatch\x1c\x1c\x19\x0c\x00\x19\x0c\x00\x00": "process without",
        # a span with only traceIdLow
        b"\x82\x81\x01\x09emitBatch\x1c\x1c\x18\x01s\x00\x19\x1c\x16\x02\x00\x00\x00": "span",
        # a tag without vType
        b"\x82\x81\x01\x09emitBatch\x1c\x1c\x18\x01s\x19\x1c\x18\x01k\x00\x00\x19\x0c\x00\x00":
            "tag",
        # stats with two counters
        b"\x82\x81\x01\x09emitBatch\x1c\x1c\x18\x01s\x00\x19\x0c\x2c\x16\x02\x16\x02\x00\x00\x00":
            "client stats",
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError, match=reason):
            decode_emit_batch_compact(data)


def test_wrong_element_types():
    with pytest.raises(DecodeError, match="span list"):
        decode_batch_compact(b"\x1c\x18\x01s\x00\x19\x15\x02\x00")  # list<i32> of spans
    with pytest.raises(DecodeError, match="span list"):
        decode_batch_binary(b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x01s\x00"
                            b"\x0f\x00\x02\x08\x00\x00\x00\x01\x00\x00\x00\x02\x00")
    with pytest.raises(DecodeError, match="unknown compact type"):
        decode_batch_compact(b"\x1c\x18\x01s\x00\x19\x0c\x3e\x00")  # field of ctype 14
    with pytest.raises(DecodeError, match="unknown binary type"):
        decode_batch_binary(b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x01s\x00\x11\x00\x05\x00")
