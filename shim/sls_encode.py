"""Spans as SLS ``LogGroup`` protobuf bytes, fast, with the service's size limits applied.

The contents are those of :func:`.sls_schema.span_contents`; this module writes them straight
into protobuf wire format (``log_logs_raw.proto``, ``shared/reference/sls.md`` §4) instead of
filling the SDK's generated classes field by field, which costs several times more per span
(measured: ``LogItem`` + ``put_logs`` about 40 µs a span, this encoder a few µs). The encoded
bytes are checked against the SDK's own protobuf classes in the tests.

Wire format, for reading the code::

    LogGroup: 1 Logs (repeated Log), 3 Topic, 4 Source
    Log:      1 Time (uint32), 2 Contents (repeated Content), 4 Time_ns (fixed32)
    Content:  1 Key (string), 2 Value (bytes)

Repeated parts are cached by their model value: the process (service name and process tags
are the same for every span of a process), tags (``http.method=GET`` recurs constantly),
operation names and log fields. Each cache is bounded and simply cleared when full.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, List, Optional, Tuple

from .model import Process, Span, Tag
from .sls_schema import (
    DURATION,
    FLAGS,
    LOGS,
    OPERATION_NAME,
    PARENT_SPAN_ID,
    PROCESS_TAGS_PREFIX,
    REFERENCE,
    SERVICE_NAME,
    SPAN_ID,
    START_TIME,
    TAGS_PREFIX,
    TRACE_ID,
    field_json,
    references_json,
    rfc3339_utc,
    tag_text,
)

#: Service limits (``sls.md`` §8): a value is at most 1 MiB, a key at most 128 bytes, a
#: LogGroup at most 4096 logs and 5 MB.
MAX_VALUE_BYTES = 1024 * 1024
MAX_KEY_BYTES = 128
MAX_GROUP_LOGS = 4096
MAX_GROUP_BYTES = 5 * 1024 * 1024
#: The reference writer's LogGroup ``Source`` and ``Topic``.
SOURCE = "0.0.0.0"
TOPIC = ""
_CACHE_LIMIT = 20_000

_VARINT = [bytes([i]) for i in range(128)]
_pack_time_ns = struct.Struct("<BI").pack


def varint(value: int) -> bytes:
    if value < 128:
        return _VARINT[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def group_tail(topic: str = TOPIC, source: str = SOURCE) -> bytes:
    """The LogGroup fields after the logs: Topic (always present, as the SDK sends it) and
    Source."""
    t, s = topic.encode(), source.encode()
    return b"\x1a" + varint(len(t)) + t + b"\x22" + varint(len(s)) + s


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, cut at a character boundary."""
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


