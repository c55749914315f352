"""Jaeger Thrift **compact** protocol encoder (jaeger-agent UDP port 6831), hand-written.

Compact protocol rules used here (jaeger-wire.md section 3; Apache Thrift TCompactProtocol):

- field header ``(id delta << 4) | ctype``; every delta in the Jaeger structs is 1..15;
- i32 and i64 are zigzag varints; message seqid and string/list lengths are plain varints;
- a bool field carries its value in the ctype (1 = true, 2 = false), no payload byte;
- a double is 8 bytes **little**-endian (unlike the binary protocol);
- list header ``(size << 4) | etype`` below 15 elements, else ``0xF0 | etype`` + varint size.

Speed: ``encode_span`` runs for every sampled span, so it is written flat, with no helper
calls on the common path: varints come from tables of 14-bit groups (:mod:`._varint`), the
bytes of tag-key/type prefixes and of operation names are cached, constant bytes are merged
into neighbouring pieces, and everything is appended to one list joined once.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .._accel import load
from ..record import SpanRecord
from ._varint import (
    CONT,
    CONT7,
    CONT_N,
    LAST,
    SMALL_LONG_STOP,
    TOP_I64,
    TOP_I64_HIGH0,
    TOP_I64_N,
    TOP_I64_N_HIGH0,
    TOP_N,
    TOP_TIME_I64,
    ZZ0,
    ZZ0_N,
    i32,
    i64,
    varint,
)
from ._wire import CACHE_LIMIT, I64_MAX, I64_MIN, classify, sanitize, to_str, utf8


def _list_head(field_header: bytes, size: int) -> bytes:
    """Field header, then the header of a list of ``size`` STRUCTs (ctype 12)."""
    if size < 15:
        return field_header + bytes((size << 4 | 0x0C,))
    return field_header + b"\xfc" + varint(size)


# Every list<Tag> (Span.tags after duration, Log.fields after timestamp, Process.tags after
# serviceName) follows the previous field by a delta of 1: field header 0x19.
_TAGS_HEAD = tuple(_list_head(b"\x19", n) for n in range(15))
# Span.logs (field 11): delta 1 after tags, delta 2 when tags were omitted; the header of
# the first Log's timestamp (field 1, I64) is merged in.
_LOGS_HEAD = tuple(_list_head(b"\x19", n) + b"\x16" for n in range(15))
_LOGS_HEAD_NO_TAGS = tuple(_list_head(b"\x29", n) + b"\x16" for n in range(15))

# Per tag key: the bytes of key + vType + value field header, one per tag type. The bool
# entries are whole tags (a bool's value is its ctype) and sit at index False and True.
_KEYS: Dict[str, Tuple[bytes, ...]] = {}
# operationName (field 5) with its header, per name.
_OPS: Dict[str, bytes] = {}
# flags (field 7, i32) with its header, then the header of startTime (field 8).
_FLAGS_AFTER_OP: Dict[int, bytes] = {}
_FLAGS_AFTER_REFS: Dict[int, bytes] = {}
_DOUBLE_STOP = struct.Struct("<dx").pack  # 8 bytes LE; the pad byte doubles as the STOP


def _key_entry(key: Any) -> Tuple[bytes, ...]:
    raw = utf8(key if type(key) is str else to_str(key))
    head = b"\x18" + varint(len(raw)) + raw + b"\x15"  # key (field 1), vType (field 2, i32)
    entry = (
        head + b"\x04\x32\x00",  # BOOL (zigzag 4), vBool field 5 = delta 3, ctype FALSE, STOP
        head + b"\x04\x31\x00",  # ... ctype TRUE
        head + b"\x00\x18",  # STRING (0), vStr field 3 = delta 1, BINARY
        head + b"\x06\x46",  # LONG (zigzag 6), vLong field 6 = delta 4, I64
        head + b"\x02\x27",  # DOUBLE (zigzag 2), vDouble field 4 = delta 2, DOUBLE
        head + b"\x08\x58",  # BINARY (zigzag 8), vBinary field 7 = delta 5, BINARY
    )
    if type(key) is str:  # 1, 1.0 and True are equal dict keys but print differently
        if len(_KEYS) >= CACHE_LIMIT:
            _KEYS.clear()
        _KEYS[key] = entry
    return entry


def _op_entry(name: Any) -> bytes:
    raw = utf8(name if type(name) is str else to_str(name))
    entry = b"\x18" + varint(len(raw)) + raw
    if type(name) is str:
        if len(_OPS) >= CACHE_LIMIT:
            _OPS.clear()
        _OPS[name] = entry
    return entry


def _flags_entry(flags: int, after_refs: bool) -> bytes:
    entry = (b"\x15" if after_refs else b"\x25") + i32(flags) + b"\x16"
    if 0 <= flags < 256:
        (_FLAGS_AFTER_REFS if after_refs else _FLAGS_AFTER_OP)[flags] = entry
    return entry


def _slow_tag(key: Any, value: Any) -> bytes:
    """A whole Tag struct, for any key and value (the fast paths cover the common types)."""
    try:
        entry = _KEYS[key]
    except KeyError:
        entry = _key_entry(key)
    kind, value = classify(value)
    if kind == 2:  # BOOL
        return entry[value]
    if kind == 3:  # LONG
        return entry[3] + i64(value) + b"\x00"
    if kind == 1:  # DOUBLE
        return entry[4] + _DOUBLE_STOP(value)
    raw = utf8(value) if kind == 0 else value
    return entry[2 if kind == 0 else 5] + varint(len(raw)) + raw + b"\x00"


def _encode_refs(refs: Sequence[Tuple[int, int, int]]) -> bytes:
    p = [_list_head(b"\x19", len(refs))]  # Span.references, field 6
    for ref_type, trace_id, span_id in refs:
        # refType (field 1, i32), traceIdLow, traceIdHigh, spanId (fields 2-4, i64), STOP
        p += (b"\x15", i32(ref_type), b"\x16", i64(trace_id), b"\x16", i64(trace_id >> 64),
              b"\x16", i64(span_id), b"\x00")
    return b"".join(p)


def encode_span(record: SpanRecord) -> bytes:
    """One complete compact ``Span`` struct (ends with STOP), independent of context."""
    try:
        trace_id, span_id, parent_id, op, flags, start, duration, tags, logs, refs = record
        C = CONT
        L = LAST
        keys = _KEYS
        # Fields 1-4: traceIdLow, traceIdHigh, spanId, parentSpanId (i64, delta 1 each).
        # Fast path: ids in [2^55, 2^64 - 2^55), 99% of random ids, whose varint has 9 or 10
        # bytes; t = u >> 55 tells. See _varint for the tables. Python's >> and & see a
        # negative or 128-bit trace id's low 64 bits in two's complement, as the wire wants.
        u = trace_id
        t = u >> 55 & 0x1FF
        hi = u >> 64
        if 0 < t < 256:
            p = [b"\x16", ZZ0[u & 0x1FFF], C[u >> 13 & 0x3FFF], C[u >> 27 & 0x3FFF],
                 C[u >> 41 & 0x3FFF], (TOP_I64 if hi else TOP_I64_HIGH0)[t]]
        elif 256 <= t < 511:
            p = [b"\x16", ZZ0_N[u & 0x1FFF], CONT_N[u >> 13 & 0x3FFF],
                 CONT_N[u >> 27 & 0x3FFF], CONT_N[u >> 41 & 0x3FFF],
                 (TOP_I64_N if hi else TOP_I64_N_HIGH0)[t]]
        else:
            p = [b"\x16", i64(u), b"\x16" if hi else b"\x16\x00\x16"]
        if hi:  # a 128-bit trace id (Envoy's default): traceIdHigh, then spanId's header
            u = hi
            t = u >> 55
            if 0 < t < 256:
                p += (ZZ0[u & 0x1FFF], C[u >> 13 & 0x3FFF], C[u >> 27 & 0x3FFF],
                      C[u >> 41 & 0x3FFF], TOP_I64[t])
            elif 256 <= t < 511:
                p += (ZZ0_N[u & 0x1FFF], CONT_N[u >> 13 & 0x3FFF], CONT_N[u >> 27 & 0x3FFF],
                      CONT_N[u >> 41 & 0x3FFF], TOP_I64_N[t])
            else:
                p += (i64(u), b"\x16")
        u = span_id
        t = u >> 55
        if 0 < t < 256:
            p += (ZZ0[u & 0x1FFF], C[u >> 13 & 0x3FFF], C[u >> 27 & 0x3FFF],
                  C[u >> 41 & 0x3FFF], TOP_I64[t])
        elif 256 <= t < 511:
            p += (ZZ0_N[u & 0x1FFF], CONT_N[u >> 13 & 0x3FFF], CONT_N[u >> 27 & 0x3FFF],
                  CONT_N[u >> 41 & 0x3FFF], TOP_I64_N[t])
        else:
            p += (i64(u), b"\x16")
        u = parent_id
        t = u >> 55
        if 0 < t < 256:
            p += (ZZ0[u & 0x1FFF], C[u >> 13 & 0x3FFF], C[u >> 27 & 0x3FFF],
                  C[u >> 41 & 0x3FFF], L[t])
        elif 256 <= t < 511:
            p += (ZZ0_N[u & 0x1FFF], CONT_N[u >> 13 & 0x3FFF], CONT_N[u >> 27 & 0x3FFF],
                  CONT_N[u >> 41 & 0x3FFF], TOP_N[t])
        else:
            p.append(i64(u))
        try:  # operationName, field 5
            p.append(_OPS[op])
        except KeyError:
            p.append(_op_entry(op))
        if refs:  # field 6
            p.append(_encode_refs(refs))
            try:
                p.append(_FLAGS_AFTER_REFS[flags])
            except KeyError:
                p.append(_flags_entry(flags, True))
        else:  # flags is field 7: delta 2 when references are omitted
            try:
                p.append(_FLAGS_AFTER_OP[flags])
            except KeyError:
                p.append(_flags_entry(flags, False))
        # startTime (field 8; header written with flags), then duration's header. Epoch
        # microseconds from 1970-01-26 to 2112 have 8-byte varints.
        if 0x20000000000 <= start < 0x10000000000000:
            p += (ZZ0[start & 0x1FFF], C[start >> 13 & 0x3FFF], C[start >> 27 & 0x3FFF],
                  TOP_TIME_I64[start >> 41])
        else:
            p += (i64(start), b"\x16")
        if 0 <= duration < 0x400:  # field 9: 1-2 bytes below 1 ms
            p.append(L[duration << 1])
        elif 0 <= duration < 0x2000:  # 2 bytes up to 8 ms
            p += (CONT7[duration << 1 & 0x7F], L[duration >> 6])
        elif 0 <= duration < 0x1000000:  # 3-4 bytes up to 16 s
            p += (ZZ0[duration & 0x1FFF], L[duration >> 13])
        else:
            p.append(i64(duration))
        if tags:  # field 10
            n = len(tags)
            p.append(_TAGS_HEAD[n] if n < 15 else _list_head(b"\x19", n))
            # (same loop as for Log.fields below: a helper call per list costs 5%)
            for k, v in tags.items():
                try:
                    e = keys[k]
                except KeyError:
                    e = _key_entry(k)
                t = type(v)
                if t is str:
                    b = v.encode()
                    n = len(b)
                    p += (e[2], L[n] if n < 0x800 else varint(n), b, b"\x00")
                elif t is bool:
                    p.append(e[v])
                elif t is int and 0 <= v < 0x400:
                    p += (e[3], SMALL_LONG_STOP[v])
                elif t is float:
                    p += (e[4], _DOUBLE_STOP(v))
                elif t is int and I64_MIN <= v <= I64_MAX:
                    p += (e[3], i64(v), b"\x00")
                else:
                    p.append(_slow_tag(k, v))
        if logs:  # field 11
            n = len(logs)
            if n < 15:
                p.append((_LOGS_HEAD if tags else _LOGS_HEAD_NO_TAGS)[n])
            else:
                p.append(_list_head(b"\x19" if tags else b"\x29", n) + b"\x16")
            for ts, fields in logs:
                # Log: timestamp (field 1, header already written), fields (field 2), STOP
                if 0x20000000000 <= ts < 0x10000000000000:
                    p += (ZZ0[ts & 0x1FFF], C[ts >> 13 & 0x3FFF], C[ts >> 27 & 0x3FFF],
                          L[ts >> 41])
                else:
                    p.append(i64(ts))
                n = len(fields)
                p.append(_TAGS_HEAD[n] if n < 15 else _list_head(b"\x19", n))
                for k, v in fields.items():
                    try:
                        e = keys[k]
                    except KeyError:
                        e = _key_entry(k)
                    t = type(v)
                    if t is str:
                        b = v.encode()
                        n = len(b)
                        p += (e[2], L[n] if n < 0x800 else varint(n), b, b"\x00")
                    elif t is bool:
                        p.append(e[v])
                    elif t is int and 0 <= v < 0x400:
                        p += (e[3], SMALL_LONG_STOP[v])
                    elif t is float:
                        p += (e[4], _DOUBLE_STOP(v))
                    elif t is int and I64_MIN <= v <= I64_MAX:
                        p += (e[3], i64(v), b"\x00")
                    else:
                        p.append(_slow_tag(k, v))
                p.append(b"\x00\x16")  # STOP of this Log, timestamp header of the next
            p[-1] = b"\x00\x00"  # STOP of the last Log, STOP of the Span
        else:
            p.append(b"\x00")
        return b"".join(p)
    except UnicodeEncodeError:  # a lone surrogate: re-encode a cleaned copy
        return encode_span(sanitize(record))


def encode_process(service_name: str, tags: Mapping[str, Any]) -> bytes:
    """A complete compact ``Process`` struct: serviceName, tags when non-empty, STOP."""
    raw = utf8(service_name if type(service_name) is str else to_str(service_name))
    p = [b"\x18", varint(len(raw)), raw]
    if tags:
        p.append(_list_head(b"\x19", len(tags)))
        p += [_slow_tag(k, v) for k, v in tags.items()]
    p.append(b"\x00")
    return b"".join(p)


def _batch_parts(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> List[bytes]:
    # Batch: process (field 1, struct), spans (field 2, list<struct>), seqNo (field 3, i64),
    # stats (field 4, ClientStats of three i64), STOP.
    p = [b"\x1c", process, _list_head(b"\x19", len(spans))]
    p += spans
    full_queue, too_large, failed = stats
    p += (b"\x16", i64(seq_no), b"\x1c\x16", i64(full_queue), b"\x16", i64(too_large),
          b"\x16", i64(failed), b"\x00\x00")
    return p


def encode_batch(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> bytes:
    """A bare compact ``Batch`` struct."""
    return b"".join(_batch_parts(process, spans, seq_no, stats))


# 0x82 protocol id, 0x81 = version 1 | ONEWAY (4) << 5, varint seqid 1, varint name length,
# name; then emitBatch_args field 1 (delta 1, STRUCT): the Batch.
_EMIT_BATCH_HEAD = b"\x82\x81\x01\x09emitBatch\x1c"


def encode_emit_batch(
    process: bytes, spans: Sequence[bytes], seq_no: int, stats: Tuple[int, int, int]
) -> bytes:
    """A complete ``Agent.emitBatch`` oneway message in the compact protocol."""
    p = _batch_parts(process, spans, seq_no, stats)
    p[0] = _EMIT_BATCH_HEAD + p[0]
    p.append(b"\x00")  # STOP of emitBatch_args
    return b"".join(p)


# An emitBatch message besides the process and the spans, at its largest: header with the
# args field 14, process field header 1, spans field header 1 + long list header 1 + varint32
# size 5, seqNo 1 + 10, stats 1 + 3 * (1 + 10) + STOP 1, STOPs of Batch and args 2.
_EMIT_BATCH_FIXED = len(_EMIT_BATCH_HEAD) + 1 + 7 + 11 + 35 + 2


def emit_batch_overhead(process: bytes) -> int:
    """Upper bound of an emitBatch message's bytes other than its spans."""
    return _EMIT_BATCH_FIXED + len(process)


def _accelerated() -> Tuple[Any, str]:
    """The C encoder (``opentracing_sls._speedups``) when it was built, else this module's.

    ``OPENTRACING_SLS_PURE_PYTHON=1`` forces the Python encoder. The C one emits the same
    bytes and hands every shape it does not take itself to the Python one.
    """
    speedups = load("_speedups")
    if speedups is None:
        return encode_span, "python"
    speedups.set_fallback(encode_span)
    return speedups.encode_span_compact, "c"


#: ``encode_span`` of the backend in use, and its name (``"c"`` or ``"python"``).
fast_encode_span, BACKEND = _accelerated()


class CompactSpanEncoder:
    """Jaeger Thrift compact protocol, as jaeger-agent expects on UDP port 6831."""

    protocol = "compact"
    # staticmethods: calling them on an instance creates no bound method (hot path)
    encode_process = staticmethod(encode_process)
    encode_span = staticmethod(fast_encode_span)
    emit_batch_overhead = staticmethod(emit_batch_overhead)
    encode_emit_batch = staticmethod(encode_emit_batch)
    encode_batch = staticmethod(encode_batch)

    def __repr__(self) -> str:
        return "CompactSpanEncoder()"
