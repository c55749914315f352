"""The live span: mutable while open, guarded by a per-span lock, finished exactly once."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import types
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import opentracing
from opentracing.ext import tags as ext_tags

from .constants import DEBUG_FLAG, SAMPLED_FLAG
from .record import LogRecord, ReferenceRecord, SpanRecord
from .span_context import SpanContext

if TYPE_CHECKING:
    from .tracer import Tracer

logger = logging.getLogger(__name__)

_PLAIN_TYPES = (str, bool, int, float, bytes)
_SAMPLED_AND_DEBUG = SAMPLED_FLAG | DEBUG_FLAG


class Span(opentracing.Span):
    """A span of this tracer.

    Unsampled spans keep only what propagation needs: tags and logs on them are no-ops (apart
    from ``sampling.priority``, which can still turn sampling on), and ``finish()`` reports
    nothing. No method raises because of a bad tag or log value: tracing must never break the
    application.
    """

    # opentracing.Span has no __slots__; declaring ours still speeds up attribute access.
    __slots__ = ("_tracer", "_context", "operation_name", "start_time", "tags", "logs",
                 "references", "_finished", "_lock")

    def __init__(self, tracer: Tracer, context: SpanContext, operation_name: str,
                 start_time: Optional[float] = None,
                 references: Optional[List[ReferenceRecord]] = None) -> None:
        # The base __init__ only sets these two attributes; skipping it saves a call per span.
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name
        self.start_time = time.time() if start_time is None else start_time
        self.tags: Dict[str, Any] = {}
        self.logs: List[LogRecord] = []
        self.references = references
        self._finished = False
        self._lock = threading.Lock()

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def tracer(self) -> Tracer:
        return self._tracer

    @property
    def is_sampled(self) -> bool:
        return bool(self._context.flags & SAMPLED_FLAG)

    @property
    def is_finished(self) -> bool:
        return self._finished

    def set_operation_name(self, operation_name: str) -> Span:
        with self._lock:
            self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> Span:
        try:
            if key == ext_tags.SAMPLING_PRIORITY:
                self._set_sampling_priority(value)
                return self
            if self._context.flags & SAMPLED_FLAG:
                value = self._tracer._tag_value(value)
                with self._lock:
                    if not self._finished:
                        self.tags[key] = value
        except Exception:  # noqa: BLE001 - a bad tag must never reach the application
            self._tracer._internal_error("set_tag")
        return self

    def _set_sampling_priority(self, value: Any) -> None:
        try:
            priority = int(value)
        except (TypeError, ValueError):
            return
        with self._lock:
            if self._finished:
                return
            context = self._context
            if priority > 0:
                context.flags |= _SAMPLED_AND_DEBUG
                self.tags[ext_tags.SAMPLING_PRIORITY] = priority
            else:
                context.flags &= ~_SAMPLED_AND_DEBUG

    def log_kv(self, key_values: Dict[str, Any], timestamp: Optional[float] = None) -> Span:
        if not self._context.flags & SAMPLED_FLAG:
            return self
        try:
            ts = time.time() if timestamp is None else timestamp
            fields = {key: self._log_value(key, value) for key, value in key_values.items()}
            with self._lock:
                if not self._finished:
                    self.logs.append((int(ts * 1000000), fields))
        except Exception:  # noqa: BLE001
            self._tracer._internal_error("log_kv")
        return self

    def _log_value(self, key: str, value: Any) -> Any:
        if isinstance(value, types.TracebackType):
            text = "".join(traceback.format_tb(value))
            return text[-self._tracer.max_traceback_length:]
        if isinstance(value, type):
            return value.__name__
        return self._tracer._tag_value(value)

    def set_baggage_item(self, key: str, value: Optional[str]) -> Span:
        try:
            with self._lock:
                old = self._context.baggage.get(key)
                self._context = self._context.with_baggage_item(key, value)
            if self._context.flags & SAMPLED_FLAG:
                fields = {"event": "baggage", "key": key, "value": value}
                if old is not None:
                    fields["override"] = "true"
                self.log_kv(fields)
        except Exception:  # noqa: BLE001
            self._tracer._internal_error("set_baggage_item")
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        return self._context.baggage.get(key)

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Ends the span; a second call logs a warning and does nothing."""
        end = time.time() if finish_time is None else finish_time
        with self._lock:
            if self._finished:
                already = True
            else:
                already = False
                self._finished = True
        if already:
            self._tracer._internal_error("finish() called twice on span %r" % self.operation_name)
            return
        self._tracer._finish_span(self, end)

    def to_record(self, finish_time: float) -> SpanRecord:
        """The immutable record of this (finished) span."""
        context = self._context
        start = self.start_time
        duration = int((finish_time - start) * 1000000)
        return SpanRecord(context.trace_id, context.span_id, context.parent_id,
                          self.operation_name, context.flags, int(start * 1000000),
                          duration if duration > 0 else 0, self.tags, self.logs,
                          self.references or [])

    def __repr__(self) -> str:
        return "<Span %r %r>" % (self.operation_name, self._context)
