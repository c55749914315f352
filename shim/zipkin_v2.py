"""Zipkin v2 JSON (``POST /api/v2/spans``, what Istio's Envoys send) to the shim's span model.

The mapping is documented in :mod:`opentracing_sls.shim.zipkin`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from .model import STRING, Log, Process, Span, Tag
from .zipkin_body import MalformedSpan, ZipkinDecodeResult, decode_spans, load_span_array
from .zipkin_common import (
    FLAGS_DEBUG,
    FLAGS_SAMPLED,
    KIND_TAGS,
    MAX_INT64,
    SPECIAL_TAG_KEYS,
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


def decode_zipkin_v2_json(body: bytes) -> ZipkinDecodeResult:
    """Decodes a Zipkin v2 JSON body (already decompressed).

    Raises ``DecodeError`` when the body is not a JSON array of objects; a malformed span inside
    is skipped and counted in the result instead.
    """
    return decode_spans(load_span_array(body), _convert, {})


def _convert(obj: Dict[str, Any], processes: Dict[Any, Process],
             append: Callable[[Span], None]) -> None:
    get = obj.get
    trace_id = trace_id_of(get("traceId"))
    span_id = span_id_of(get("id"))
    parent_id = parent_id_of(get("parentId"), span_id)

    kind = get("kind")
    kind_tag = None
    if kind is not None:
        if type(kind) is not str:
            raise MalformedSpan("kind must be a string")
        kind_tag = KIND_TAGS.get(kind) or KIND_TAGS.get(kind.upper())
        # An unknown kind is treated like an absent one (a local span) rather than losing the span.

    tags: List[Tag] = []
    process_tags: List[Tag] = []
    raw_tags = get("tags")
    if raw_tags:
        if type(raw_tags) is not dict:
            raise MalformedSpan("tags must be an object")
        # Fast path (Envoy's tags): no key needing special mapping, every value a string.
        if SPECIAL_TAG_KEYS.isdisjoint(raw_tags):
            tags = [new_tuple(Tag, (key, STRING, value)) for key, value in raw_tags.items()
                    if type(value) is str]
        if len(tags) != len(raw_tags):
            tags = _mapped_tags(raw_tags, process_tags, kind_tag is not None)
    if kind_tag is not None:
        tags.append(kind_tag)
    remote = get("remoteEndpoint")
    if remote is not None:
        add_peer_tags(endpoint_of(remote), tags)

    logs: List[Log] = []
    raw_annotations = get("annotations")
    if raw_annotations:
        for annotation in list_of(raw_annotations, "annotations"):
            if type(annotation) is not dict:
                raise MalformedSpan("annotations must be objects")
            value = annotation.get("value")
            if type(value) is not str:
                raise MalformedSpan("annotation value must be a string")
            timestamp = annotation.get("timestamp")
            if type(timestamp) is not int or not 0 < timestamp <= MAX_INT64:
                timestamp = micros_of(timestamp, "annotation timestamp")
                if not timestamp:
                    raise MalformedSpan("annotation without timestamp")
            log = log_of(timestamp, value)
            if log is not None:
                logs.append(log)

    start = get("timestamp")
    if type(start) is not int or not 0 < start <= MAX_INT64:
        start = micros_of(start, "timestamp")
        if not start:
            # Zipkin allows it for spans whose start is unknown; a time-indexed store needs one.
            if not logs:
                raise MalformedSpan("span without timestamp or annotations")
            start = min(log.timestamp for log in logs)
    duration = get("duration")
    if type(duration) is not int or not 0 <= duration <= MAX_INT64:
        duration = micros_of(duration, "duration")

    local = get("localEndpoint")
    process = process_of(None if local is None else endpoint_of(local), tuple(process_tags),
                         processes)
    append(make_span(trace_id, span_id, parent_id, name_of(get("name")),
                     FLAGS_DEBUG if flag_of(get("debug"), "debug") else FLAGS_SAMPLED,
                     start, duration, tags, logs, process, flag_of(get("shared"), "shared")))


def _mapped_tags(raw_tags: Dict[str, Any], process_tags: List[Tag], has_kind: bool) -> List[Tag]:
    tags: List[Tag] = []
    for key, value in raw_tags.items():
        if type(value) is not str:
            value = tag_text(value)
            if value is None:
                continue
        if key in SPECIAL_TAG_KEYS:
            add_special_tag(key, value, tags, process_tags, has_kind)
        else:
            tags.append(new_tuple(Tag, (key, STRING, value)))
    return tags
