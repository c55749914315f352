"""The immutable record of a finished span: all the reporter ever sees."""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Tuple

CHILD_OF = 0
FOLLOWS_FROM = 1

#: ``(timestamp_us, fields)``; fields keep the order they were logged in.
LogRecord = Tuple[int, Dict[str, Any]]
#: ``(ref_type, trace_id, span_id)`` with ``ref_type`` CHILD_OF or FOLLOWS_FROM.
ReferenceRecord = Tuple[int, int, int]


class SpanRecord(NamedTuple):
    """A finished span, as handed to reporters.

    Ids are unsigned ints (``trace_id`` up to 128 bits); times are integer microseconds since
    the epoch. Tag and log values keep their Python types (``str``, ``bool``, ``int``,
    ``float``, ``bytes``) so encoders can map them to typed Thrift tags; anything else has
    already been turned into ``str`` by the span. String values are already truncated.
    """

    trace_id: int
    span_id: int
    parent_id: int
    operation_name: str
    flags: int
    start_time: int
    duration: int
    tags: Dict[str, Any]
    logs: List[LogRecord]
    references: List[ReferenceRecord]
