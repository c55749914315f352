"""SLS log contents in the "Jaeger on Aliyun Log Service" layout -> model spans (the read
side of :mod:`.sls_schema`; ``shared/reference/sls.md`` §9.1).

As the reference reader does, ``tags.<key>`` and ``process.tags.<key>`` come back as string
tags (the layout keeps no types), a missing ``reference`` with a non-zero ``parentSpanID``
means one ``CHILD_OF`` parent, and times are microseconds. Log fields keep their types (the
``logs`` JSON has them). Accepted variations of older writers: unpadded trace ids (tag 0.0.3),
upper-case ``vType`` names, log timestamps in any zone with up to nanoseconds.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
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
)

_VTYPES = {"string": STRING, "float64": DOUBLE, "bool": BOOL, "int64": LONG, "binary": BINARY}
_REF_TYPES = {"child-of": CHILD_OF, "child_of": CHILD_OF, "follows-from": FOLLOWS_FROM,
              "follows_from": FOLLOWS_FROM}
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z",
                      re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SpanContentsError(ValueError):
    """A log that is not a span of the layout (missing or malformed key)."""


def _hex(contents: Mapping[str, str], key: str, bits: int) -> int:
    text = contents.get(key)
    if text is None:
        raise SpanContentsError("no %s" % key)
    try:
        value = int(text, 16)
    except ValueError:
        raise SpanContentsError("%s is not hex: %r" % (key, text)) from None
    if not 0 <= value < 1 << bits:
        raise SpanContentsError("%s out of range: %r" % (key, text))
    return value


def _int(contents: Mapping[str, str], key: str, default: Optional[int] = None) -> int:
    text = contents.get(key)
    if text is None:
        if default is None:
            raise SpanContentsError("no %s" % key)
        return default
    try:
        return int(text)
    except ValueError:
        raise SpanContentsError("%s is not an integer: %r" % (key, text)) from None


def rfc3339_micros(text: str) -> int:
    """µs since the epoch of an RFC 3339 time (Go's RFC3339Nano; fractions are truncated)."""
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError("not an RFC 3339 time: %r" % text)
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone.upper() == "Z" else zone))
    whole = (stamp - _EPOCH) // _SECOND
    return whole * 1_000_000 + int(((fraction or "") + "000000")[:6])


_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def _field(raw: Mapping[str, Any]) -> Tag:
    """A Jaeger ``model.KeyValue`` JSON object (zero values may be left out)."""
    key = str(raw.get("key", ""))
    kind = _VTYPES.get(str(raw.get("vType", "string")).lower(), STRING)
    if kind == STRING:
        return Tag(key, STRING, str(raw.get("vStr", "")))
    if kind == BINARY:
        return Tag(key, BINARY, base64.b64decode(raw.get("vBlob", "") or ""))
    number = int(raw.get("vNum", 0) or 0)
    if kind == BOOL:
        return Tag(key, BOOL, number != 0)
    if kind == DOUBLE:
        # The IEEE 754 bits of the float64, kept in an int64.
        return Tag(key, DOUBLE, struct.unpack("<d", struct.pack("<q", number))[0])
    return Tag(key, LONG, number)


def parse_logs(text: str) -> Tuple[Log, ...]:
    try:
        raw = json.loads(text)
        return tuple(Log(rfc3339_micros(str(item["timestamp"])),
                         tuple(_field(field) for field in item.get("fields") or ()))
                     for item in raw or ())
    except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
        raise SpanContentsError("malformed logs: %s" % exc) from None


def parse_references(text: str) -> Tuple[Reference, ...]:
    try:
        raw = json.loads(text)
        return tuple(Reference(_REF_TYPES.get(str(item.get("refType", "")).lower(), CHILD_OF),
                               int(str(item["traceID"]), 16), int(str(item["spanID"]), 16))
                     for item in raw or ())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SpanContentsError("malformed reference: %s" % exc) from None


def span_from_contents(contents: Mapping[str, str]) -> Span:
    """The span of one log's contents; SpanContentsError when it is not a span."""
    trace_id = _hex(contents, TRACE_ID, 128)
    parent_id = _hex(contents, PARENT_SPAN_ID, 64) if PARENT_SPAN_ID in contents else 0
    tags: List[Tag] = []
    process_tags: List[Tag] = []
    for key, value in contents.items():
        # process.tags.* is tested first: "tags." is not its prefix, but be explicit.
        if key.startswith(PROCESS_TAGS_PREFIX):
            process_tags.append(Tag(key[len(PROCESS_TAGS_PREFIX):], STRING, value))
        elif key.startswith(TAGS_PREFIX):
            tags.append(Tag(key[len(TAGS_PREFIX):], STRING, value))
    logs = parse_logs(contents[LOGS]) if contents.get(LOGS) else ()
    references = parse_references(contents[REFERENCE]) if contents.get(REFERENCE) else ()
    service = contents.get(SERVICE_NAME)
    if service is None:
        raise SpanContentsError("no %s" % SERVICE_NAME)
    return Span(trace_id, _hex(contents, SPAN_ID, 64), parent_id,
                contents.get(OPERATION_NAME, ""), _int(contents, FLAGS, 0),
                _int(contents, START_TIME), _int(contents, DURATION), tuple(tags), logs,
                references, Process(service, tuple(process_tags)))


def spans_by_trace(rows: List[Dict[str, str]]) -> Tuple[Dict[int, List[Span]], int]:
    """Spans of the logs grouped by trace id, each trace in start order, a span delivered
    twice (at-least-once delivery) kept once; and the number of logs that were no span."""
    traces: Dict[int, List[Span]] = {}
    seen = set()
    bad = 0
    for row in rows:
        try:
            span = span_from_contents(row)
        except SpanContentsError:
            bad += 1
            continue
        key = (span.trace_id, span.span_id, span.process.service_name,
               contents_kind(row))
        if key in seen:
            continue
        seen.add(key)
        traces.setdefault(span.trace_id, []).append(span)
    for spans in traces.values():
        spans.sort(key=lambda span: span.start_time)
    return traces, bad


def contents_kind(contents: Mapping[str, str]) -> str:
    return contents.get(TAGS_PREFIX + "span.kind", "")
