"""Jaeger Thrift **binary** protocol encoder (jaeger-agent UDP port 6832, and the body of
the collector's ``POST /api/traces``), hand-written.

Binary protocol rules used here (jaeger-wire.md section 3): big-endian throughout; field
header = type byte + i16 id; string/binary = i32 length + bytes; list = element type byte +
i32 size; bool = one byte; strict message header ``80 01 00 04`` (version 1, ONEWAY), i32
name length, name, i32 seqid.

Ids are packed as unsigned ``Q``: the big-endian bytes of an unsigned 64-bit value are the
two's-complement bytes of the signed i64 the IDL declares, so ids >= 2^63 need no
conversion. Times and counters are masked to 64 bits the same way instead of being range
checked.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..record import SpanRecord
from ._wire import CACHE_LIMIT, I64_MAX, I64_MIN, classify, sanitize, to_str, utf8

_M64 = 0xFFFFFFFFFFFFFFFF
_M32 = 0xFFFFFFFF

# Thrift binary type ids
_BOOL, _DOUBLE, _I32, _I64, _STRING, _STRUCT, _LIST = 2, 4, 8, 10, 11, 12, 15

_U32 = struct.Struct(">I").pack
_LONG_STOP = struct.Struct(">qx").pack  # the pad byte doubles as the Tag's STOP
_DOUBLE_STOP = struct.Struct(">dx").pack
# Span fields 1-4 (traceIdLow, traceIdHigh, spanId, parentSpanId): header + u64 each.
_IDS = struct.Struct(">BhQBhQBhQBhQ").pack
# Span fields 7-9: flags (i32), startTime, duration (i64).
_TAIL = struct.Struct(">BhIBhQBhQ").pack
_LIST_FIELD = struct.Struct(">BhBI").pack  # field header + element type + size
_LOG_TS = struct.Struct(">BhQBhBI").pack  # Log.timestamp, then the header of Log.fields

_KEYS: Dict[str, Tuple[bytes, ...]] = {}
_OPS: Dict[str, bytes] = {}


def _key_entry(key: Any) -> Tuple[bytes, ...]:
    raw = utf8(key if type(key) is str else to_str(key))
    head = struct.pack(">BhI", _STRING, 1, len(raw)) + raw + struct.pack(">Bh", _I32, 2)

    def prefix(tag_type: int, field_type: int, field_id: int) -> bytes:
        return head + struct.pack(">iBh", tag_type, field_type, field_id)

    entry = (
        prefix(2, _BOOL, 5) + b"\x00\x00",  # BOOL, vBool = false, STOP
        prefix(2, _BOOL, 5) + b"\x01\x00",  # BOOL, vBool = true, STOP
        prefix(0, _STRING, 3),  # STRING, vStr
        prefix(3, _I64, 6),  # LONG, vLong
        prefix(1, _DOUBLE, 4),  # DOUBLE, vDouble
        prefix(4, _STRING, 7),  # BINARY, vBinary
    )
    if type(key) is str:  # 1, 1.0 and True are equal dict keys but print differently
        if len(_KEYS) >= CACHE_LIMIT:
            _KEYS.clear()
        _KEYS[key] = entry
    return entry


def _op_entry(name: Any) -> bytes:
    raw = utf8(name if type(name) is str else to_str(name))
    entry = struct.pack(">BhI", _STRING, 5, len(raw)) + raw
    if type(name) is str:
        if len(_OPS) >= CACHE_LIMIT:
            _OPS.clear()
        _OPS[name] = entry
    return entry


def _slow_tag(key: Any, value: Any) -> bytes:
    try:
        entry = _KEYS[key]
    except KeyError:
        entry = _key_entry(key)
    kind, value = classify(value)
    if kind == 2:  # BOOL
        return entry[value]
    if kind == 3:  # LONG
        return entry[3] + _LONG_STOP(value)
    if kind == 1:  # DOUBLE
        return entry[4] + _DOUBLE_STOP(value)
    raw = utf8(value) if kind == 0 else value
    return entry[2 if kind == 0 else 5] + _U32(len(raw)) + raw + b"\x00"


def _put_tags(p: List[bytes], field_id: int, tags: Mapping[str, Any]) -> None:
    """Appends a list<Tag> field (header included) to ``p``."""
    p.append(_LIST_FIELD(_LIST, field_id, _STRUCT, len(tags)))
    _put_tag_items(p, tags)


def _put_tag_items(p: List[bytes], tags: Mapping[str, Any]) -> None:
    keys = _KEYS
    for k, v in tags.items():
        try:
            e = keys[k]
        except KeyError:
            e = _key_entry(k)
        t = type(v)
        if t is str:
            b = v.encode()
            p += (e[2], _U32(len(b)), b, b"\x00")
        elif t is bool:
            p.append(e[v])
        elif t is int and I64_MIN <= v <= I64_MAX:
            p += (e[3], _LONG_STOP(v))
        elif t is float:
            p += (e[4], _DOUBLE_STOP(v))
        else:
            p.append(_slow_tag(k, v))


def encode_span(record: SpanRecord) -> bytes:
    """One complete binary ``Span`` struct (ends with STOP), independent of context."""
    try:
        trace_id, span_id, parent_id, op, flags, start, duration, tags, logs, refs = record
        p = [_IDS(_I64, 1, trace_id & _M64, _I64, 2, (trace_id >> 64) & _M64,
                  _I64, 3, span_id & _M64, _I64, 4, parent_id & _M64)]
        try:
            p.append(_OPS[op])
        except KeyError:
            p.append(_op_entry(op))
        if refs:
            p.append(_encode_refs(refs))
        p.append(_TAIL(_I32, 7, flags & _M32, _I64, 8, start & _M64, _I64, 9, duration & _M64))
        if tags:
            _put_tags(p, 10, tags)
        if logs:
            p.append(_LIST_FIELD(_LIST, 11, _STRUCT, len(logs)))
            for ts, fields in logs:
                p.append(_LOG_TS(_I64, 1, ts & _M64, _LIST, 2, _STRUCT, len(fields)))
                _put_tag_items(p, fields)
                p.append(b"\x00")
        p.append(b"\x00")
        return b"".join(p)
    except UnicodeEncodeError:
        return encode_span(sanitize(record))


def _encode_refs(refs: Sequence[Tuple[int, int, int]]) -> bytes:
    p = [_LIST_FIELD(_LIST, 6, _STRUCT, len(refs))]
    for ref_type, trace_id, span_id in refs:
        p.append(struct.pack(">BhIBhQBhQBhQx", _I32, 1, ref_type & _M32,
                             _I64, 2, trace_id & _M64, _I64, 3, (trace_id >> 64) & _M64,
                             _I64, 4, span_id & _M64))
    return b"".join(p)


def encode_process(service_name: str, tags: Mapping[str, Any]) -> bytes:
    """A complete binary ``Process`` struct: serviceName, tags when non-empty, STOP."""
    raw = utf8(service_name if type(service_name) is str else to_str(service_name))
    p = [struct.pack(">BhI", _STRING, 1, len(raw)), raw]
    if tags:
        p.append(_LIST_FIELD(_LIST, 2, _STRUCT, len(tags)))
        p += [_slow_tag(k, v) for k, v in tags.items()]
    p.append(b"\x00")
    return b"".join(p)


# seqNo (field 3), ClientStats (field 4: three i64 and its STOP), then the Batch's STOP
_BATCH_TAIL = struct.Struct(">BhQBhBhQBhQBhQxx").pack


def _batch_parts(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> List[bytes]:
    # Batch: process (field 1), spans (field 2), seqNo (field 3), stats (field 4), STOP.
    p = [b"\x0c\x00\x01", process, _LIST_FIELD(_LIST, 2, _STRUCT, len(spans))]
    p += spans
    full_queue, too_large, failed = stats
    p.append(_BATCH_TAIL(_I64, 3, seq_no & _M64, _STRUCT, 4, _I64, 1, full_queue & _M64,
                         _I64, 2, too_large & _M64, _I64, 3, failed & _M64))
    return p


def encode_batch(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> bytes:
    """A bare binary ``Batch`` struct, e.g. the body of the collector's HTTP endpoint."""
    return b"".join(_batch_parts(process, spans, seq_no, stats))


