"""Several text codecs behind one: what the tracer uses for HTTP headers and text maps."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

from ..span_context import SpanContext
from .b3 import B3Codec
from .base import TextCodec
from .carrier import HeaderReader
from .jaeger import JaegerCodec
from .w3c import W3CCodec

#: Every propagation name :func:`build_text_codec` understands.
PROPAGATION_NAMES: Tuple[str, ...] = ("b3", "b3single", "w3c", "jaeger")

#: B3 first: inside Istio the sidecar's B3 headers are the ones that join the mesh's trace.
DEFAULT_PROPAGATION: Tuple[str, ...] = ("b3", "w3c", "jaeger")


class CompositeCodec(TextCodec):
    """Injects with every codec; extracts with the first that finds ids, plus the others' extras.

    Extraction reads the carrier once and asks each codec in order. The result is the first
    context with trace ids (``has_trace``); when no codec finds ids, the first non-None result
    (baggage only, debug id only, a bare decision). Baggage found by the other codecs is merged
    in (on a key conflict the chosen context wins, then the earlier codec), as is a debug id the
    chosen context lacks and a ``tracestate`` read next to the same trace id.
    """

    __slots__ = ("codecs",)

    def __init__(self, codecs: Sequence[TextCodec]) -> None:
        if not codecs:
            raise ValueError("CompositeCodec needs at least one codec")
        self.codecs: Tuple[TextCodec, ...] = tuple(codecs)

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        for codec in self.codecs:
            codec.inject(span_context, carrier)

    def extract_from(self, headers: HeaderReader) -> Optional[SpanContext]:
        found: List[SpanContext] = []
        primary: Optional[SpanContext] = None
        for codec in self.codecs:
            context = codec.extract_from(headers)
            if context is None:
                continue
            found.append(context)
            if primary is None or (context.has_trace and not primary.has_trace):
                primary = context
        if len(found) < 2:
            return primary
        return _merge(primary, found)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"CompositeCodec({list(self.codecs)!r})"


def _merge(primary: SpanContext, found: List[SpanContext]) -> SpanContext:
    baggage = {}
    debug_id = primary.debug_id
    trace_state = primary.trace_state
    for context in reversed(found):  # earlier codecs overwrite later ones
        if context is primary:
            continue
        if context.baggage:
            baggage.update(context.baggage)
        if context.debug_id is not None and primary.debug_id is None:
            debug_id = context.debug_id
        if (context.trace_state and not primary.trace_state
                and context.trace_id == primary.trace_id):
            trace_state = context.trace_state
    if not baggage and debug_id == primary.debug_id and trace_state == primary.trace_state:
        return primary
    baggage.update(primary.baggage)
    return SpanContext(primary.trace_id, primary.span_id, primary.parent_id, primary.flags,
                       baggage, debug_id, primary.sampling_deferred, trace_state)


def build_text_codec(names: Union[Sequence[str], str], url_encoding: bool) -> CompositeCodec:
    """The composite of the codecs named in ``names`` (see :data:`PROPAGATION_NAMES`).

    Names are case-insensitive; a comma-separated string is accepted (as in an environment
    variable); empty entries and repeats are ignored. ``"b3"`` and ``"b3single"`` together
    become one :class:`B3Codec` writing both forms, at the position of the first.
    ``url_encoding`` applies to Jaeger baggage values (True for ``Format.HTTP_HEADERS``).

    Raises ``ValueError`` naming an unknown name and the allowed ones, or when no name is given.
    """
    if isinstance(names, str):
        names = names.split(",")
    wanted: List[str] = []
    for raw in names:
        name = raw.strip().lower() if isinstance(raw, str) else raw
        if name == "":
            continue
        if name not in PROPAGATION_NAMES:
            raise ValueError(
                f"unknown propagation {raw!r}; allowed: {', '.join(PROPAGATION_NAMES)}")
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise ValueError(f"no propagation given; allowed: {', '.join(PROPAGATION_NAMES)}")

    codecs: List[TextCodec] = []
    for name in wanted:
        if name in ("b3", "b3single"):
            if not any(isinstance(codec, B3Codec) for codec in codecs):
                codecs.append(B3Codec(multi_header="b3" in wanted,
                                      single_header="b3single" in wanted))
        elif name == "w3c":
            codecs.append(W3CCodec())
        else:
            codecs.append(JaegerCodec(url_encoding=url_encoding))
    return CompositeCodec(codecs)
