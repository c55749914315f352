"""Jaeger Thrift **compact** protocol decoder (UDP port 6831), hand-written for speed.

Wire rules (jaeger-wire.md section 3; Apache Thrift ``TCompactProtocol``): field header
``(id delta << 4) | ctype`` (delta 0: a zigzag i16 id follows); i16/i32/i64 are zigzag
varints, lengths and the message seqid plain varints; a bool field's value is its ctype
(1 true, 2 false) but a bool list element is one byte; doubles are 8 bytes little-endian;
list header ``(size << 4) | etype``, size 15 meaning "varint size follows".

Speed: every Jaeger writer (jaeger-client's Apache Thrift code, the Go and Java clients,
thriftpy2, our encoder) puts fields in id order and omits unset optionals, so :func:`_spans`
expects that layout and checks each header byte against the one it expects. Anything else
(unknown fields, another order, odd varints) re-reads that one span with the generic,
table-driven reader (:func:`_read_struct`), which skips what it does not know.

- Random 64-bit ids are 9-10 byte varints; their bytes are unpacked as 16-bit lanes and
  looked up in :data:`_LANE` (see :func:`_lane_tables`): no loop over bytes.
- ``18 <len> <key> 15 <vType> <value header>``, the start of a Tag, is looked up as one
  bytes slice (:data:`_KEYS`); ``18 <len> <name> 25 <flags> 16``, operationName to
  startTime, likewise (:data:`_HEADS`). Repeated tag values reuse their Tag objects.
- Tuples are built with ``tuple.__new__`` (the NamedTuple ``__new__`` is a Python call).

Robustness: the input is copied with 16 zero bytes of padding, so fixed-size reads near the
end cannot fail; the padding reads as STOP, and the final position is checked against the
real length. List and string sizes are checked against the bytes left before anything is
allocated, varints stop at 10 bytes, and nesting is capped at :data:`MAX_DEPTH`.
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
_U4 = struct.Struct("<4H").unpack_from  # 8 varint bytes as 4 lanes
_U9 = struct.Struct("<B4H").unpack_from  # a field header + 8 varint bytes
_U10 = struct.Struct("<B4HB").unpack_from  # ... + the 9th byte
_D = struct.Struct("<d").unpack_from
_BAD = 1 << 80


def _lane_tables() -> Tuple[List[int], List[int]]:
    """``_LANE[x]``: the 14 bits of two varint bytes read as a little-endian u16 ``x`` when
    both have the continuation bit, else ``_BAD``; ``_LANE_LAST``: the same when only the
    first one has it (the varint ends with the second byte). A ``_BAD`` lane makes the
    assembled value >= 2^80, so one comparison checks all the continuation bits.
    Memory: about 1.6 MB (two lists of 65536 references, 16384 shared ints)."""
    values = list(range(0x4000))
    cont = [_BAD] * 0x10000
    last = [_BAD] * 0x10000
    for high in range(0x80):
        for low in range(0x80):
            value = values[low | high << 7]
            cont[0x8080 | high << 8 | low] = value
            last[0x0080 | high << 8 | low] = value
    return cont, last


_LANE, _LANE_LAST = _lane_tables()
#: list header byte -> size, for the short form of a list of structs (or an empty list of
#: any type); -1 for anything else (long form, other element types): the generic path
_STRUCT_LIST_SIZE = tuple(h >> 4 if h >> 4 < 15 and (h & 0x0F == 0x0C or h >> 4 == 0) else -1
                          for h in range(256))

# Bounded caches (cleared when full; losing an entry only costs speed). Tag prefixes:
# ``18 <len> <key> 15 <vType> <value header>`` -> [code, key, value cache], code from
# _CANONICAL; bools hold the whole Tag instead of the key. STRING and LONG keys cache up to
# VALUES_PER_KEY Tags by value (span.kind, http.method, status codes... repeat); a key
# with more distinct values (URLs, ids) stops caching: at most ~1024 * 16 small Tags.
_KEYS: Dict[bytes, List[Any]] = {}
_KEYS_LIMIT = 1024
#: (vType zigzag byte, value field header) -> code; codes 2/3 are BOOL true/false
_CANONICAL = {(0, 0x18): 0, (2, 0x27): 1, (4, 0x31): 2, (4, 0x32): 3, (6, 0x46): 4, (8, 0x58): 5}
#: operation and service names: raw bytes -> str
_NAMES: Dict[bytes, str] = {}
#: ``18 <len> <operationName> 25 <flags> 16`` -> (operation name, flags)
_HEADS: Dict[bytes, Tuple[str, int]] = {}
_CACHE_LIMIT = 4096


class _Slow(Exception):
    """The fast path met a layout it does not handle: re-read the span generically."""


_SLOW = _Slow()

# --- primitives -------------------------------------------------------------------------------


def _uvarint(buf: bytes, pos: int) -> Tuple[int, int]:
    """Unsigned varint at ``pos``: (value mod 2^64, next position); at most 10 bytes."""
    z = 0
    for shift in range(0, 70, 7):
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return z & _M64, pos
    raise DecodeError("varint longer than 10 bytes")


def _r_i64(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    z, pos = _uvarint(buf, pos)
    return (z >> 1) ^ -(z & 1), pos


def _r_id(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    """An i64 id as unsigned 64 bits (``v & 0xFFFFFFFFFFFFFFFF``)."""
    z, pos = _uvarint(buf, pos)
    return z >> 1 ^ _M64 if z & 1 else z >> 1, pos


def _r_i32(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    z, pos = _uvarint(buf, pos)
    z &= 0xFFFFFFFF  # as the Go reader does: an i32 is the low 32 bits of the varint
    return (z >> 1) ^ -(z & 1), pos


def _r_double(buf: bytes, pos: int, end: int) -> Tuple[float, int]:
    return _D(buf, pos)[0], pos + 8


def _r_bytes(buf: bytes, pos: int, end: int) -> Tuple[bytes, int]:
    n, pos = _uvarint(buf, pos)
    if n > end - pos:
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


def _field(buf: bytes, pos: int, fid: int) -> Tuple[int, int, int]:
    """Field header: (ctype, field id, next position); ctype 0 is STOP."""
    h = buf[pos]
    if h == 0:
        return 0, fid, pos + 1
    if h >> 4:
        return h & 0x0F, fid + (h >> 4), pos + 1
    z, pos = _uvarint(buf, pos + 1)  # long form: a zigzag i16 id follows
    return h & 0x0F, (z >> 1) ^ -(z & 1), pos


def _list_head(buf: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    """List/set header: (element ctype, size, next position), size checked."""
    h = buf[pos]
    n = h >> 4
    pos += 1
    if n == 15:
        n, pos = _uvarint(buf, pos)
    if n > end - pos:  # every element takes at least one byte
        raise DecodeError("list of %d elements past the end of the data" % n)
    return h & 0x0F, n, pos


def _skip(buf: bytes, pos: int, ct: int, end: int, depth: int, elem: bool = False) -> int:
    """Position after a value of compact type ``ct`` (``elem``: a container element)."""
    if ct == 1 or ct == 2:  # bool: the field header holds it; an element is one byte
        return pos + 1 if elem else pos
    if ct == 3:
        return pos + 1
    if 4 <= ct <= 6:
        return _uvarint(buf, pos)[1]
    if ct == 7:
        return pos + 8
    if ct == 8:
        return _r_bytes(buf, pos, end)[1]
    if ct == 13:  # UUID (Thrift 0.19+)
        return pos + 16
    if depth >= MAX_DEPTH:
        raise DecodeError("nesting deeper than %d" % MAX_DEPTH)
    if ct == 9 or ct == 10:  # list, set
        et, n, pos = _list_head(buf, pos, end)
        for _ in range(n):
            pos = _skip(buf, pos, et, end, depth + 1, True)
        return pos
    if ct == 11:  # map: varint size, then (key ctype << 4 | value ctype) unless empty
        n, pos = _uvarint(buf, pos)
        if n == 0:
            return pos
        if 2 * n > end - pos:
            raise DecodeError("map of %d entries past the end of the data" % n)
        kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        for _ in range(n):
            pos = _skip(buf, pos, kt, end, depth + 1, True)
            pos = _skip(buf, pos, vt, end, depth + 1, True)
        return pos
    if ct == 12:
        fid = 0
        while True:
            ct, fid, pos = _field(buf, pos, fid)
            if ct == 0:
                return pos
            pos = _skip(buf, pos, ct, end, depth + 1)
    raise DecodeError("unknown compact type %d" % ct)


# --- generic structs: any field order, unknown fields skipped, the last duplicate wins ----

_Reader = Callable[[bytes, int, int], Tuple[Any, int]]
_Spec = Dict[int, Tuple[int, Optional[_Reader]]]


def _read_struct(buf: bytes, pos: int, end: int, spec: _Spec) -> Tuple[Dict[int, Any], int]:
    """The fields ``spec`` knows, by id: ``spec[id] = (ctype, reader)``; a field with
    another type is skipped as unknown (as Apache Thrift does). A bool field (ctype 1 in
    the spec, reader None) matches both bool ctypes."""
    values: Dict[int, Any] = {}
    fid = 0
    while True:
        ct, fid, pos = _field(buf, pos, fid)
        if ct == 0:
            return values, pos
        want = spec.get(fid)
        if want is None or not (want[0] == ct or want[0] == 1 and ct == 2):
            pos = _skip(buf, pos, ct, end, 1)
        elif want[1] is None:
            values[fid] = ct == 1
        else:
            values[fid], pos = want[1](buf, pos, end)


def _struct_list(buf: bytes, pos: int, end: int, read: _Reader) -> Tuple[tuple, int]:
    et, n, pos = _list_head(buf, pos, end)
    if n and et != 12:
        raise DecodeError("list of ctype %d where structs were expected" % et)
    out = []
    for _ in range(n):
        item, pos = read(buf, pos, end)
        out.append(item)
    return tuple(out), pos


def _r_tags(buf: bytes, pos: int, end: int) -> Tuple[Tuple[Tag, ...], int]:
    et, n, pos = _list_head(buf, pos, end)
    if n and et != 12:
        raise DecodeError("tag list of ctype %d" % et)
    return _tags(buf, pos, n, end)


def _r_refs(buf: bytes, pos: int, end: int) -> Tuple[tuple, int]:
    return _struct_list(buf, pos, end, _read_ref)


def _r_logs(buf: bytes, pos: int, end: int) -> Tuple[tuple, int]:
    return _struct_list(buf, pos, end, _read_log)


_TAG_DEFAULTS = ("", 0.0, False, 0, b"")
# Tag: key, vType, then vStr, vDouble, vBool, vLong, vBinary (fields 3-7 = TagType + 3)
_TAG_SPEC: _Spec = {1: (8, _r_text), 2: (5, _r_i32), 3: (8, _r_text), 4: (7, _r_double),
                    5: (1, None), 6: (6, _r_i64), 7: (8, _r_bytes)}
_LOG_SPEC: _Spec = {1: (6, _r_i64), 2: (9, _r_tags)}
_REF_SPEC: _Spec = {1: (5, _r_i32), 2: (6, _r_id), 3: (6, _r_id), 4: (6, _r_id)}
_SPAN_SPEC: _Spec = {1: (6, _r_id), 2: (6, _r_id), 3: (6, _r_id), 4: (6, _r_id),
                     5: (8, _r_name), 6: (9, _r_refs), 7: (5, _r_i32), 8: (6, _r_i64),
                     9: (6, _r_i64), 10: (9, _r_tags), 11: (9, _r_logs)}
_PROCESS_SPEC: _Spec = {1: (8, _r_name), 2: (9, _r_tags)}
_STATS_SPEC: _Spec = {1: (6, _r_i64), 2: (6, _r_i64), 3: (6, _r_i64)}


def _read_tag(buf: bytes, pos: int, end: int) -> Tuple[Tag, int]:
    start = pos
    v, pos = _read_struct(buf, pos, end, _TAG_SPEC)
    required(v, (1, 2), "tag")
    _remember_key(buf, start)
    return _tag_of_fields(v[1], v[2], v.get(v[2] + 3)), pos


def _tag_of_fields(key: str, vtype: int, value: Any) -> Tag:
    """The Tag of a decoded Thrift Tag whose field selected by ``vtype`` holds ``value``
    (None when missing). A missing value is its type's zero value, as in the Go collector;
    an unknown vType becomes a STRING tag saying so, so one odd tag does not cost the
    whole batch."""
    if 0 <= vtype <= 4:
        return Tag(key, vtype, _TAG_DEFAULTS[vtype] if value is None else value)
    return Tag(key, STRING, "unknown vType %d" % vtype)


def _remember_key(buf: bytes, pos: int) -> None:
    """Caches the prefix of a canonically laid out tag for :func:`_tags`. The entry comes
    from the prefix bytes alone: the struct just read may have had duplicate fields."""
    n = buf[pos + 1]
    if buf[pos] != 0x18 or n >= 0x80 or buf[pos + n + 2] != 0x15:
        return
    code = _CANONICAL.get((buf[pos + n + 3], buf[pos + n + 4]))
    if code is None:
        return
    key = buf[pos + 2:pos + 2 + n].decode("utf-8", "replace")
    if len(_KEYS) >= _KEYS_LIMIT:
        _KEYS.clear()
    if code == 2 or code == 3:
        entry: List[Any] = [code, Tag(key, BOOL, code == 2), None]
    else:
        entry = [code, key, {} if code == 0 or code == 4 else None]
    _KEYS[buf[pos:pos + n + 5]] = entry


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
        # One lookup checks the key's header, length and bytes, the vType header and value,
        # and the value's field header; misses take the generic reader (which caches).
        k = buf[pos + 1]
        e = keys.get(buf[pos:pos + k + 5])
        if e is not None:
            code, tag, values = e  # tag: the key, or the whole Tag for bools
            p = pos + k + 5
            if code == 0:  # STRING: varint length, UTF-8
                m = buf[p]
                if m < 0x80:
                    raw = buf[p + 1:p + 1 + m]
                    p += 1 + m
                else:
                    raw, p = _r_bytes(buf, p, end)
                if values is None:
                    tag = _new(Tag, (tag, STRING, raw.decode("utf-8", "replace")))
                else:
                    tag = values.get(raw) or value_tag(e, values, raw,
                                                        raw.decode("utf-8", "replace"))
            elif code == 4:  # LONG: zigzag varint
                z = buf[p]
                if z < 0x80:
                    p += 1
                elif buf[p + 1] < 0x80:
                    z = (z & 0x7F) | buf[p + 1] << 7
                    p += 2
                else:
                    z, p = _uvarint(buf, p)
                if values is None:
                    tag = _new(Tag, (tag, LONG, ~(z >> 1) if z & 1 else z >> 1))
                else:
                    tag = values.get(z) or value_tag(e, values, z,
                                                      ~(z >> 1) if z & 1 else z >> 1)
            elif code == 1:  # DOUBLE: 8 bytes little-endian
                tag = _new(Tag, (tag, DOUBLE, _D(buf, p)[0]))
                p += 8
            elif code == 5:
                raw, p = _r_bytes(buf, p, end)
                tag = _new(Tag, (tag, BINARY, raw))
            if buf[p] == 0:  # STOP right after the value: the canonical layout
                append(tag)
                pos = p + 1
                continue
        tag, pos = _read_tag(buf, pos, end)
        append(tag)
    return tuple(out), pos


def _span_head(buf: bytes, pos: int, end: int) -> Tuple[str, tuple, int, int]:
    """operationName, references and flags of a span whose head is not in ``_HEADS``:
    (name, refs, flags, position of startTime's varint). Caches canonical heads (no
    references, one-byte flags)."""
    if buf[pos] != 0x18:
        raise _SLOW
    op, p = _r_name(buf, pos + 1, end)
    refs: tuple = ()
    if buf[p] == 0x19:  # references (field 6); flags is then field 7 at delta 1
        refs, p = _r_refs(buf, p + 1, end)
        if buf[p] != 0x15:
            raise _SLOW
    elif buf[p] != 0x25:  # flags (field 7) at delta 2
        raise _SLOW
    flags, p = _r_i32(buf, p + 1, end)
    if buf[p] != 0x16:
        raise _SLOW
    if not refs and buf[pos + 1] < 0x80 and p == pos + buf[pos + 1] + 4:
        if len(_HEADS) >= _CACHE_LIMIT:
            _HEADS.clear()
        _HEADS[buf[pos:p + 1]] = (op, flags)
    return op, refs, flags, p + 1


def _long_list_head(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    """A list of 15 or more structs: ``FC`` + varint size -> (size, next position)."""
    if buf[pos] != 0xFC:
        raise _SLOW
    n, pos = _uvarint(buf, pos + 1)
    if n > end - pos:
        raise DecodeError("list of %d elements past the end of the data" % n)
    return n, pos


def _spans(buf: bytes, pos: int, n: int, end: int, process: Any) -> Tuple[List[Span], int]:
    """``n`` Span structs from ``pos`` (after the list header), all given ``process``."""
    heads = _HEADS
    lane = _LANE
    lane_last = _LANE_LAST
    u4 = _U4
    u9 = _U9
    u10 = _U10
    spans: List[Span] = []
    append = spans.append
    for _ in range(n):
        start = pos
        try:
            # Fields 1-4, i64 ids with header 0x16 (delta 1, I64). A random id is a 9-10
            # byte varint: the header, 4 lanes for _LANE and the 9th byte are one unpack;
            # a set bit 63 means that a 10th byte follows (it can only be 1). A shorter
            # varint has a _BAD lane and takes the loop. A zero id is the byte 0.
            h, a, b, c, d, e = u10(buf, pos)
            if h != 0x16:
                raise _SLOW
            z = ((e << 14 | lane[d]) << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
            if z < 0x8000000000000000:
                pos += 10
            elif z <= _M64 and buf[pos + 10] == 1:
                pos += 11
            else:
                z, pos = _uvarint(buf, pos + 1)
            lo = z >> 1 ^ _M64 if z & 1 else z >> 1
            if buf[pos + 1] == 0 and buf[pos] == 0x16:  # traceIdHigh of a 64-bit trace id
                hi = 0
                pos += 2
            else:  # a 128-bit trace id (Envoy's, Istio's)
                h, a, b, c, d, e = u10(buf, pos)
                if h != 0x16:
                    raise _SLOW
                z = ((e << 14 | lane[d]) << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
                if z < 0x8000000000000000:
                    pos += 10
                elif z <= _M64 and buf[pos + 10] == 1:
                    pos += 11
                else:
                    z, pos = _uvarint(buf, pos + 1)
                hi = z >> 1 ^ _M64 if z & 1 else z >> 1
            h, a, b, c, d, e = u10(buf, pos)
            if h != 0x16:
                raise _SLOW
            z = ((e << 14 | lane[d]) << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
            if z < 0x8000000000000000:
                pos += 10
            elif z <= _M64 and buf[pos + 10] == 1:
                pos += 11
            else:
                z, pos = _uvarint(buf, pos + 1)
            sid = z >> 1 ^ _M64 if z & 1 else z >> 1
            if buf[pos + 1] == 0 and buf[pos] == 0x16:  # parentSpanId of a root span
                pid = 0
                pos += 2
            else:
                h, a, b, c, d, e = u10(buf, pos)
                if h != 0x16:
                    raise _SLOW
                z = ((e << 14 | lane[d]) << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
                if z < 0x8000000000000000:
                    pos += 10
                elif z <= _M64 and buf[pos + 10] == 1:
                    pos += 11
                else:
                    z, pos = _uvarint(buf, pos + 1)
                pid = z >> 1 ^ _M64 if z & 1 else z >> 1
            # operationName (field 5) to startTime's header: one lookup of
            # ``18 <len> <name> 25 <flags> 16`` when there are no references (field 6)
            k = buf[pos + 1] + 5
            head = heads.get(buf[pos:pos + k])
            if head is None:
                op, refs, flags, pos = _span_head(buf, pos, end)
            else:
                op, flags = head
                refs = ()
                pos += k
            # startTime (field 8): epoch microseconds from 1970-01-26 to 2112 are 8-byte
            # varints: seven continued bytes, then the last one (_LANE_LAST)
            a, b, c, d = u4(buf, pos)
            z = (lane_last[d] << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
            if z < 0x100000000000000:
                pos += 8
            else:
                z, pos = _uvarint(buf, pos)
            start_time = ~(z >> 1) if z & 1 else z >> 1
            # duration (field 9): 1-3 bytes below 2^20 us (1 s)
            if buf[pos] != 0x16:
                raise _SLOW
            z = buf[pos + 1]
            if z < 0x80:
                pos += 2
            else:
                c = buf[pos + 2]
                if c < 0x80:
                    z = (z & 0x7F) | c << 7
                    pos += 3
                elif buf[pos + 3] < 0x80:
                    z = (z & 0x7F) | (c & 0x7F) << 7 | buf[pos + 3] << 14
                    pos += 4
                else:
                    z, pos = _uvarint(buf, pos + 1)
            duration = ~(z >> 1) if z & 1 else z >> 1
            # tags (field 10) and logs (field 11): optional, maybe empty; the list header
            # must be the short form of a list of structs (any type if empty)
            h = buf[pos]
            if h == 0x19:
                c = _STRUCT_LIST_SIZE[buf[pos + 1]]
                if c >= 0:
                    pos += 2
                else:
                    c, pos = _long_list_head(buf, pos + 1, end)
                tags, pos = _tags(buf, pos, c, end)
                h = buf[pos]
                if h == 0x19:
                    h = 0x29  # logs right after tags, as if right after duration
            else:
                tags = ()
            if h == 0x29:
                n = _STRUCT_LIST_SIZE[buf[pos + 1]]
                if n >= 0:
                    pos += 2
                else:
                    n, pos = _long_list_head(buf, pos + 1, end)
                logs = []
                for _ in range(n):
                    # Log: timestamp (field 1, i64), fields (field 2, list<Tag>), STOP
                    p = pos
                    h, a, b, c, d = u9(buf, pos)
                    if h == 0x16:
                        z = (lane_last[d] << 14 | lane[c]) << 28 | (lane[b] << 14 | lane[a])
                        if z < 0x100000000000000:
                            pos += 9
                        else:
                            z, pos = _uvarint(buf, pos + 1)
                        if buf[pos] == 0x19:
                            n = _STRUCT_LIST_SIZE[buf[pos + 1]]
                            if n >= 0:
                                pos += 2
                            else:
                                n, pos = _long_list_head(buf, pos + 1, end)
                            fields, pos = _tags(buf, pos, n, end)
                            if buf[pos] == 0:
                                logs.append(_new(Log, (~(z >> 1) if z & 1 else z >> 1, fields)))
                                pos += 1
                                continue
                    log, pos = _read_log(buf, p, end)
                    logs.append(log)
                logs = tuple(logs)
                h = buf[pos]
            else:
                logs = ()
            if h:  # not STOP: more fields (from a newer IDL?)
                raise _SLOW
            pos += 1
            append(_new(Span, (hi << 64 | lo if hi else lo, sid, pid, op, flags, start_time,
                               duration, tags, logs, refs, process)))
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
    fid = 0
    while True:
        ct, fid, pos = _field(buf, pos, fid)
        if ct == 0:
            break
        if fid == 1 and ct == 12:
            process, pos = _read_process(buf, pos, end)
        elif fid == 2 and ct == 9:
            et, n, pos = _list_head(buf, pos, end)
            if n and et != 12:
                raise DecodeError("span list of ctype %d" % et)
            spans_first = process is None
            spans, pos = _spans(buf, pos, n, end, process)
        elif fid == 3 and ct == 6:
            seq_no, pos = _r_i64(buf, pos, end)
        elif fid == 4 and ct == 12:
            stats, pos = _read_stats(buf, pos, end)
        else:
            pos = _skip(buf, pos, ct, end, 1)
    if process is None:
        raise DecodeError("batch without a process")
    if spans is None:
        raise DecodeError("batch without spans")
    if spans_first:  # the process came after the spans (no known writer does that)
        spans = [s._replace(process=process) for s in spans]
    return spans, process, seq_no, stats, pos


def _message_head(buf: bytes, end: int) -> int:
    """Position after the header of a compact ``emitBatch`` message."""
    if buf[0] != 0x82:
        raise DecodeError("not a compact protocol message")
    if buf[1] & 0x1F != 1:
        raise DecodeError("compact protocol version %d" % (buf[1] & 0x1F))
    if buf[1] >> 5 not in (1, 4):  # ONEWAY as sent; CALL tolerated (processors allow it)
        raise DecodeError("message type %d is not a call" % (buf[1] >> 5))
    pos = _uvarint(buf, 2)[1]  # seqid
    name, pos = _r_bytes(buf, pos, end)
    if name != b"emitBatch":
        raise DecodeError("message %r is not emitBatch" % name[:40])
    return pos


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
            fid = 0
            while True:  # emitBatch_args: the Batch is field 1
                ct, fid, pos = _field(buf, pos, fid)
                if ct == 0:
                    break
                if fid == 1 and ct == 12:
                    batch = _read_batch(buf, pos, end)
                    pos = batch[4]
                else:
                    pos = _skip(buf, pos, ct, end, 1)
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
