"""Model spans as the Jaeger query API's JSON (``shared/reference/query-api-and-zipkin.md`` §2, §4).

Pure functions: the query API, the CLI's ``--json`` and tests all use them. Conventions of a
compatible server:

- Trace ids are lower-case hex padded to 16 digits, or 32 when the high 64 bits are set; span
  ids are 16 digits.
- ``processes`` are keyed ``p1``, ``p2``, ... per trace in order of first use; identical
  processes (same service name and tags) share a key.
- The parent is a ``CHILD_OF`` reference: one is synthesized from ``parent_id`` when the
  references do not name the parent.
- int64 values outside ±(2^53 − 1) are strings (JavaScript numbers would round them); binary
  values are base64; NaN and infinite doubles are the strings ``NaN``, ``+Inf``, ``-Inf``
  (JSON has no such numbers).
- ``tags``, ``logs`` and ``references`` are always lists (the UI iterates them); ``warnings``
  is left out when empty.
- The children of a Zipkin shared span's server half hang under it (``adjusters``), as Jaeger's
  query service arranges them.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .adjusters import reparent_shared_children
from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    TAG_TYPE_NAMES,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)

_MAX_SAFE_INT = (1 << 53) - 1
_REF_TYPES = {CHILD_OF: "CHILD_OF", FOLLOWS_FROM: "FOLLOWS_FROM"}


def trace_id_hex(trace_id: int) -> str:
    """``%016x``, or ``%032x`` for a 128-bit id."""
    return "%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id


def span_id_hex(span_id: int) -> str:
    return "%016x" % span_id


def parse_trace_id(text: str) -> int:
    """A trace id from 1 to 32 hex digits (as Jaeger's ``TraceIDFromString``); ValueError else."""
    value = text.strip()
    if not 0 < len(value) <= 32 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError("a trace id is 1 to 32 hex digits, got %r" % text)
    return int(value, 16)


def key_value(tag: Tag) -> Dict[str, Any]:
    """A tag or log field as a Jaeger ``KeyValue`` (type names from ``TAG_TYPE_NAMES``)."""
    key, tag_type, value = tag
    if tag_type == LONG:
        if not (isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT):
            value = str(value)
    elif tag_type == BOOL:
        value = bool(value)
    elif tag_type == DOUBLE:
        if isinstance(value, float) and not math.isfinite(value):
            value = "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    elif tag_type == BINARY and isinstance(value, (bytes, bytearray, memoryview)):
        value = base64.b64encode(value).decode("ascii")
    elif tag_type != STRING or not isinstance(value, str):
        return {"key": key, "type": TAG_TYPE_NAMES[STRING], "value": str(value)}
    return {"key": key, "type": TAG_TYPE_NAMES[tag_type], "value": value}


def _log(log: Log) -> Dict[str, Any]:
    return {"timestamp": log.timestamp, "fields": [key_value(field) for field in log.fields]}


def _reference(ref: Reference) -> Dict[str, Any]:
    return {"refType": _REF_TYPES.get(ref.ref_type, "CHILD_OF"),
            "traceID": trace_id_hex(ref.trace_id), "spanID": span_id_hex(ref.span_id)}


def _references(span: Span) -> List[Dict[str, Any]]:
    refs = [_reference(ref) for ref in span.references]
    if span.parent_id and not any(ref.span_id == span.parent_id for ref in span.references):
        # The UI builds the tree from references only: the parent must be among them.
        refs.insert(0, _reference(Reference(CHILD_OF, span.trace_id, span.parent_id)))
    return refs


def process_to_json(process: Process) -> Dict[str, Any]:
    return {"serviceName": process.service_name,
            "tags": [key_value(tag) for tag in process.tags]}


def span_to_json(span: Span, process_id: str) -> Dict[str, Any]:
    """One span; ``process_id`` is its key in the trace's ``processes``."""
    return {
        "traceID": trace_id_hex(span.trace_id),
        "spanID": span_id_hex(span.span_id),
        "flags": span.flags,
        "operationName": span.operation_name,
        "references": _references(span),
        "startTime": span.start_time,
        "duration": span.duration,
        "tags": [key_value(tag) for tag in span.tags],
        "logs": [_log(log) for log in span.logs],
        "processID": process_id,
    }


def trace_to_json(spans: Sequence[Span]) -> Dict[str, Any]:
    """One trace (the spans of one trace id) as a Jaeger ``Trace``; ValueError when empty."""
    if not spans:
        raise ValueError("a trace has at least one span")
    spans = reparent_shared_children(spans)
    keys: Dict[Process, str] = {}
    out_spans = []
    for span in spans:
        key = keys.get(span.process)
        if key is None:
            key = keys[span.process] = "p%d" % (len(keys) + 1)
        out_spans.append(span_to_json(span, key))
    return {
        "traceID": trace_id_hex(spans[0].trace_id),
        "spans": out_spans,
        "processes": {key: process_to_json(process) for process, key in keys.items()},
    }


def dependencies_to_json(links: Iterable[Tuple[str, str, int]]) -> List[Dict[str, Any]]:
    """``(parent, child, calls)`` tuples as Jaeger ``DependencyLink`` objects."""
    return [{"parent": parent, "child": child, "callCount": calls}
            for parent, child, calls in links]


def error_item(msg: str, code: Optional[int] = None,
               trace_id: Optional[int] = None) -> Dict[str, Any]:
    """An entry of the envelope's ``errors`` (``code`` and ``traceID`` only when given)."""
    item: Dict[str, Any] = {}
    if code is not None:
        item["code"] = code
    item["msg"] = msg
    if trace_id is not None:
        item["traceID"] = trace_id_hex(trace_id)
    return item


def envelope(data: Any, total: Optional[int] = None, limit: int = 0, offset: int = 0,
             errors: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """The query API's response object; ``errors`` is ``null`` on success, as in Jaeger."""
    return {"data": data, "total": 0 if total is None else total, "limit": limit,
            "offset": offset, "errors": None if errors is None else [dict(e) for e in errors]}
