"""W3C Trace Context: ``traceparent`` and ``tracestate``.

``traceparent: {version}-{32 hex trace id}-{16 hex parent id}-{2 hex flags}``. Unlike B3 and
Jaeger, hex digits must be lower case here: the spec's grammar is lowercase-only (HEXDIGLC)
and it says to ignore a traceparent holding characters outside it. Version ``ff`` is invalid,
version ``00`` has exactly four fields, and a higher version may append ``-...`` after the flags
(the spec's forward-compatibility rule: parse the known prefix). All-zero trace or parent ids
are invalid.
Flag bit 0x01 is the sampled decision; its absence is a deny (W3C has no "defer"). Two
``traceparent`` headers (a list value, or values a server joined with a comma) are invalid, as
the W3C test suite expects; several ``tracestate`` headers are joined into one list.

``tracestate`` is kept verbatim in ``SpanContext.trace_state`` and written back unchanged. It is
dropped when it contains anything but printable ASCII (re-injecting a CR/LF from a text map
would break the outgoing request) and, above the spec's 512 characters, trimmed the way the spec
recommends: members over 128 characters first, then whole members from the end.

Injection writes version 00, a 64-bit trace id left-padded to 32 hex digits and flags ``01`` for
a sampled or debug context, ``00`` otherwise (a deferred context included). A context without ids
writes nothing and removes a stale ``traceparent``/``tracestate``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from ..constants import DEBUG_FLAG, SAMPLED_FLAG
from ..span_context import SpanContext
from .base import TextCodec
from .carrier import HeaderReader, discard, require_writable

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?",
                          re.DOTALL)

_TRACESTATE_MAX = 512
_TRACESTATE_MEMBER_MAX = 128


def parse_traceparent(value: str, trace_state: Optional[str] = None) -> Optional[SpanContext]:
    """The context in a ``traceparent`` value (with ``trace_state`` attached), or None."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    # Only bit 0 is defined (other bits belong to later versions or are reserved).
    flags = SAMPLED_FLAG if int(flags_hex, 16) & 1 else 0
    return SpanContext(trace_id, span_id, 0, flags, trace_state=trace_state)


def clean_tracestate(value: str) -> Optional[str]:
    """``value`` stripped, or None when unusable; trimmed when over 512 characters."""
    value = value.strip()
    if not value or not value.isascii() or not value.isprintable():
        return None
    if len(value) <= _TRACESTATE_MAX:
        return value
    members = [member for member in value.split(",")
               if len(member.strip()) <= _TRACESTATE_MEMBER_MAX]
    while members and len(",".join(members)) > _TRACESTATE_MAX:
        members.pop()
    return ",".join(members) or None


class W3CCodec(TextCodec):
    """W3C Trace Context (propagation name ``"w3c"``)."""

    __slots__ = ()

    EXTRACT_READS = ((TRACEPARENT_HEADER, TRACESTATE_HEADER), ())

    def extract_from(self, headers: HeaderReader) -> Optional[SpanContext]:
        values = headers.get_all(TRACEPARENT_HEADER)
        if len(values) != 1:
            return None  # absent, or repeated: the spec says to restart the trace
        state: Optional[str] = ",".join(headers.get_all(TRACESTATE_HEADER))
        if state:
            state = clean_tracestate(state)
        # A tracestate without a valid traceparent means nothing (spec): both go or neither.
        return parse_traceparent(values[0].strip(), state or None)

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        require_writable(carrier)
        if not (span_context.trace_id and span_context.span_id):
            discard(carrier, TRACEPARENT_HEADER)
            discard(carrier, TRACESTATE_HEADER)
            return
        flags = span_context.flags
        # The same precedence as B3: debug means sampled, a deferred context is not sampled.
        if flags & DEBUG_FLAG or (flags & SAMPLED_FLAG and not span_context.sampling_deferred):
            sampled = "01"
        else:
            sampled = "00"
        carrier[TRACEPARENT_HEADER] = (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{sampled}")
        if span_context.trace_state:
            carrier[TRACESTATE_HEADER] = span_context.trace_state
        else:
            discard(carrier, TRACESTATE_HEADER)

    def write_ids(self, span_context: SpanContext, carrier: Dict[str, str], trace_hex: str,
                  span_hex: str, parent_hex: Optional[str], fresh: bool) -> None:
        """:meth:`inject` into a plain ``dict`` for a context with ids, already in hex (16 or
        32 digits for the trace id, 16 for the span id); ``fresh``: the carrier held nothing
        this codec would remove."""
        flags = span_context.flags
        if flags & DEBUG_FLAG or (flags & SAMPLED_FLAG and not span_context.sampling_deferred):
            sampled = "-01"
        else:
            sampled = "-00"
        if len(trace_hex) < 32:
            trace_hex = "0000000000000000" + trace_hex
        carrier[TRACEPARENT_HEADER] = "00-" + trace_hex + "-" + span_hex + sampled
        if span_context.trace_state:
            carrier[TRACESTATE_HEADER] = span_context.trace_state
        elif not fresh:
            carrier.pop(TRACESTATE_HEADER, None)

    def __repr__(self) -> str:
        return "W3CCodec()"
