"""Jaeger Thrift **binary** protocol decoder (UDP port 6832; the body of the collector's
``POST /api/traces``), hand-written for speed.

Wire rules (jaeger-wire.md section 3): big-endian throughout; field header = type byte +
i16 id (STOP is a lone 0); string/binary = i32 length + bytes; list/set = element type +
i32 size; map = key type + value type + i32 size; bool = one byte (non-zero is true, as in
Apache Thrift). Message header: strict ``80 01 00 <type>``, i32 name length, name, i32
seqid; or the old non-strict form: i32 name length, name, type byte, i32 seqid.

Speed: as in :mod:`.thrift_compact`, the usual layout (fields in id order, unset optionals
omitted) is read with precompiled ``struct`` formats that take several fields at once,
checking the field headers they cover; any other layout re-reads that one span with the
generic, table-driven reader. ``0b 0001 <len> <key> 08 0002 <vType> <value header>`` (a
Tag's start) and ``0b 0005 <len> <operationName> 08 0007 <flags> 0a 0008`` are looked up as
bytes slices in bounded caches.

Robustness: 16 zero bytes of padding (fixed-size reads near the end cannot fail; padding
reads as STOP; the final position is checked against the real length), sizes checked
against the bytes left before anything is allocated, nesting capped at :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

from .model import (
    BINARY,
    BOOL,
    DOUBLE,
    LONG,
    STRING,
    DecodeError,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from .thrift_model import (
    log_of,
    process_of,
    reference_of,
    required,
    span_of,
    stats_of,
    value_tag,
)
from .thrift_model import (
    new as _new,
)

#: Deepest nesting of unknown structs/containers that is skipped.
MAX_DEPTH = 32
_PAD = bytes(16)
_M64 = 0xFFFFFFFFFFFFFFFF
_I32 = struct.Struct(">i").unpack_from
_I64 = struct.Struct(">q").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_DBL = struct.Struct(">d").unpack_from
_FIELD = struct.Struct(">bh").unpack_from
_LIST = struct.Struct(">bi").unpack_from
_MAP = struct.Struct(">bbi").unpack_from
# Span fields 1-4: (type, id, u64) x 4; ids read unsigned directly
_IDS = struct.Struct(">BHQBHQBHQBHQ").unpack_from
# startTime's value, then duration (field 9)
_TIMES = struct.Struct(">qBHq").unpack_from
# a list<struct> field header: type 15, id, element type 12, size
_LIST_FIELD = struct.Struct(">BHBi").unpack_from
# Log: timestamp (field 1, i64), then the header of fields (field 2, list<Tag>)
_LOG_HEAD = struct.Struct(">BHqBHBi").unpack_from

# Bounded caches, as in thrift_compact. Tag prefix -> [code, key, value cache]; bools
# hold the pair (Tag false, Tag true) instead of the key.
_KEYS: Dict[bytes, List[Any]] = {}
_KEYS_LIMIT = 1024
#: (vType, value field header bytes) -> code
_CANONICAL = {0: (b"\x0b\x00\x03", 0), 1: (b"\x04\x00\x04", 1), 2: (b"\x02\x00\x05", 2),
              3: (b"\x0a\x00\x06", 4), 4: (b"\x0b\x00\x07", 5)}
_NAMES: Dict[bytes, str] = {}
#: ``0b 0005 <len> <operationName> 08 0007 <flags> 0a 0008`` -> (name, flags)
_HEADS: Dict[bytes, Tuple[str, int]] = {}
_CACHE_LIMIT = 4096


class _Slow(Exception):
    """The fast path met a layout it does not handle: re-read the span generically."""


_SLOW = _Slow()

# --- primitives -------------------------------------------------------------------------------


def _r_i64(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    return _I64(buf, pos)[0], pos + 8


def _r_id(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    """An i64 id as unsigned 64 bits: the same 8 bytes read as ``Q``."""
    return _U64(buf, pos)[0], pos + 8


def _r_i32(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    return _I32(buf, pos)[0], pos + 4


def _r_double(buf: bytes, pos: int, end: int) -> Tuple[float, int]:
    return _DBL(buf, pos)[0], pos + 8


def _r_bool(buf: bytes, pos: int, end: int) -> Tuple[bool, int]:
    return buf[pos] != 0, pos + 1


def _r_bytes(buf: bytes, pos: int, end: int) -> Tuple[bytes, int]:
    n = _I32(buf, pos)[0]
    pos += 4
    if not 0 <= n <= end - pos:
        raise DecodeError("string of %d bytes past the end of the data" % n)
    return buf[pos:pos + n], pos + n


def _r_text(buf: bytes, pos: int, end: int) -> Tuple[str, int]:
    raw, pos = _r_bytes(buf, pos, end)
    return raw.decode("utf-8", "replace"), pos


def _r_name(buf: bytes, pos: int, end: int) -> Tuple[str, int]:
    raw, pos = _r_bytes(buf, pos, end)
    return _NAMES.get(raw) or _name(raw), pos


def _name(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if len(_NAMES) >= _CACHE_LIMIT:
        _NAMES.clear()
    _NAMES[raw] = text
    return text


def _list_head(buf: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    """List/set header: (element type, size, next position), size checked."""
    et, n = _LIST(buf, pos)
    pos += 5
    if not 0 <= n <= end - pos:  # every element takes at least one byte
        raise DecodeError("list of %d elements past the end of the data" % n)
    return et, n, pos


# Sizes of the fixed-size types: BOOL, BYTE, DOUBLE, I16, I32, I64, UUID (Thrift 0.19+)
_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}


def _skip(buf: bytes, pos: int, t: int, end: int, depth: int) -> int:
    """Position after a value of binary type ``t``."""
    size = _FIXED.get(t)
    if size is not None:
        return pos + size
    if t == 11:
        return _r_bytes(buf, pos, end)[1]
    if depth >= MAX_DEPTH:
        raise DecodeError("nesting deeper than %d" % MAX_DEPTH)
    if t == 12:
        while True:
            t = buf[pos]
            if t == 0:
                return pos + 1
            pos = _skip(buf, pos + 3, t, end, depth + 1)
    if t == 14 or t == 15:  # set, list
        et, n, pos = _list_head(buf, pos, end)
        size = _FIXED.get(et)
        if size is not None:
            return pos + n * size
        for _ in range(n):
            pos = _skip(buf, pos, et, end, depth + 1)
        return pos
    if t == 13:
        kt, vt, n = _MAP(buf, pos)
        pos += 6
        if not 0 <= 2 * n <= end - pos:
            raise DecodeError("map of %d entries past the end of the data" % n)
        for _ in range(n):
            pos = _skip(buf, pos, kt, end, depth + 1)
            pos = _skip(buf, pos, vt, end, depth + 1)
        return pos
    raise DecodeError("unknown binary type %d" % t)


# --- generic structs: any field order, unknown fields skipped, the last duplicate wins ----

_Reader = Callable[[bytes, int, int], Tuple[Any, int]]
_Spec = Dict[int, Tuple[int, _Reader]]


def _read_struct(buf: bytes, pos: int, end: int, spec: _Spec) -> Tuple[Dict[int, Any], int]:
    """The fields ``spec`` knows, by id: ``spec[id] = (type, reader)``; a field with
    another type is skipped as unknown (as Apache Thrift does)."""
    values: Dict[int, Any] = {}
    while True:
        t = buf[pos]
        if t == 0:
            return values, pos + 1
        fid = _FIELD(buf, pos)[1]
        want = spec.get(fid)
        if want is None or want[0] != t:
            pos = _skip(buf, pos + 3, t, end, 1)
        else:
            values[fid], pos = want[1](buf, pos + 3, end)


def _struct_list(buf: bytes, pos: int, end: int, read: _Reader) -> Tuple[tuple, int]:
    et, n, pos = _list_head(buf, pos, end)
    if n and et != 12:
        raise DecodeError("list of type %d where structs were expected" % et)
    out = []
    for _ in range(n):
        item, pos = read(buf, pos, end)
        out.append(item)
    return tuple(out), pos


def _r_tags(buf: bytes, pos: int, end: int) -> Tuple[Tuple[Tag, ...], int]:
    et, n, pos = _list_head(buf, pos, end)
    if n and et != 12:
        raise DecodeError("tag list of type %d" % et)
    return _tags(buf, pos, n, end)


def _r_refs(buf: bytes, pos: int, end: int) -> Tuple[tuple, int]:
    return _struct_list(buf, pos, end, _read_ref)


def _r_logs(buf: bytes, pos: int, end: int) -> Tuple[tuple, int]:
    return _struct_list(buf, pos, end, _read_log)


_TAG_DEFAULTS = ("", 0.0, False, 0, b"")
# Tag: key, vType, then vStr, vDouble, vBool, vLong, vBinary (fields 3-7 = TagType + 3)
_TAG_SPEC: _Spec = {1: (11, _r_text), 2: (8, _r_i32), 3: (11, _r_text), 4: (4, _r_double),
                    5: (2, _r_bool), 6: (10, _r_i64), 7: (11, _r_bytes)}
_LOG_SPEC: _Spec = {1: (10, _r_i64), 2: (15, _r_tags)}
_REF_SPEC: _Spec = {1: (8, _r_i32), 2: (10, _r_id), 3: (10, _r_id), 4: (10, _r_id)}
_SPAN_SPEC: _Spec = {1: (10, _r_id), 2: (10, _r_id), 3: (10, _r_id), 4: (10, _r_id),
                     5: (11, _r_name), 6: (15, _r_refs), 7: (8, _r_i32), 8: (10, _r_i64),
                     9: (10, _r_i64), 10: (15, _r_tags), 11: (15, _r_logs)}
_PROCESS_SPEC: _Spec = {1: (11, _r_name), 2: (15, _r_tags)}
_STATS_SPEC: _Spec = {1: (10, _r_i64), 2: (10, _r_i64), 3: (10, _r_i64)}


def _read_tag(buf: bytes, pos: int, end: int) -> Tuple[Tag, int]:
    start = pos
    v, pos = _read_struct(buf, pos, end, _TAG_SPEC)
    required(v, (1, 2), "tag")
    _remember_key(buf, start)
    vtype = v[2]
    if 0 <= vtype <= 4:  # a missing value is its type's zero value (as in the Go collector)
        value = v.get(vtype + 3)
        return Tag(v[1], vtype, _TAG_DEFAULTS[vtype] if value is None else value), pos
    return Tag(v[1], STRING, "unknown vType %d" % vtype), pos


def _remember_key(buf: bytes, pos: int) -> None:
    """Caches the prefix of a canonically laid out tag for :func:`_tags` (built from the
    prefix bytes alone: the struct just read may have had duplicate fields)."""
    if buf[pos:pos + 6] != b"\x0b\x00\x01\x00\x00\x00":
        return
    n = buf[pos + 6]
    p = pos + 7 + n
    if buf[p:p + 6] != b"\x08\x00\x02\x00\x00\x00" or buf[p + 6] not in _CANONICAL:
        return
    header, code = _CANONICAL[buf[p + 6]]
    if buf[p + 7:p + 10] != header:
        return
    key = buf[pos + 7:p].decode("utf-8", "replace")
    if len(_KEYS) >= _KEYS_LIMIT:
        _KEYS.clear()
    if code == 2:
        entry: List[Any] = [code, (Tag(key, BOOL, False), Tag(key, BOOL, True)), None]
    else:
        entry = [code, key, {} if code == 0 or code == 4 else None]
    _KEYS[buf[pos:p + 10]] = entry


def _read_log(buf: bytes, pos: int, end: int) -> Tuple[Log, int]:
    v, pos = _read_struct(buf, pos, end, _LOG_SPEC)
    return log_of(v), pos


def _read_ref(buf: bytes, pos: int, end: int) -> Tuple[Reference, int]:
    v, pos = _read_struct(buf, pos, end, _REF_SPEC)
    return reference_of(v), pos


def _read_span(buf: bytes, pos: int, end: int, process: Any) -> Tuple[Span, int]:
    v, pos = _read_struct(buf, pos, end, _SPAN_SPEC)
    return span_of(v, process), pos


def _read_process(buf: bytes, pos: int, end: int) -> Tuple[Process, int]:
    v, pos = _read_struct(buf, pos, end, _PROCESS_SPEC)
    return process_of(v), pos


def _read_stats(buf: bytes, pos: int, end: int) -> Tuple[Tuple[int, int, int], int]:
    v, pos = _read_struct(buf, pos, end, _STATS_SPEC)
    return stats_of(v), pos


# --- the fast path ----------------------------------------------------------------------------


def _tags(buf: bytes, pos: int, n: int, end: int) -> Tuple[Tuple[Tag, ...], int]:
    """``n`` Tag structs from ``pos`` (after the list header)."""
    keys = _KEYS
    out = []
    append = out.append
    for _ in range(n):
        # the key's length is one byte in every cached prefix (whose 4 length bytes are
        # part of the slice, so a longer key cannot match)
        k = buf[pos + 6]
        e = keys.get(buf[pos:pos + k + 17])
        if e is not None:
            code, tag, values = e  # tag: the key, or the two bool Tags
            p = pos + k + 17
            if code == 0 or code == 5:  # STRING / BINARY: i32 length, bytes
                m = _I32(buf, p)[0]
                if not 0 <= m <= end - p:
                    raise DecodeError("string of %d bytes past the end of the data" % m)
                raw = buf[p + 4:p + 4 + m]
                p += 4 + m
                if code == 5:
                    tag = _new(Tag, (tag, BINARY, raw))
                elif values is None:
                    tag = _new(Tag, (tag, STRING, raw.decode("utf-8", "replace")))
                else:
                    tag = values.get(raw) or value_tag(e, values, raw,
                                                        raw.decode("utf-8", "replace"))
            elif code == 4:  # LONG: 8 bytes, cached by the bytes
                raw = buf[p:p + 8]
                if values is None:
                    tag = _new(Tag, (tag, LONG, _I64(buf, p)[0]))
                else:
                    tag = values.get(raw) or value_tag(e, values, raw, _I64(buf, p)[0])
                p += 8
            elif code == 2:  # BOOL: one byte, non-zero is true
                tag = tag[buf[p] != 0]
                p += 1
            else:  # DOUBLE
                tag = _new(Tag, (tag, DOUBLE, _DBL(buf, p)[0]))
                p += 8
            if buf[p] == 0:  # STOP right after the value: the canonical layout
                append(tag)
                pos = p + 1
                continue
        tag, pos = _read_tag(buf, pos, end)
        append(tag)
    return tuple(out), pos


def _span_head(buf: bytes, pos: int, end: int) -> Tuple[str, tuple, int, int]:
    """operationName, references and flags of a span whose head is not in ``_HEADS``:
    (name, refs, flags, position of startTime's value). Caches canonical heads."""
    if buf[pos:pos + 3] != b"\x0b\x00\x05":
        raise _SLOW
    op, p = _r_name(buf, pos + 3, end)
    refs: tuple = ()
    if buf[p:p + 3] == b"\x0f\x00\x06":
        refs, p = _r_refs(buf, p + 3, end)
    if buf[p:p + 3] != b"\x08\x00\x07" or buf[p + 7:p + 10] != b"\x0a\x00\x08":
        raise _SLOW
    flags = _I32(buf, p + 3)[0]
    if not refs and p - pos - 7 < 0x100:
        if len(_HEADS) >= _CACHE_LIMIT:
            _HEADS.clear()
        _HEADS[buf[pos:p + 10]] = (op, flags)
    return op, refs, flags, p + 10


def _spans(buf: bytes, pos: int, n: int, end: int, process: Any) -> Tuple[List[Span], int]:
    """``n`` Span structs from ``pos`` (after the list header), all given ``process``."""
    heads = _HEADS
    spans: List[Span] = []
    append = spans.append
    for _ in range(n):
        start = pos
        try:
            # fields 1-4: the ids, headers 0a 0001 .. 0a 0004
            t1, f1, lo, t2, f2, hi, t3, f3, sid, t4, f4, pid = _IDS(buf, pos)
            if (t1 != 10 or f1 != 1 or t2 != 10 or f2 != 2 or t3 != 10 or f3 != 3
                    or t4 != 10 or f4 != 4):
                raise _SLOW
            pos += 44
            # operationName (field 5) to startTime's header, one lookup without references
            head = heads.get(buf[pos:pos + buf[pos + 6] + 17])
            if head is None:
                op, refs, flags, pos = _span_head(buf, pos, end)
            else:
                op, flags = head
                refs = ()
                pos += buf[pos + 6] + 17
            start_time, t, f, duration = _TIMES(buf, pos)
            if t != 10 or f != 9:
                raise _SLOW
            pos += 19
            # tags (field 10), logs (field 11): optional lists of structs
            t, f, et, m = _LIST_FIELD(buf, pos)
            if t == 15 and f == 10:
                if et != 12 and m or not 0 <= m <= end - pos:
                    raise _SLOW
                tags, pos = _tags(buf, pos + 8, m, end)
                t, f, et, m = _LIST_FIELD(buf, pos)
            else:
                tags = ()
            if t == 15 and f == 11:
                if et != 12 and m or not 0 <= m <= end - pos:
                    raise _SLOW
                pos += 8
                logs = []
                for _ in range(m):
                    t, f, ts, t2, f2, et, k = _LOG_HEAD(buf, pos)
                    if (t == 10 and f == 1 and t2 == 15 and f2 == 2 and (et == 12 or not k)
                            and 0 <= k <= end - pos):
                        fields, p = _tags(buf, pos + 19, k, end)
                        if buf[p] == 0:
                            logs.append(_new(Log, (ts, fields)))
                            pos = p + 1
                            continue
                    log, pos = _read_log(buf, pos, end)
                    logs.append(log)
                logs = tuple(logs)
                t = buf[pos]
            else:
                logs = ()
            if t:  # not STOP: more fields (from a newer IDL?)
                raise _SLOW
            pos += 1
            append(_new(Span, (hi << 64 | lo, sid, pid, op, flags, start_time, duration, tags,
                               logs, refs, process)))
        except (_Slow, IndexError, struct.error):
            # (an over-long read can only come from malformed input, which the generic
            # reader reports properly)
            span, pos = _read_span(buf, start, end, process)
            append(span)
    return spans, pos


# --- batch and message ----------------------------------------------------------------------

Stats = Tuple[int, int, int]


def _read_batch(buf: bytes, pos: int, end: int) -> Tuple[List[Span], Process, Optional[int],
                                                         Optional[Stats], int]:
    """A Batch struct (generic reader; its spans list uses the fast path)."""
    process: Optional[Process] = None
    spans: Optional[List[Span]] = None
    seq_no: Optional[int] = None
    stats: Optional[Stats] = None
    spans_first = False
    while True:
        t = buf[pos]
        if t == 0:
            pos += 1
            break
        fid = _FIELD(buf, pos)[1]
        pos += 3
        if fid == 1 and t == 12:
            process, pos = _read_process(buf, pos, end)
        elif fid == 2 and t == 15:
            et, n, pos = _list_head(buf, pos, end)
            if n and et != 12:
                raise DecodeError("span list of type %d" % et)
            spans_first = process is None
            spans, pos = _spans(buf, pos, n, end, process)
        elif fid == 3 and t == 10:
            seq_no, pos = _r_i64(buf, pos, end)
        elif fid == 4 and t == 12:
            stats, pos = _read_stats(buf, pos, end)
        else:
            pos = _skip(buf, pos, t, end, 1)
    if process is None:
        raise DecodeError("batch without a process")
    if spans is None:
        raise DecodeError("batch without spans")
    if spans_first:  # the process came after the spans (no known writer does that)
        spans = [s._replace(process=process) for s in spans]
    return spans, process, seq_no, stats, pos


def _message_head(buf: bytes, end: int) -> int:
    """Position after the header of a binary ``emitBatch`` message, strict or not."""
    size = _I32(buf, 0)[0]
    if size < 0:  # strict: 0x8001 version, then the message type in the low byte
        if size & 0xFFFF0000 != 0x80010000:
            raise DecodeError("binary protocol version 0x%08x" % (size & 0xFFFFFFFF))
        mtype = size & 0xFF
        name, pos = _r_bytes(buf, 4, end)
    else:  # old non-strict: name first, then the type byte
        name, pos = _r_bytes(buf, 0, end)
        mtype = buf[pos]
        pos += 1
    if mtype != 4 and mtype != 1:  # ONEWAY as sent; CALL tolerated (processors allow it)
        raise DecodeError("message type %d is not a call" % mtype)
    if name != b"emitBatch":
        raise DecodeError("message %r is not emitBatch" % name[:40])
    return pos + 4  # seqid


def decode(data: Any, message: bool) -> Tuple[List[Span], Process, Optional[int],
                                               Optional[Stats]]:
    """An ``Agent.emitBatch`` message (``message=True``) or a bare ``Batch`` ->
    (spans, process, seqNo, stats). Raises :class:`DecodeError` and nothing else."""
    try:
        if type(data) is not bytes:
            data = bytes(memoryview(data))  # bytes-like only: bytes(10**9) would allocate
        end = len(data)
        buf = data + _PAD
        batch = None
        if message:
            pos = _message_head(buf, end)
            while True:  # emitBatch_args: the Batch is field 1
                t = buf[pos]
                if t == 0:
                    pos += 1
                    break
                if t == 12 and _FIELD(buf, pos)[1] == 1:
                    batch = _read_batch(buf, pos + 3, end)
                    pos = batch[4]
                else:
                    pos = _skip(buf, pos + 3, t, end, 1)
            if batch is None:
                raise DecodeError("emitBatch without a batch")
        else:
            batch = _read_batch(buf, 0, end)
            pos = batch[4]
        if pos > end:
            raise DecodeError("truncated")
        if pos < end:
            raise DecodeError("%d bytes after the end" % (end - pos))
        return batch[0], batch[1], batch[2], batch[3]
    except DecodeError:
        raise
    except (IndexError, struct.error):
        raise DecodeError("truncated") from None
    except RecursionError:
        raise DecodeError("nested too deeply") from None
    except Exception as exc:  # total by contract: anything else is malformed input too
        raise DecodeError("malformed (%s)" % type(exc).__name__) from None
