"""The OpenTracing 2.x tracer."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import opentracing
from opentracing import Format, Scope, ScopeManager, UnsupportedFormatException

from . import ids
from ._accel import cspan
from .constants import (
    CLIENT_VERSION,
    DEBUG_FLAG,
    JAEGER_HOSTNAME_TAG_KEY,
    JAEGER_IP_TAG_KEY,
    JAEGER_VERSION_TAG_KEY,
    MAX_TAG_VALUE_LENGTH,
    MAX_TRACEBACK_LENGTH,
    SAMPLED_FLAG,
)
from .metrics import Metrics
from .propagation import DEFAULT_PROPAGATION, BinaryCodec, Codec, build_text_codec
from .record import CHILD_OF, FOLLOWS_FROM, ReferenceRecord
from .reporting import BaseReporter
from .sampling import Sampler
from .scope_managers import ContextVarsScopeManager
from .span import Span
from .span_context import SpanContext

logger = logging.getLogger(__name__)

_getrandbits = ids._getrandbits
_PRIORITY_KEY = opentracing.ext.tags.SAMPLING_PRIORITY

_SAMPLED_AND_DEBUG = SAMPLED_FLAG | DEBUG_FLAG
_ERROR_LOG_INTERVAL = 60.0


class _PyTracerCore:
    """``start_span``/``start_active_span`` in pure Python: the twin of ``_cspan.TracerCore``,
    which handles the common shapes itself and calls ``_start_span`` for the rest."""

    def start_active_span(
        self,
        operation_name: str,
        child_of: Any = None,
        references: Optional[List[opentracing.Reference]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        start_time: Optional[float] = None,
        ignore_active_span: bool = False,
        finish_on_close: bool = True,
    ) -> Scope:
        # Through start_span, which a subclass or the instance may have replaced.
        return self._scope_manager.activate(  # type: ignore[attr-defined,no-any-return]
            self.start_span(operation_name, child_of, references, tags, start_time,
                            ignore_active_span),
            finish_on_close)

    def start_span(
        self,
        operation_name: Optional[str] = None,
        child_of: Any = None,
        references: Optional[List[opentracing.Reference]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        start_time: Optional[float] = None,
        ignore_active_span: bool = False,
    ) -> Span:
        return self._start_span(  # type: ignore[attr-defined,no-any-return]
            operation_name, child_of, references, tags, start_time, ignore_active_span)


_cspan = cspan()
if _cspan is not None:
    _cspan.set_tracer_types(context_type=SpanContext, span_type=Span)
    _TracerCore: Any = _cspan.TracerCore
else:
    _TracerCore = _PyTracerCore


class Tracer(_TracerCore, opentracing.Tracer):
    """Creates spans, decides sampling, propagates contexts and hands finished spans to a reporter.

    Sampling is parent-based: a child follows its parent's decision; a context extracted with
    ids but no decision (``sampling_deferred``) and a root span ask the local ``sampler``;
    a debug id (``jaeger-debug-id``) or the debug flag forces sampling.
    """

    def __init__(
        self,
        service_name: str,
        reporter: BaseReporter,
        sampler: Sampler,
        scope_manager: Optional[ScopeManager] = None,
        propagation: Sequence[str] = DEFAULT_PROPAGATION,
        tags: Optional[Mapping[str, Any]] = None,
        max_tag_value_length: int = MAX_TAG_VALUE_LENGTH,
        max_traceback_length: int = MAX_TRACEBACK_LENGTH,
        generate_128bit_trace_id: bool = False,
        metrics: Optional[Metrics] = None,
    ) -> None:
        if not service_name or not isinstance(service_name, str):
            raise ValueError("service_name must be a non-empty string")
        # Not super(): the C core's __init__ is object's and would skip opentracing.Tracer's.
        opentracing.Tracer.__init__(self, scope_manager or ContextVarsScopeManager())
        self.service_name = service_name
        self.reporter = reporter
        self.sampler = sampler
        self.max_tag_value_length = max_tag_value_length
        self.max_traceback_length = max_traceback_length
        self.generate_128bit_trace_id = generate_128bit_trace_id
        self.metrics = metrics or getattr(reporter, "metrics", None) or Metrics()
        self.tags: Dict[str, Any] = {
            JAEGER_VERSION_TAG_KEY: CLIENT_VERSION,
            JAEGER_HOSTNAME_TAG_KEY: socket.gethostname(),
        }
        ip = _local_ip()
        if ip:
            self.tags[JAEGER_IP_TAG_KEY] = ip
        self.tags.update(tags or {})
        self.codecs: Dict[str, Codec] = {
            Format.TEXT_MAP: build_text_codec(propagation, url_encoding=False),
            Format.HTTP_HEADERS: build_text_codec(propagation, url_encoding=True),
            Format.BINARY: BinaryCodec(),
        }
        m = self.metrics
        self._trace_id_bits = 128 if generate_128bit_trace_id else 64
        self._started_sampled = m.counter("tracer.spans.started.sampled").hot()
        self._started_unsampled = m.counter("tracer.spans.started.unsampled").hot()
        self._finished_count = m.counter("tracer.spans.finished").hot()
        self._errors = m.counter("tracer.internal_errors").hot()
        self._traces_sampled = m.counter("tracer.traces.started.sampled").hot()
        self._traces_unsampled = m.counter("tracer.traces.started.unsampled").hot()
        self._last_error_log: Dict[str, float] = {}
        self._report = reporter.report_span
        self._closed = False
        reporter.set_process(service_name, self.tags)

    # -- spans ---------------------------------------------------------------------------------

    # start_span(operation_name=None, child_of=None, references=None, tags=None,
    # start_time=None, ignore_active_span=False) and start_active_span(operation_name, ...,
    # finish_on_close=True) come from the core, which calls this for what it does not take.

    def _start_span(
        self,
        operation_name: Optional[str],
        child_of: Any,
        references: Optional[List[opentracing.Reference]],
        tags: Optional[Mapping[str, Any]],
        start_time: Optional[float],
        ignore_active_span: bool,
    ) -> Span:
        """Every shape of start_span: references, foreign parents, deferred sampling ..."""
        parent = child_of
        refs: Optional[List[ReferenceRecord]] = None
        if references:
            parent, refs = self._read_references(parent, references)
        if parent is None:
            if not ignore_active_span:
                scope = self._scope_manager.active
                if scope is not None:
                    parent = scope.span.context
        elif type(parent) is not SpanContext and isinstance(parent, opentracing.Span):
            parent = parent.context
        if type(parent) is not SpanContext and not isinstance(parent, SpanContext):
            # None, a foreign tracer's context, or garbage: start a new trace.
            parent = None

        sampler_tags = None
        if parent is None:
            # The common root case, inlined (the same decision as the tail of _decide): a
            # call less per root span matters on the unsampled path.
            trace_id = _getrandbits(self._trace_id_bits) or ids.new_trace_id(
                self.generate_128bit_trace_id)
            try:
                sampled, sampler_tags = self.sampler.is_sampled(trace_id, operation_name or "")
            except Exception:  # noqa: BLE001 - a broken sampler must not break the app
                self._internal_error("sampler")
                sampled = False
            if sampled:
                self._traces_sampled()
            else:
                self._traces_unsampled()
            context = SpanContext(trace_id, _getrandbits(64) or ids.new_id(), 0,
                                  SAMPLED_FLAG if sampled else 0)
        elif parent.trace_id and parent.span_id and not parent.sampling_deferred:
            context = SpanContext(parent.trace_id, _getrandbits(64) or ids.new_id(),
                                  parent.span_id, parent.flags, parent._baggage, None, False,
                                  parent.trace_state)
        elif parent.trace_id and parent.span_id:
            context, sampler_tags = self._decide(parent.trace_id, ids.new_id(), parent.span_id,
                                                 operation_name, parent)
        else:
            context, sampler_tags = self._decide(ids.new_trace_id(self.generate_128bit_trace_id),
                                                 ids.new_id(), 0, operation_name, parent)
        span = Span(self, context, operation_name or "", start_time, refs)
        if context.flags & SAMPLED_FLAG:
            self._started_sampled()
            if sampler_tags:
                span.tags.update(sampler_tags)
            if tags:
                for key, value in tags.items():
                    span.set_tag(key, value)
        else:
            self._started_unsampled()
            if tags and _PRIORITY_KEY in tags:
                span.set_tag(_PRIORITY_KEY, tags[_PRIORITY_KEY])
        return span

    def _decide(self, trace_id: int, span_id: int, parent_id: int, operation_name: Optional[str],
                parent: Optional[SpanContext]) -> Any:
        """Context for a span whose sampling this tracer decides (roots and deferred children)."""
        baggage = None
        trace_state = None
        sampler_tags: Optional[Dict[str, Any]] = None
        if parent is not None:
            baggage = parent._baggage
            trace_state = parent.trace_state
            if parent.debug_id:
                context = SpanContext(trace_id, span_id, parent_id, _SAMPLED_AND_DEBUG, baggage,
                                      None, False, trace_state)
                self._traces_sampled()
                return context, {"jaeger-debug-id": parent.debug_id}
            if parent.flags & DEBUG_FLAG:
                self._traces_sampled()
                return SpanContext(trace_id, span_id, parent_id, _SAMPLED_AND_DEBUG, baggage,
                                   None, False, trace_state), None
            if not parent.sampling_deferred and not parent.trace_id:
                # A bare upstream decision (``b3: 0`` / ``b3: 1``) without ids.
                flags = parent.flags & SAMPLED_FLAG
                (self._traces_sampled if flags else self._traces_unsampled)()
                return SpanContext(trace_id, span_id, parent_id, flags, baggage, None, False,
                                   trace_state), None
        try:
            sampled, sampler_tags = self.sampler.is_sampled(trace_id, operation_name or "")
        except Exception:  # noqa: BLE001 - a broken sampler must not break the app
            self._internal_error("sampler")
            sampled, sampler_tags = False, None
        if sampled:
            self._traces_sampled()
        else:
            self._traces_unsampled()
        return SpanContext(trace_id, span_id, parent_id, SAMPLED_FLAG if sampled else 0,
                           baggage, None, False, trace_state), sampler_tags

    @staticmethod
    def _read_references(parent: Any, references: List[opentracing.Reference]) -> Any:
        """Reference records and the parent: ``child_of``, else the first CHILD_OF, else any."""
        refs: List[ReferenceRecord] = []
        first_child_of = first_any = None
        for ref in references:
            context = ref.referenced_context
            if isinstance(context, opentracing.Span):
                context = context.context
            if not isinstance(context, SpanContext) or not context.trace_id:
                continue
            is_follows = ref.type == opentracing.ReferenceType.FOLLOWS_FROM
            refs.append((FOLLOWS_FROM if is_follows else CHILD_OF, context.trace_id,
                         context.span_id))
            if first_any is None:
                first_any = context
            if first_child_of is None and not is_follows:
                first_child_of = context
        if parent is None:
            parent = first_child_of or first_any
        return parent, refs

    def _finish_span(self, span: Span, finish_time: float) -> None:
        self._finished_count()
        if span._context.flags & SAMPLED_FLAG:
            try:
                self._report(span.to_record(finish_time))
            except Exception:  # noqa: BLE001
                self._internal_error("report_span")

    def _tag_value(self, value: Any) -> Any:
        """A tag or log value as stored: plain types kept, strings truncated, the rest str()."""
        kind = type(value)
        if kind is str:
            return value if len(value) <= self.max_tag_value_length \
                else value[:self.max_tag_value_length]
        if kind is bool or kind is int or kind is float:
            return value
        if kind is bytes or kind is bytearray:
            return bytes(value[:self.max_tag_value_length])
        text = str(value)
        return text if len(text) <= self.max_tag_value_length \
            else text[:self.max_tag_value_length]

    def _internal_error(self, what: str, detail: str = "") -> None:
        """Counts an internal error and logs it, the first time and then once a minute per kind.

        Called from ``except`` blocks (the traceback is logged) and for API misuse such as a
        second ``finish()`` (``detail`` says what happened; there is no traceback).
        """
        self._errors()
        now = time.monotonic()
        last = self._last_error_log.get(what)
        if last is None or now - last >= _ERROR_LOG_INTERVAL:
            self._last_error_log[what] = now
            if detail:
                logger.warning("opentracing_sls: %s", detail)
            else:
                logger.warning("opentracing_sls: internal error in %s", what, exc_info=True)

    # -- propagation ---------------------------------------------------------------------------

    def inject(self, span_context: Any, format: str, carrier: Any) -> None:
        """Writes ``span_context`` (a SpanContext or a Span) into ``carrier``."""
        codec = self.codecs.get(format)
        if codec is None:
            raise UnsupportedFormatException(format)
        kind = type(span_context)
        if kind is Span:  # the common cases first: one type check, no isinstance
            span_context = span_context.context
        elif kind is not SpanContext:
            if isinstance(span_context, opentracing.Span):
                span_context = span_context.context
            if not isinstance(span_context, SpanContext):
                return
        codec.inject(span_context, carrier)

    def extract(self, format: str, carrier: Any) -> Optional[SpanContext]:
        """The context in ``carrier``, or None when it holds none or only malformed data."""
        codec = self.codecs.get(format)
        if codec is None:
            raise UnsupportedFormatException(format)
        return codec.extract(carrier)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Blocks until every finished span so far is sent; False if ``timeout`` ran out."""
        return self.reporter.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stops the sampler and reporter after delivering queued spans; idempotent."""
        if self._closed:
            return True
        self._closed = True
        try:
            self.sampler.close()
        except Exception:  # noqa: BLE001
            self._internal_error("sampler.close")
        return self.reporter.close(timeout)


def _local_ip() -> Optional[str]:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
