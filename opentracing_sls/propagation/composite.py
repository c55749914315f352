"""Several text codecs behind one: what the tracer uses for HTTP headers and text maps."""

from __future__ import annotations

from typing import Any, FrozenSet, List, Optional, Sequence, Tuple, Union

from .._accel import cprop
from ..span_context import SpanContext
from .b3 import B3Codec
from .b3 import extract_dict as b3_extract_dict
from .base import TextCodec
from .carrier import HeaderPlan, HeaderReader, read_planned
from .jaeger import JaegerCodec
from .w3c import W3CCodec

#: Every propagation name :func:`build_text_codec` understands.
PROPAGATION_NAMES: Tuple[str, ...] = ("b3", "b3single", "w3c", "jaeger")

#: B3 first: inside Istio the sidecar's B3 headers are the ones that join the mesh's trace.
DEFAULT_PROPAGATION: Tuple[str, ...] = ("b3", "w3c", "jaeger")

# The C fast path (_cprop.c) of extract() and inject() for the common carriers; it answers
# NOT_HANDLED for the rest, which the Python code below takes.
_cprop = cprop()
_NOT_HANDLED = _cprop.NOT_HANDLED if _cprop is not None else object()


class CompositeCodec(TextCodec):
    """Injects with every codec; extracts with the first that finds ids, plus the others' extras.

    Extraction reads the carrier once and asks each codec in order. The result is the first
    context with trace ids (``has_trace``); when no codec finds ids, the first non-None result
    (baggage only, debug id only, a bare decision). Baggage found by the other codecs is merged
    in (on a key conflict the chosen context wins, then the earlier codec), as is a debug id the
    chosen context lacks and a ``tracestate`` read next to the same trace id.
    """

    __slots__ = ("codecs", "_plan", "_planned", "_sole", "_writers", "_distinct_writers",
                 "_cextract", "_cinject")

    def __init__(self, codecs: Sequence[TextCodec]) -> None:
        if not codecs:
            raise ValueError("CompositeCodec needs at least one codec")
        self.codecs: Tuple[TextCodec, ...] = tuple(codecs)
        # When every codec says which headers it reads, extract() keeps only those and asks
        # only the codecs whose headers are present (the others would find nothing). A codec
        # that does not say (a custom one, or a subclass with its own extract_from) makes
        # extract() read the whole carrier and ask every codec, as extract_from() does.
        reads = [_declared_reads(codec) for codec in self.codecs]
        self._plan: Optional[HeaderPlan] = None
        self._planned: Tuple[Tuple[TextCodec, FrozenSet[str], bool, Any], ...] = ()
        self._sole: Optional[Tuple[Any, FrozenSet[str]]] = None
        if all(read is not None for read in reads):
            names = [name for read in reads for name in read[0]]  # type: ignore[index]
            prefixes = [prefix for read in reads for prefix in read[1]]  # type: ignore[index]
            self._plan = HeaderPlan(names, prefixes)
            planned = []
            for codec, (codec_names, codec_prefixes) in zip(self.codecs, reads):  # type: ignore[misc]
                own = frozenset(name.lower() for name in codec_names)
                # A name another codec's prefix covers is only seen through the prefix scan.
                prefixed = bool(codec_prefixes) or any(
                    name.startswith(self._plan.prefixes) for name in own
                    if self._plan.prefixes)
                # Our B3 codec (exactly) reads the planned headers' dict without a reader.
                from_dict = b3_extract_dict if type(codec) is B3Codec else None
                planned.append((codec, own, prefixed, from_dict))
            self._planned = tuple(planned)
            # The common request carries only the first codec's headers (Istio: B3): when
            # that codec reads a dict and no other codec reads those names, extract() hands
            # it the headers directly (the loop below would ask no other codec anyway).
            _, first_names, _, first_from_dict = planned[0]
            others = {name for _, names, _, _ in planned[1:] for name in names}
            if first_from_dict is not None:
                self._sole = (first_from_dict, frozenset(first_names - others))

        # Our own codecs (exactly: a subclass may inject differently) can write into a plain
        # dict from ids formatted once for all of them.
        self._writers: Optional[Tuple[Any, ...]] = None
        if all(type(codec) in _ID_WRITERS for codec in self.codecs):
            self._writers = tuple(codec.write_ids for codec in self.codecs)  # type: ignore
        # Each of our codec types writes and removes only its own headers: when each occurs
        # once, removing a header from a carrier that was empty is a no-op worth skipping.
        self._distinct_writers = len({type(codec) for codec in self.codecs}) == len(self.codecs)

        self._make_c_hooks()

    def _make_c_hooks(self) -> None:
        """The C twins of the paths above, where they know every header the codecs read
        (extract) or write (inject); None otherwise."""
        self._cextract: Any = None
        self._cinject: Any = None
        if _cprop is None:
            return
        if self._plan is not None:
            try:
                self._cextract = _cprop.Extractor(
                    self._sole[1] if self._sole is not None else (), self._plan.names,
                    self._plan.prefixes).extract
            except ValueError:  # a header of a codec of ours that C does not read
                pass
        if self._writers is not None and self._distinct_writers:
            self._cinject = _cprop.Injector(self.codecs).inject

    def __getstate__(self) -> Any:
        """The slots but the C hooks, which belong to this process: a pickled composite
        makes its own where it is loaded (:meth:`__setstate__`)."""
        slots = {}
        for klass in type(self).__mro__:
            names = klass.__dict__.get("__slots__", ())
            for name in (names,) if isinstance(names, str) else names:
                if name not in _C_HOOKS and hasattr(self, name):
                    slots[name] = getattr(self, name)
        return None, slots

    def __setstate__(self, state: Any) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self._make_c_hooks()

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        fast = self._cinject
        if fast is None or fast(span_context, carrier) is not None:
            self._inject_python(span_context, carrier)

    def _inject_python(self, span_context: SpanContext, carrier: Any) -> None:
        """:meth:`inject` without the C path (what it does when that declines)."""
        writers = self._writers
        if writers is not None and type(carrier) is dict:
            trace_id = span_context.trace_id
            span_id = span_context.span_id
            if trace_id and span_id:
                trace_hex = "%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id
                span_hex = "%016x" % span_id
                parent_id = span_context.parent_id
                parent_hex = "%016x" % parent_id if parent_id else None
                fresh = not carrier and self._distinct_writers
                for write in writers:
                    write(span_context, carrier, trace_hex, span_hex, parent_hex, fresh)
                return
        for codec in self.codecs:
            codec.inject(span_context, carrier)

    def extract(self, carrier: Any) -> Optional[SpanContext]:
        fast = self._cextract
        if fast is not None:
            context = fast(carrier)
            if context is not _NOT_HANDLED:
                return context  # type: ignore[no-any-return]
        return self._extract_python(carrier)

    def _extract_python(self, carrier: Any) -> Optional[SpanContext]:
        """:meth:`extract` without the C path (what it does when that declines)."""
        plan = self._plan
        if plan is None:
            return self.extract_from(HeaderReader(carrier))
        present, prefix_source = read_planned(carrier, plan)
        scan = prefix_source is not None
        if not present and not scan:
            return None  # no propagation header at all: the common case of a new trace
        sole = self._sole
        if sole is not None and not scan and present.keys() <= sole[1]:
            return sole[0](present)  # type: ignore[no-any-return]
        reader: Optional[HeaderReader] = None  # made only for a codec that needs one
        primary: Optional[SpanContext] = None
        found: Optional[List[SpanContext]] = None
        for codec, names, prefixed, from_dict in self._planned:
            if not (prefixed and scan) and names.isdisjoint(present):
                continue
            if from_dict is not None:
                context = from_dict(present)
            else:
                if reader is None:
                    reader = HeaderReader.planned(present, prefix_source)
                context = codec.extract_from(reader)
            if context is None:
                continue
            if primary is None:
                primary = context
                continue
            if found is None:
                found = [primary]
            found.append(context)
            if context.has_trace and not primary.has_trace:
                primary = context
        if found is None:
            return primary
        return _merge(primary, found)  # type: ignore[arg-type]

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


_ID_WRITERS = frozenset((B3Codec, W3CCodec, JaegerCodec))
_C_HOOKS = ("_cextract", "_cinject")


def _declared_reads(codec: TextCodec) -> Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """``codec``'s ``EXTRACT_READS`` when the class that declares it also provides the
    ``extract_from`` in use (a subclass overriding it may read anything), else None."""
    cls = type(codec)
    for klass in cls.__mro__:
        reads = klass.__dict__.get("EXTRACT_READS")
        if reads is not None:
            return reads if cls.extract_from is klass.extract_from else None
        if "extract_from" in klass.__dict__:
            return None
    return None


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
