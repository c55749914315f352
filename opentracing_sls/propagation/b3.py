"""B3 propagation (openzipkin/b3-propagation): the ``X-B3-*`` multi-headers and the single ``b3``.

Extraction follows the spec plus what Brave and Envoy do with edge cases, so that a service in
an Istio mesh keeps the sidecar's trace and decision:

- ``b3`` takes precedence; when it is present but does not parse, the multi-headers are read
  (Brave does the same).
- Trace ids are exactly 16 or 32 hex digits, span and parent ids exactly 16; an all-zero trace or
  span id is invalid. Hex digits (and the ``d`` state) are accepted in either case, as the
  OpenTelemetry B3 propagator and jaeger-client do (Brave rejects upper case): proxies do not
  change the case of values, and a peer writing upper case still means the same id. We always
  write lower case.
- An all-zero parent id reads as "no parent" rather than invalid: the parent only labels the
  upstream span, and rejecting it would split the trace.
- ``X-B3-Sampled`` accepts ``1``/``true`` and denies on ``0``/``false`` (any case); absent means
  *defer* (``sampling_deferred=True``); empty or anything else is malformed, so no context.
  ``X-B3-Flags: 1`` means debug *and* sampled (flags 3); other values are ignored.
- Without a trace id only the decision is returned (``SpanContext(0, 0, flags)``), e.g. for
  ``X-B3-Sampled: 0`` or ``b3: 0``; a trace id without a span id is malformed.
- Every id or flag value may be padded with whitespace or repeated (``1,1``): the first
  comma-separated token is read.

Injection writes lowercase names, a 64-bit trace id as 16 hex digits and a larger one as 32
(an id extracted as ``0000000000000000`` + 16 digits is an int below 2**64 and is written back as
16 digits, which B3 defines as the same trace), a parent only when there is one, ``x-b3-flags: 1``
(and no sampled header) for debug, ``x-b3-sampled: 1``/``0`` for a decision and nothing for a
deferred one. The single header carries the same values (``-d`` for debug, the parent as the 4th
field; a deferred context has no 3rd field, so its parent is not written). Headers of the B3
form(s) not being written are removed from the carrier, so a carrier copied from an incoming
request cannot forward a stale parent or decision next to ours (exact lowercase names only,
unless the carrier itself is case-insensitive).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from ..constants import DEBUG_FLAG, SAMPLED_FLAG
from ..ids import id_to_hex, trace_id_to_hex
from ..span_context import SpanContext
from .base import TextCodec
from .carrier import HeaderReader, discard, header_token, require_writable

TRACE_ID_HEADER = "x-b3-traceid"
SPAN_ID_HEADER = "x-b3-spanid"
PARENT_SPAN_ID_HEADER = "x-b3-parentspanid"
SAMPLED_HEADER = "x-b3-sampled"
FLAGS_HEADER = "x-b3-flags"
SINGLE_HEADER = "b3"

_MULTI_HEADERS = (TRACE_ID_HEADER, SPAN_ID_HEADER, PARENT_SPAN_ID_HEADER, SAMPLED_HEADER,
                  FLAGS_HEADER)

_DEBUG_SAMPLED = DEBUG_FLAG | SAMPLED_FLAG

_TRACE_ID = re.compile(r"[0-9a-fA-F]{16}(?:[0-9a-fA-F]{16})?")
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_SINGLE = re.compile(
    r"([0-9a-fA-F]{16}(?:[0-9a-fA-F]{16})?)-([0-9a-fA-F]{16})(?:-([01dD])(?:-([0-9a-fA-F]{16}))?)?")

_TRACE_HEX_LENGTHS = (16, 32)
_fromhex = bytes.fromhex
_from_bytes = int.from_bytes

# X-B3-Sampled values (lowercased); true/false are legacy but Brave still accepts them.
_SAMPLED = {"1": SAMPLED_FLAG, "true": SAMPLED_FLAG, "0": 0, "false": 0}
# The sampling-state field of the single header.
_STATE = {"1": SAMPLED_FLAG, "0": 0, "d": _DEBUG_SAMPLED, "D": _DEBUG_SAMPLED}


def _parse_single(value: str) -> Optional[SpanContext]:
    """The context in a ``b3`` value, or None when it does not parse."""
    if len(value) == 1:  # decision only: b3: 0 / 1 / d
        flags = _STATE.get(value)
        return None if flags is None else SpanContext(0, 0, flags=flags)
    match = _SINGLE.fullmatch(value)
    if match is None:
        return None
    trace_hex, span_hex, state, parent_hex = match.groups()
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    parent_id = int(parent_hex, 16) if parent_hex else 0
    if state is None:
        return SpanContext(trace_id, span_id, parent_id, 0, sampling_deferred=True)
    return SpanContext(trace_id, span_id, parent_id, _STATE[state])


def _parse_multi(headers: HeaderReader) -> Optional[SpanContext]:
    """The context in the ``X-B3-*`` headers, or None when absent or malformed."""
    get = headers.get_single
    sampled = get(SAMPLED_HEADER)
    if sampled is None:
        flags: Optional[int] = None
    else:
        flags = _SAMPLED.get(sampled)
        if flags is None:
            flags = _SAMPLED.get(sampled.lower())
        if flags is None:
            return None  # empty or garbage: malformed, the spec's "restart the trace"
    if get(FLAGS_HEADER) == "1":
        flags = _DEBUG_SAMPLED

    trace_hex = get(TRACE_ID_HEADER)
    if trace_hex is None:
        # Brave: no trace id -> only the sampling decision (if any) is propagated.
        return None if flags is None else SpanContext(0, 0, flags=flags)
    span_hex = get(SPAN_ID_HEADER)
    if span_hex is None or _TRACE_ID.fullmatch(trace_hex) is None \
            or _SPAN_ID.fullmatch(span_hex) is None:
        return None
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    parent_id = 0
    parent_hex = get(PARENT_SPAN_ID_HEADER)
    if parent_hex is not None:
        if _SPAN_ID.fullmatch(parent_hex) is None:
            return None
        parent_id = int(parent_hex, 16)
    if flags is None:
        return SpanContext(trace_id, span_id, parent_id, 0, sampling_deferred=True)
    return SpanContext(trace_id, span_id, parent_id, flags)


def extract_dict(headers: Dict[str, Any]) -> Optional[SpanContext]:
    """:meth:`B3Codec.extract_from` for a reader's dict of lowercase names: the same rules
    as :func:`_parse_single` then :func:`_parse_multi`, without a call per header (a clean
    ``str`` value, the common case, is stripped in place; others go through
    :func:`~.carrier.header_token`).
    """
    get = headers.get
    value = get(SINGLE_HEADER)
    if value is not None:
        value = header_token(value)
        if value is not None:
            context = _parse_single(value)
            if context is not None:
                return context
    sampled = get(SAMPLED_HEADER)
    if sampled is None:
        flags: Optional[int] = None
    else:
        sampled = sampled.strip() if type(sampled) is str and "," not in sampled \
            else header_token(sampled)
        if sampled is None:
            flags = None
        else:
            flags = _SAMPLED.get(sampled)
            if flags is None:
                flags = _SAMPLED.get(sampled.lower())
                if flags is None:
                    return None  # empty or garbage: malformed, the spec's "restart the trace"
    value = get(FLAGS_HEADER)
    if value is not None and header_token(value) == "1":
        flags = _DEBUG_SAMPLED
    trace_hex = get(TRACE_ID_HEADER)
    if trace_hex is not None:
        trace_hex = trace_hex.strip() if type(trace_hex) is str and "," not in trace_hex \
            else header_token(trace_hex)
    if trace_hex is None:
        return None if flags is None else SpanContext(0, 0, flags=flags)
    span_hex = get(SPAN_ID_HEADER)
    if span_hex is not None:
        span_hex = span_hex.strip() if type(span_hex) is str and "," not in span_hex \
            else header_token(span_hex)
    if span_hex is None or len(span_hex) != 16 or len(trace_hex) not in _TRACE_HEX_LENGTHS:
        return None
    # The ids as _TRACE_ID/_SPAN_ID and int(text, 16) read them, but cheaper (1.7 k against
    # 4.8 k instructions for a trace id, measured): bytes.fromhex takes hex digits of either
    # case and ASCII whitespace between bytes, which the length checks rule out.
    try:
        trace_bytes = _fromhex(trace_hex)
        span_bytes = _fromhex(span_hex)
    except ValueError:
        return None
    if len(span_bytes) != 8 or len(trace_bytes) * 2 != len(trace_hex):
        return None
    trace_id = _from_bytes(trace_bytes, "big")
    span_id = _from_bytes(span_bytes, "big")
    if not trace_id or not span_id:
        return None
    parent_id = 0
    parent_hex = get(PARENT_SPAN_ID_HEADER)
    if parent_hex is not None:
        parent_hex = header_token(parent_hex)
        if parent_hex is not None:
            if len(parent_hex) != 16:
                return None
            try:
                parent_bytes = _fromhex(parent_hex)
            except ValueError:
                return None
            if len(parent_bytes) != 8:
                return None
            parent_id = _from_bytes(parent_bytes, "big")
    if flags is None:
        return SpanContext(trace_id, span_id, parent_id, 0, sampling_deferred=True)
    return SpanContext(trace_id, span_id, parent_id, flags)


class B3Codec(TextCodec):
    """B3 propagation; extracts the single ``b3`` header first, then the multi-headers.

    ``multi_header`` / ``single_header`` choose what :meth:`inject` writes (propagation names
    ``"b3"`` and ``"b3single"``; both together write identical values in both forms).
    Extraction is the same in every mode.
    """

    __slots__ = ("multi_header", "single_header")

    EXTRACT_READS = ((SINGLE_HEADER,) + _MULTI_HEADERS, ())

    def __init__(self, multi_header: bool = True, single_header: bool = False) -> None:
        if not (multi_header or single_header):
            raise ValueError("B3Codec must write the multi-headers, the single header or both")
        self.multi_header = multi_header
        self.single_header = single_header

    def extract_from(self, headers: HeaderReader) -> Optional[SpanContext]:
        if headers._environ is None:
            return extract_dict(headers._headers)  # type: ignore[arg-type]
        single = headers.get_single(SINGLE_HEADER)
        if single is not None:
            context = _parse_single(single)
            if context is not None:
                return context
        return _parse_multi(headers)

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        require_writable(carrier)
        flags = span_context.flags
        if flags & DEBUG_FLAG:
            state: Optional[str] = "d"
        elif span_context.sampling_deferred:
            state = None
        else:
            state = "1" if flags & SAMPLED_FLAG else "0"

        if span_context.trace_id and span_context.span_id:
            trace_hex: Optional[str] = trace_id_to_hex(span_context.trace_id)
            span_hex = id_to_hex(span_context.span_id)
            parent_hex = id_to_hex(span_context.parent_id) if span_context.parent_id else None
        else:  # decision only (b3: 0) or nothing at all
            trace_hex = span_hex = parent_hex = None

        if self.multi_header:
            _write_multi(carrier, trace_hex, span_hex, parent_hex, state)
        else:
            for name in _MULTI_HEADERS:
                discard(carrier, name)

        if not self.single_header:
            discard(carrier, SINGLE_HEADER)
        elif trace_hex is not None:
            if state is None:
                carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}"
            elif parent_hex is None:
                carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}-{state}"
            else:
                carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}-{state}-{parent_hex}"
        elif state is not None:
            carrier[SINGLE_HEADER] = state
        else:
            discard(carrier, SINGLE_HEADER)

    def write_ids(self, span_context: SpanContext, carrier: Dict[str, str], trace_hex: str,
                  span_hex: str, parent_hex: Optional[str], fresh: bool) -> None:
        """:meth:`inject` into a plain ``dict`` for a context with ids, already in hex (a
        composite formats them once for every codec). ``fresh``: the carrier held nothing
        this codec would remove."""
        flags = span_context.flags
        if flags & DEBUG_FLAG:
            state: Optional[str] = "d"
        elif span_context.sampling_deferred:
            state = None
        else:
            state = "1" if flags & SAMPLED_FLAG else "0"
        pop = carrier.pop
        if self.multi_header:
            carrier[TRACE_ID_HEADER] = trace_hex
            carrier[SPAN_ID_HEADER] = span_hex
            if parent_hex is not None:
                carrier[PARENT_SPAN_ID_HEADER] = parent_hex
            elif not fresh:
                pop(PARENT_SPAN_ID_HEADER, None)
            if state == "d":
                carrier[FLAGS_HEADER] = "1"
                if not fresh:
                    pop(SAMPLED_HEADER, None)
            elif state is None:
                if not fresh:
                    pop(SAMPLED_HEADER, None)
                    pop(FLAGS_HEADER, None)
            else:
                carrier[SAMPLED_HEADER] = state
                if not fresh:
                    pop(FLAGS_HEADER, None)
        elif not fresh:
            for name in _MULTI_HEADERS:
                pop(name, None)
        if not self.single_header:
            if not fresh:
                pop(SINGLE_HEADER, None)
        elif state is None:
            carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}"
        elif parent_hex is None:
            carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}-{state}"
        else:
            carrier[SINGLE_HEADER] = f"{trace_hex}-{span_hex}-{state}-{parent_hex}"

    def __repr__(self) -> str:
        return (f"B3Codec(multi_header={self.multi_header!r}, "
                f"single_header={self.single_header!r})")


def _write_multi(carrier: Any, trace_hex: Optional[str], span_hex: Optional[str],
                 parent_hex: Optional[str], state: Optional[str]) -> None:
    if trace_hex is not None:
        carrier[TRACE_ID_HEADER] = trace_hex
        carrier[SPAN_ID_HEADER] = span_hex
        if parent_hex is not None:
            carrier[PARENT_SPAN_ID_HEADER] = parent_hex
        else:
            discard(carrier, PARENT_SPAN_ID_HEADER)
    else:
        discard(carrier, TRACE_ID_HEADER)
        discard(carrier, SPAN_ID_HEADER)
        discard(carrier, PARENT_SPAN_ID_HEADER)
    if state == "d":
        # Debug implies sampled; the spec says not to send X-B3-Sampled alongside.
        carrier[FLAGS_HEADER] = "1"
        discard(carrier, SAMPLED_HEADER)
    elif state is None:
        discard(carrier, SAMPLED_HEADER)
        discard(carrier, FLAGS_HEADER)
    else:
        carrier[SAMPLED_HEADER] = state
        discard(carrier, FLAGS_HEADER)
