"""A span as an SLS log in the layout of "Jaeger on Aliyun Log Service" (``aliyun-log-jaeger``).

The reference system's writer (``plugin/storage/aliyunlog/spanstore/converter.go``) and its
reader (``reader.go``) fix the keys, their order and their formats; existing queries,
dashboards and that system's Jaeger query service read what is written here
(``shared/reference/sls.md`` §9.1):

=====================  =========================================================================
key                    value
=====================  =========================================================================
``traceID``            ``%016x``, or 32 hex digits when the high 64 bits are set
``spanID``             ``%x``, not padded
``parentSpanID``       ``%x``; a root span has ``0``
``operationName``      as is
``flags``              decimal
``startTime``          microseconds since the epoch, decimal
``duration``           microseconds, decimal
``process.serviceName``  as is
``tags.<key>``         one per span tag: strings as is, bools ``true``/``false``, int64 decimal,
                       float64 ``%.10g`` (Go's ``FormatFloat(v, 'g', 10, 64)``), binary lower hex
                       of at most 256 bytes followed by ``...`` when longer
``process.tags.<key>`` one per process tag, same formats
``reference``          only when the span has references: JSON
                       ``[{"refType":"child-of","traceID":"…","spanID":"…"}]``
``logs``               only when the span has logs: JSON ``[{"timestamp":"<RFC 3339, UTC>",
                       "fields":[{"key","vType","vStr"|"vNum"|"vBlob"}]}]`` as Jaeger's
                       ``model.Log`` marshals it (bool and float64 in ``vNum``, binary base64
                       in ``vBlob``, zero values left out)
=====================  =========================================================================

The log's time is the span's start (seconds, plus the nanosecond part the SDK always sends).
These are pure functions over the shim's span model; :mod:`.sls_encode` produces the same
contents as protobuf bytes, with caches, for the sink.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import List, Sequence, Tuple

from .model import BINARY, BOOL, DOUBLE, FOLLOWS_FROM, LONG, STRING, Log, Reference, Span, Tag

TRACE_ID = "traceID"
SPAN_ID = "spanID"
PARENT_SPAN_ID = "parentSpanID"
OPERATION_NAME = "operationName"
FLAGS = "flags"
START_TIME = "startTime"
DURATION = "duration"
SERVICE_NAME = "process.serviceName"
TAGS_PREFIX = "tags."
PROCESS_TAGS_PREFIX = "process.tags."
REFERENCE = "reference"
LOGS = "logs"

#: The reference's ``binary`` tags show at most this many bytes (then ``...``).
BINARY_SHOWN = 256
#: Jaeger's ``ValueType`` names, by the model's tag type.
_VTYPES = ("string", "float64", "bool", "int64", "binary")
_REF_TYPES = ("child-of", "follows-from")

Contents = List[Tuple[str, str]]


def trace_id_text(trace_id: int) -> str:
    return "%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id


def span_id_text(span_id: int) -> str:
    return "%x" % span_id


def float_text(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', 10, 64)``; Python's ``%g`` differs only for NaN and
    the infinities."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "%.10g" % value


def tag_text(tag: Tag) -> str:
    """A tag value as the reference stores it (Jaeger's ``KeyValue.AsString``)."""
    kind, value = tag.type, tag.value
    if kind == STRING:
        return value
    if kind == BOOL:
        return "true" if value else "false"
    if kind == LONG:
        return str(value)
    if kind == DOUBLE:
        return float_text(value)
    if kind == BINARY:
        shown = bytes(value[:BINARY_SHOWN]).hex()
        return shown + "..." if len(value) > BINARY_SHOWN else shown
    return str(value)


def rfc3339_utc(micros: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction are dropped."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + ("%06d" % fraction).rstrip("0")
    return text + "Z"


def field_json(tag: Tag) -> str:
    """One log field as Jaeger's ``model.KeyValue`` JSON (``omitempty`` drops zero values)."""
    kind, value = tag.type, tag.value
    out = {"key": tag.key, "vType": _VTYPES[kind] if 0 <= kind < 5 else "string"}
    if kind == BOOL:
        number = 1 if value else 0
    elif kind == LONG:
        number = value
    elif kind == DOUBLE:
        # Jaeger keeps the IEEE 754 bits of a float64 in the int64 vNum.
        number = struct.unpack("<q", struct.pack("<d", value))[0]
    elif kind == BINARY:
        number = 0
        if value:
            out["vBlob"] = base64.b64encode(bytes(value)).decode("ascii")
    else:
        number = 0
        text = value if kind == STRING else str(value)
        if text:
            out["vStr"] = text
    if number:
        out["vNum"] = number
    return _dumps(out)


def logs_json(logs: Sequence[Log]) -> str:
    return "[%s]" % ",".join(
        '{"timestamp":"%s","fields":[%s]}' % (rfc3339_utc(log.timestamp),
                                               ",".join(field_json(f) for f in log.fields))
        for log in logs)


def references_json(references: Sequence[Reference]) -> str:
    return _dumps([{"refType": _REF_TYPES[1 if ref.ref_type == FOLLOWS_FROM else 0],
                    "traceID": trace_id_text(ref.trace_id),
                    "spanID": span_id_text(ref.span_id)} for ref in references])


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def span_contents(span: Span) -> Contents:
    """The (key, value) contents of the span's log, in the reference's order."""
    contents: Contents = [
        (TRACE_ID, trace_id_text(span.trace_id)),
        (SPAN_ID, span_id_text(span.span_id)),
        (PARENT_SPAN_ID, span_id_text(span.parent_id)),
        (OPERATION_NAME, span.operation_name),
        (FLAGS, str(span.flags)),
        (START_TIME, str(span.start_time)),
        (DURATION, str(span.duration)),
        (SERVICE_NAME, span.process.service_name),
    ]
    contents += [(TAGS_PREFIX + tag.key, tag_text(tag)) for tag in span.tags]
    contents += [(PROCESS_TAGS_PREFIX + tag.key, tag_text(tag)) for tag in span.process.tags]
    if span.references:
        contents.append((REFERENCE, references_json(span.references)))
    if span.logs:
        contents.append((LOGS, logs_json(span.logs)))
    return contents


def log_time(span: Span) -> Tuple[int, int]:
    """The log's ``Time`` (seconds) and ``Time_ns`` (nanosecond part): the span's start."""
    seconds, micros = divmod(max(0, span.start_time), 1_000_000)
    return seconds, micros * 1000
