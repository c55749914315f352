"""The shim's one span model: every receiver produces it, every sink and store consumes it.

Jaeger semantics (``shared/reference/jaeger-wire.md`` section 2): 128-bit trace ids,
64-bit span ids, typed tags, logs, references, flags, microsecond times, and the process
(service name and tags) that reported the span. Ids are UNSIGNED ints here (the wire's signed
i64 are converted once, at decode time). Plain tuples underneath (NamedTuple): decoding
creates hundreds of thousands of these per second.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Tuple

# TagType of jaeger.thrift
STRING = 0
DOUBLE = 1
BOOL = 2
LONG = 3
BINARY = 4
#: Tag type names of the Jaeger query JSON API, by TagType.
TAG_TYPE_NAMES = ("string", "float64", "bool", "int64", "binary")

CHILD_OF = 0
FOLLOWS_FROM = 1

SAMPLED_FLAG = 1
DEBUG_FLAG = 2


class Tag(NamedTuple):
    """A typed key/value: ``type`` is one of STRING, DOUBLE, BOOL, LONG, BINARY."""

    key: str
    type: int
    value: Any


class Log(NamedTuple):
    timestamp: int  # µs since the epoch
    fields: Tuple[Tag, ...]


class Reference(NamedTuple):
    ref_type: int  # CHILD_OF or FOLLOWS_FROM
    trace_id: int
    span_id: int


class Process(NamedTuple):
    service_name: str
    tags: Tuple[Tag, ...]


class Span(NamedTuple):
    """One span with its process. ``parent_id`` is 0 for a root."""

    trace_id: int
    span_id: int
    parent_id: int
    operation_name: str
    flags: int
    start_time: int  # µs since the epoch
    duration: int  # µs
    tags: Tuple[Tag, ...]
    logs: Tuple[Log, ...]
    references: Tuple[Reference, ...]
    process: Process


class DecodeError(ValueError):
    """Malformed input: the receiver counts it and skips the packet or request."""


def tag_of(key: str, value: Any) -> Tag:
    """A Tag typed from a Python value (bool before int: bool is an int subclass)."""
    kind = type(value)
    if kind is str:
        return Tag(key, STRING, value)
    if kind is bool:
        return Tag(key, BOOL, value)
    if kind is int:
        return Tag(key, LONG, value) if -(1 << 63) <= value < (1 << 63) else Tag(key, STRING,
                                                                                 str(value))
    if kind is float:
        return Tag(key, DOUBLE, value)
    if kind is bytes:
        return Tag(key, BINARY, value)
    return Tag(key, STRING, str(value))


def span_kind(span: Span) -> str:
    """The ``span.kind`` tag's value, or ``""``."""
    for tag in span.tags:
        if tag.key == "span.kind" and tag.type == STRING:
            return tag.value
    return ""


Batch = List[Span]