# Strict header: version 1 (0x8001) | ONEWAY (4), name, seqid 1; then emitBatch_args
# field 1 (STRUCT) = the Batch.
_EMIT_BATCH_HEAD = b"\x80\x01\x00\x04" + _U32(9) + b"emitBatch" + _U32(1) + b"\x0c\x00\x01"


def encode_emit_batch(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> bytes:
    """A complete ``Agent.emitBatch`` oneway message in the binary protocol."""
    p = _batch_parts(process, spans, seq_no, stats)
    p.insert(0, _EMIT_BATCH_HEAD)
    p.append(b"\x00")  # STOP of emitBatch_args
    return b"".join(p)


# Everything but the process and the spans has a fixed size in the binary protocol:
# header and args field 24, process field 3, spans list header 8, seqNo 11,
# stats 3 + 3 * 11 + 1, STOP of Batch and of the args 2.
_EMIT_BATCH_FIXED = len(_EMIT_BATCH_HEAD) + 3 + 8 + 11 + 37 + 2


def emit_batch_overhead(process: bytes) -> int:
    """Size of an emitBatch message besides its spans (exact in the binary protocol)."""
    return _EMIT_BATCH_FIXED + len(process)


class BinarySpanEncoder:
    """Jaeger Thrift binary protocol, as jaeger-agent expects on UDP port 6832."""

    protocol = "binary"
    encode_process = staticmethod(encode_process)
    encode_span = staticmethod(encode_span)
    emit_batch_overhead = staticmethod(emit_batch_overhead)
    encode_emit_batch = staticmethod(encode_emit_batch)
    encode_batch = staticmethod(encode_batch)

    def __repr__(self) -> str:
        return "BinarySpanEncoder()"