class LogEncoder:
    """Encodes model spans; one per writer thread (the caches are not locked)."""

    def __init__(self, max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self.max_value_bytes = max_value_bytes
        self._keys: Dict[str, bytes] = {}
        self._process_tags: Dict[Tag, bytes] = {}
        self._processes: Dict[Process, Tuple[bytes, bytes, int]] = {}
        self._operations: Dict[str, bytes] = {}
        self._fields: Dict[Tuple[Tag, ...], bytes] = {}
        self._second = -1
        self._second_text = b""
        self._time_second = -1
        self._time_bytes = b""
        self._span_tags: Dict[Tag, bytes] = {}
        self._last_process: Optional[Process] = None
        self._last_parts: Tuple[bytes, bytes, int] = (b"", b"", 0)
        self._fixed = {name: self._key(name) for name in (REFERENCE, LOGS)}
        self._logs_prefix = self._fixed[LOGS]
        #: Values cut to ``max_value_bytes`` so far (the caller reads and resets it).
        self.truncated = 0

    # -- pieces ----------------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        """``0x0a len key 0x12``: a Content's Key field and the tag byte of its Value."""
        prefix = self._keys.get(key)
        if prefix is None:
            raw = truncate_utf8(key.encode("utf-8"), MAX_KEY_BYTES)
            prefix = b"\x0a" + varint(len(raw)) + raw + b"\x12"
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            self._keys[key] = prefix
        return prefix

    def _content(self, prefix: bytes, value: str) -> Tuple[bytes, int]:
        """A framed Content (LogGroup.Log field 2) and 1 when the value had to be cut."""
        return self._content_bytes(prefix, value.encode("utf-8", "replace"))

    def _content_bytes(self, prefix: bytes, raw: bytes) -> Tuple[bytes, int]:
        cut = 0
        if len(raw) > self.max_value_bytes:
            raw, cut = truncate_utf8(raw, self.max_value_bytes), 1
        n = len(raw)
        length = _VARINT[n] if n < 128 else varint(n)
        size = len(prefix) + len(length) + n
        if size < 128:
            head = b"\x12" + _VARINT[size]
        elif size < 16384:
            head = bytes((0x12, (size & 0x7F) | 0x80, size >> 7))
        else:
            head = b"\x12" + varint(size)
        return head + prefix + length + raw, cut

    def _tag(self, cache: Dict[Tag, bytes], prefix: str, tag: Tag) -> Tuple[bytes, int]:
        """A tag's Content, from ``cache`` (one per key prefix) when seen before."""
        try:
            cached = cache.get(tag)
        except TypeError:  # an unhashable value (never from the decoders): no caching
            return self._content(self._key(prefix + tag.key), tag_text(tag))
        if cached is not None:
            return cached, 0
        encoded, cut = self._content(self._key(prefix + tag.key), tag_text(tag))
        if not cut:  # truncations are counted per span, so those are never cached
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[tag] = encoded
        return encoded, cut

    def _process(self, process: Process) -> Tuple[bytes, bytes, int]:
        cached = self._processes.get(process)
        if cached is None:
            service, cut = self._content(self._key(SERVICE_NAME), process.service_name)
            parts = []
            for tag in process.tags:
                encoded, c = self._tag(self._process_tags, PROCESS_TAGS_PREFIX, tag)
                parts.append(encoded)
                cut += c
            cached = (service, b"".join(parts), cut)
            if len(self._processes) >= 1000:
                self._processes.clear()
            self._processes[process] = cached
        return cached

    def _operation(self, name: str) -> Tuple[bytes, int]:
        encoded = self._operations.get(name)
        if encoded is None:
            encoded, cut = self._content(self._key(OPERATION_NAME), name)
            if cut:
                return encoded, cut
            if len(self._operations) >= _CACHE_LIMIT:
                self._operations.clear()
            self._operations[name] = encoded
        return encoded, 0

    def _timestamp(self, micros: int) -> bytes:
        seconds = micros // 1_000_000
        if seconds != self._second:
            self._second = seconds
            self._second_text = rfc3339_utc(seconds * 1_000_000)[:-1].encode("ascii")
        fraction = micros - seconds * 1_000_000
        if fraction:
            return b"%s.%sZ" % (self._second_text, (b"%06d" % fraction).rstrip(b"0"))
        return self._second_text + b"Z"

    def _logs_json(self, span: Span) -> bytes:
        """The ``logs`` value as UTF-8 JSON. A log's fields are cached as one JSON fragment
        (the same fields recur: ``event=cache-miss``); only the timestamp is new."""
        cache = self._fields
        out = []
        for log in span.logs:
            try:
                fields = cache.get(log.fields)
            except TypeError:  # an unhashable value: no caching
                fields = None
                cache = {}
            if fields is None:
                fields = ",".join(field_json(f) for f in log.fields).encode("utf-8", "replace")
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[log.fields] = fields
            out.append(b'{"timestamp":"%s","fields":[%s]}' % (self._timestamp(log.timestamp),
                                                              fields))
        return b"[" + b",".join(out) + b"]"

    # -- a span ----------------------------------------------------------------------------------

    def encode(self, span: Span) -> bytes:
        """The span's Log, framed as LogGroup field 1; values cut to the limit are added to
        :attr:`truncated`."""
        trace_id = span.trace_id
        tid = b"%032x" % trace_id if trace_id >> 64 else b"%016x" % trace_id
        sid = b"%x" % span.span_id
        pid = b"%x" % span.parent_id
        flags = b"%d" % span.flags
        start = span.start_time if span.start_time > 0 else 0
        started = b"%d" % start
        duration = b"%d" % span.duration
        lt, ls, lp, lf, lst, ld = (len(tid), len(sid), len(pid), len(flags), len(started),
                                   len(duration))
        if lf > 100 or lst > 100 or ld > 100:  # absurd numbers: every length must be one byte
            raise ValueError("span field out of range")
        seconds = start // 1_000_000
        if seconds != self._time_second:
            self._time_second = seconds
            self._time_bytes = b"\x08" + varint(seconds & 0xFFFFFFFF)
        # Log field 1 (Time), then the contents as three formatting operations (_template).
        parts = [self._time_bytes,
                 _IDS % (lt + _IDS_SIZE[0], lt, tid, ls + _IDS_SIZE[1], ls, sid,
                         lp + _IDS_SIZE[2], lp, pid)]
        operation = self._operations.get(span.operation_name)
        if operation is None:
            name = span.operation_name.encode("utf-8", "replace")
            if len(name) < 100:
                operation = _OPERATION % (len(name) + _OPERATION_SIZE, len(name), name)
                if len(self._operations) >= _CACHE_LIMIT:
                    self._operations.clear()
                self._operations[span.operation_name] = operation
            else:
                operation, cut = self._operation(span.operation_name)
                self.truncated += cut
        parts.append(operation)
        parts.append(_NUMBERS % (lf + _NUMBERS_SIZE[0], lf, flags, lst + _NUMBERS_SIZE[1], lst,
                                 started, ld + _NUMBERS_SIZE[2], ld, duration))
        process = span.process
        if process is not self._last_process:
            self._last_parts = self._process(process)
            self._last_process = process
        service, process_tags, cut = self._last_parts
        parts.append(service)
        tags = self._span_tags
        for t in span.tags:
            try:
                encoded = tags.get(t)
            except TypeError:  # an unhashable value (never from the decoders)
                encoded = None
            if encoded is None:
                encoded, c = self._tag(tags, TAGS_PREFIX, t)
                cut += c
            parts.append(encoded)
        parts.append(process_tags)
        if span.references:
            encoded, c = self._content(self._fixed[REFERENCE], references_json(span.references))
            parts.append(encoded)
            cut += c
        if span.logs:
            raw = self._logs_json(span)
            n = len(raw)
            size = _LOGS_PREFIX_SIZE + n + (1 if n < 128 else 2)
            if n < 128 or size >= 16384 or n > self.max_value_bytes:
                encoded, c = self._content_bytes(self._logs_prefix, raw)
                cut += c
            else:  # the usual size: two-byte lengths, written directly
                encoded = b"".join((bytes((0x12, (size & 0x7F) | 0x80, size >> 7)),
                                    self._logs_prefix, bytes(((n & 0x7F) | 0x80, n >> 7)), raw))
            parts.append(encoded)
        # Log field 4, Time_ns (fixed32): the start's sub-second part.
        parts.append(_pack_time_ns(0x25, (start - seconds * 1_000_000) * 1000))
        body = b"".join(parts)
        if cut:
            self.truncated += cut
        n = len(body)
        if n < 128:
            return b"\x0a" + _VARINT[n] + body
        if n < 16384:
            return bytes((10, (n & 0x7F) | 0x80, n >> 7)) + body
        return b"\x0a" + varint(n) + body


def _template(keys: Tuple[str, ...]) -> Tuple[bytes, Tuple[int, ...]]:
    """A bytes %-template for Contents whose values are under 100 bytes (ids, numbers, short
    operation names: every length is one byte, written with ``%c``), and per key the Content
    size minus the value's length."""
    template = b""
    sizes = []
    for key in keys:
        raw = key.encode()
        prefix = b"\x0a" + _VARINT[len(raw)] + raw + b"\x12"
        sizes.append(len(prefix) + 1)
        template += b"\x12%c" + prefix.replace(b"%", b"%%") + b"%c%b"
    return template, tuple(sizes)


_IDS, _IDS_SIZE = _template((TRACE_ID, SPAN_ID, PARENT_SPAN_ID))
_OPERATION, (_OPERATION_SIZE,) = _template((OPERATION_NAME,))
_LOGS_PREFIX_SIZE = len(LOGS) + 3  # 0x0a, key length, key, 0x12
_NUMBERS, _NUMBERS_SIZE = _template((FLAGS, START_TIME, DURATION))


class GroupBuilder:
    """Accumulates encoded logs into LogGroups of at most ``max_logs`` logs and ``max_bytes``
    raw bytes; ``on_group(data, count, truncated)`` receives each sealed group."""

    def __init__(self, on_group: Callable[[bytes, int], None], max_logs: int = MAX_GROUP_LOGS,
                 max_bytes: int = MAX_GROUP_BYTES, tail: Optional[bytes] = None) -> None:
        self.on_group = on_group
        self.max_logs = max_logs
        self.tail = group_tail() if tail is None else tail
        self.max_bytes = max_bytes - len(self.tail)
        self._logs: List[bytes] = []
        self._size = 0
        self.opened_at = 0.0  # monotonic time of the first log of the open group

    def __len__(self) -> int:
        return len(self._logs)

    def add(self, log: bytes, now: float) -> bool:
        """Adds one log; False when it alone exceeds the group byte limit (never sent)."""
        size = len(log)
        if size > self.max_bytes:
            return False
        if self._logs and (self._size + size > self.max_bytes
                           or len(self._logs) >= self.max_logs):
            self.seal()
        if not self._logs:
            self.opened_at = now
        self._logs.append(log)
        self._size += size
        if len(self._logs) >= self.max_logs:
            self.seal()
        return True

    def seal(self) -> None:
        if self._logs:
            logs, self._logs, self._size = self._logs, [], 0
            self.on_group(b"".join(logs) + self.tail, len(logs))


def split_group(data: bytes) -> List[bytes]:
    """The framed logs (``0x0a len Log``) of a LogGroup body, without its tail."""
    logs = []
    pos, end = 0, len(data)
    while pos < end and data[pos] == 0x0A:
        start = pos
        pos += 1
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        pos += length
        logs.append(data[start:pos])
    return logs
