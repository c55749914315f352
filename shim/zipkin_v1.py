"""Zipkin v1 JSON (``POST /api/v1/spans``, what Istio 1.0-era Envoys send) to the shim's model.

v1 has no ``kind``, ``localEndpoint`` or ``shared``: the core annotations (``cs cr sr ss ms mr``)
and their endpoints say which side recorded the span, ``sa/ca/ma`` binary annotations name the
remote side, and one v1 span may hold both sides of an RPC. Each side becomes one span of the
model, as a v2 span would. The mapping is documented in :mod:`opentracing_sls.shim.zipkin`.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from .model import BINARY, BOOL, DOUBLE, LONG, STRING, Log, Process, Span, Tag, tag_of
from .zipkin_body import MalformedSpan, ZipkinDecodeResult, decode_spans, load_span_array
from .zipkin_common import (
    FLAGS_DEBUG,
    FLAGS_SAMPLED,
    KIND_TAGS,
    MAX_INT64,
    SPECIAL_TAG_KEYS,
    Endpoint,
    add_peer_tags,
    add_special_tag,
    endpoint_of,
    flag_of,
    list_of,
    log_of,
    make_span,
    micros_of,
    name_of,
    new_tuple,
    parent_id_of,
    process_of,
    span_id_of,
    tag_text,
    trace_id_of,
)

# kind -> (begin annotation, end annotation, remote address key); v1 "sides" in priority order.
_SIDES = {
    "CLIENT": ("cs", "cr", "sa"),
    "SERVER": ("sr", "ss", "ca"),
    "PRODUCER": ("ms", "", "ma"),
    "CONSUMER": ("mr", "", "ma"),
}
_CORE = frozenset(("cs", "cr", "sr", "ss", "ms", "mr"))
_ADDRESS_KEYS = ("sa", "ca", "ma")
_INT_TYPES = frozenset(("I16", "I32", "I64"))

Annotation = Tuple[int, str, Optional[Endpoint]]  # timestamp, value, endpoint


class _Side(NamedTuple):
    """One side (client, server, ...) of a v1 span: it becomes one model span."""

    kind: str  # "" for a local span
    endpoint: Optional[Endpoint]
    tags: List[Tag]
    process_tags: List[Tag]
    annotations: List[Annotation]


def decode_zipkin_v1_json(body: bytes) -> ZipkinDecodeResult:
    """Decodes a Zipkin v1 JSON body (already decompressed).

    Raises ``DecodeError`` when the body is not a JSON array of objects; a malformed span inside
    is skipped and counted in the result instead. One v1 span carrying both the client and the
    server annotations yields two spans.
    """
    return decode_spans(load_span_array(body), _convert, {})


def _convert(obj: Dict[str, Any], processes: Dict[Any, Process],
             append: Callable[[Span], None]) -> None:
    get = obj.get
    trace_id = trace_id_of(get("traceId"))
    span_id = span_id_of(get("id"))
    parent_id = parent_id_of(get("parentId"), span_id)
    name = name_of(get("name"))
    flags = FLAGS_DEBUG if flag_of(get("debug"), "debug") else FLAGS_SAMPLED
    timestamp = micros_of(get("timestamp"), "timestamp")
    duration = micros_of(get("duration"), "duration")

    core: Dict[str, Tuple[int, Optional[Endpoint]]] = {}  # first of each, in body order
    others: List[Annotation] = []
    for annotation in list_of(get("annotations"), "annotations"):
        if type(annotation) is not dict:
            raise MalformedSpan("annotations must be objects")
        value = annotation.get("value")
        if type(value) is not str:
            raise MalformedSpan("annotation value must be a string")
        at = micros_of(annotation.get("timestamp"), "annotation timestamp")
        if not at:
            raise MalformedSpan("annotation without timestamp")
        raw_endpoint = annotation.get("endpoint")
        endpoint = None if raw_endpoint is None else endpoint_of(raw_endpoint)
        if value in _CORE and value not in core:
            core[value] = (at, endpoint)
        else:
            others.append((at, value, endpoint))

    binary: List[Tuple[Tag, Optional[Endpoint]]] = []
    addresses: Dict[str, Endpoint] = {}
    for item in list_of(get("binaryAnnotations"), "binaryAnnotations"):
        if type(item) is not dict:
            raise MalformedSpan("binaryAnnotations must be objects")
        key = item.get("key")
        if type(key) is not str:
            raise MalformedSpan("binary annotation key must be a string")
        value = item.get("value")
        raw_endpoint = item.get("endpoint")
        endpoint = None if raw_endpoint is None else endpoint_of(raw_endpoint)
        type_name = item.get("type")
        if type(value) is str and (type_name is None or type_name == "STRING"):
            binary.append((new_tuple(Tag, (key, STRING, value)), endpoint))  # the usual case
        elif key in _ADDRESS_KEYS and type(value) is not str:
            # {"key": "sa", "value": true, "endpoint": {...}}: an address, not a tag.
            if endpoint is not None and key not in addresses:
                addresses[key] = endpoint
        else:
            tag = _binary_tag(key, value, type_name)
            if tag is not None:
                binary.append((tag, endpoint))

    present = [kind for kind, (begin, end, _) in _SIDES.items()
               if begin in core or (end and end in core)]
    # An RPC's core annotations win over messaging ones mixed into the same span.
    kinds = [kind for kind in present if kind in ("CLIENT", "SERVER")] or present
    fallback = _fallback_endpoint(core, others, binary)
    sides = [_Side(kind, _side_endpoint(kind, core) or fallback, [], [], [])
             for kind in kinds] or [_Side("", fallback, [], [], [])]
    used: Set[str] = set()
    for kind in kinds:
        begin, end, _ = _SIDES[kind]
        used.add(begin)
        used.add(end)
    for value, (at, endpoint) in core.items():
        if value not in used:  # e.g. "ms" on an RPC span: kept as an event
            others.append((at, value, endpoint))

    for annotation in others:
        _side_for(sides, annotation[2]).annotations.append(annotation)
    if len(sides) == 1 and SPECIAL_TAG_KEYS.isdisjoint([tag.key for tag, _ in binary]):
        sides[0].tags.extend([tag for tag, _ in binary])  # the usual case
        binary = []
    for tag, endpoint in binary:
        side = _side_for(sides, endpoint)
        if tag.key in SPECIAL_TAG_KEYS:
            add_special_tag(tag.key, tag.value, side.tags, side.process_tags, bool(side.kind))
        else:
            side.tags.append(tag)

    # All sides are built before any is delivered: a malformed span yields no half of itself.
    for span in [_side_span(side, index, trace_id, span_id, parent_id, name, flags, timestamp,
                            duration, core, addresses, processes)
                 for index, side in enumerate(sides)]:
        append(span)


def _side_span(side: _Side, index: int, trace_id: int, span_id: int, parent_id: int, name: str,
               flags: int, timestamp: int, duration: int,
               core: Dict[str, Tuple[int, Optional[Endpoint]]], addresses: Dict[str, Endpoint],
               processes: Dict[Any, Process]) -> Span:
    """The model span of one side; ``index`` 1 is the server (or consumer) half of a split."""
    tags = side.tags
    logs: List[Log] = []
    for at, value, _ in side.annotations:
        log = log_of(at, value)
        if log is not None:
            logs.append(log)
    if side.kind:
        begin, end, address_key = _SIDES[side.kind]
        tags.append(KIND_TAGS[side.kind])
        add_peer_tags(addresses.get(address_key), tags)
        began = core[begin][0] if begin in core else 0
        ended = core[end][0] if end and end in core else 0
        # The side that started the span owns span.timestamp/duration; in a v1 span shared by
        # client and server, the server half is timed by its own sr/ss (Zipkin's convention,
        # which is also how a server-only span without span.timestamp says it is shared).
        shared = index == 1 or (side.kind == "SERVER" and bool(began) and (
            not timestamp or (bool(ended) and not duration)))
        if timestamp and not shared:
            start = timestamp
            elapsed = duration or (ended - began if began and ended else 0)
        else:
            start = began or ended
            elapsed = ended - began if began and ended else 0
        elapsed = max(elapsed, 0)  # clock steps between sr and ss must not make it negative
    else:
        address = next((addresses[key] for key in _ADDRESS_KEYS if key in addresses), None)
        add_peer_tags(address, tags)
        shared = False
        start = timestamp or min((log.timestamp for log in logs), default=0)
        if not start:
            raise MalformedSpan("span without timestamp or annotations")
        elapsed = duration
    process = process_of(side.endpoint, tuple(side.process_tags), processes)
    return make_span(trace_id, span_id, parent_id, name, flags, start, elapsed, tags, logs,
                     process, shared)


def _side_endpoint(kind: str, core: Dict[str, Tuple[int, Optional[Endpoint]]]
                   ) -> Optional[Endpoint]:
    begin, end, _ = _SIDES[kind]
    for value in (begin, end):
        if value in core:
            endpoint = core[value][1]
            if endpoint is not None and endpoint.service_name:
                return endpoint
    return None


def _fallback_endpoint(core: Dict[str, Tuple[int, Optional[Endpoint]]],
                       others: List[Annotation], binary: List[Tuple[Tag, Optional[Endpoint]]]
                       ) -> Optional[Endpoint]:
    """The local endpoint when the side's own annotations name none, in Jaeger's order: core
    annotations, the ``lc`` binary annotation, any annotation, any binary annotation."""
    candidates = [endpoint for _, endpoint in core.values()]
    candidates += [endpoint for tag, endpoint in binary if tag.key == "lc"]
    candidates += [endpoint for _, _, endpoint in others]
    candidates += [endpoint for _, endpoint in binary]
    named = next((e for e in candidates if e is not None and e.service_name), None)
    return named or next((e for e in candidates if e is not None), None)


def _side_for(sides: List[_Side], endpoint: Optional[Endpoint]) -> _Side:
    """The side an annotation belongs to: the one with its service name, else the first."""
    if len(sides) > 1 and endpoint is not None and endpoint.service_name:
        for side in sides:
            if side.endpoint is not None and side.endpoint.service_name == endpoint.service_name:
                return side
    return sides[0]


def _binary_tag(key: str, value: Any, type_name: Any) -> Optional[Tag]:
    """A v1 binary annotation as a typed tag (``type`` absent: the JSON value's own type)."""
    if value is None:
        return None
    kind = type(value)
    if type_name is None or type_name == "STRING":
        if kind is str:
            return Tag(key, STRING, value)
        if type_name is None and kind in (bool, int, float):
            return tag_of(key, value)
        return Tag(key, STRING, tag_text(value))
    if type(type_name) is not str:
        raise MalformedSpan("binary annotation type must be a string")
    try:
        if type_name == "BOOL":
            if kind is bool:
                return Tag(key, BOOL, value)
            if kind is str and value.lower() in ("true", "false"):
                return Tag(key, BOOL, value.lower() == "true")
        elif type_name in _INT_TYPES:
            if kind is str and value.isascii() and value.lstrip("-").isdigit() and len(value) < 21:
                value = int(value)
                kind = int
            if kind is int and -(1 << 63) <= value <= MAX_INT64:
                return Tag(key, LONG, value)
        elif type_name == "DOUBLE":
            if kind is int or kind is float or kind is str:
                return Tag(key, DOUBLE, float(value))
        elif type_name == "BYTES":
            if kind is str:
                return Tag(key, BINARY, base64.b64decode(value, validate=True))
        else:
            raise MalformedSpan("unknown binary annotation type %.20r" % (type_name,))
    except (ValueError, OverflowError):  # binascii.Error is a ValueError
        pass
    raise MalformedSpan("binary annotation %.40r: value does not fit type %s" % (key, type_name))
