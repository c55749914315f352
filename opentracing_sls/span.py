"""The live span: mutable while open, finished exactly once.

Its state and hot methods live in a *core* class: ``_cspan.SpanCore`` (C) when it was built,
else ``_PySpanCore`` below, which behaves the same under a per-span lock. ``Span`` adds the
rest of the OpenTracing API on top of the core in use; ``PySpan`` is always the pure-Python
one (tests compare the records both make).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import types
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import opentracing
from opentracing.ext import tags as ext_tags

from ._accel import cspan
from .constants import DEBUG_FLAG, SAMPLED_FLAG
from .record import LogRecord, ReferenceRecord, SpanRecord
from .span_context import SpanContext

if TYPE_CHECKING:
    from .tracer import Tracer

logger = logging.getLogger(__name__)

_SAMPLED_AND_DEBUG = SAMPLED_FLAG | DEBUG_FLAG
_PRIORITY_KEY = ext_tags.SAMPLING_PRIORITY
_now = time.time
_new_lock = threading.Lock
_new_tuple = tuple.__new__
# A baggage change swaps the span's context (read, copy, write): rare enough for one lock.
_BAGGAGE_LOCK = threading.Lock()


class _NoLock:
    """Stands in for the lock of an unsampled span: nothing is recorded on it, so no race
    can corrupt a record; ``finish`` still flips the flag only once under the GIL."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


class _PySpanCore:
    """A span's state and hot methods in pure Python: the twin of ``_cspan.SpanCore``.

    The per-span lock keeps a tag set from another thread out of a record that ``finish``
    has already handed to the reporter (the C core needs none: each of its methods runs
    under the GIL without calling Python code between its check and its write).
    """

    __slots__ = ("_tracer", "_context", "operation_name", "start_time", "tags", "logs",
                 "references", "_finished", "_lock")

    def __init__(self, tracer: Tracer, context: SpanContext, operation_name: str,
                 start_time: Optional[float] = None,
                 references: Optional[List[ReferenceRecord]] = None) -> None:
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name
        self.start_time = _now() if start_time is None else start_time
        self.tags: Dict[str, Any] = {}
        self.logs: List[LogRecord] = []
        self.references = references
        self._finished = False
        # Unsampled spans get their lock only if ``sampling.priority`` turns them on.
        self._lock = _new_lock() if context.flags & SAMPLED_FLAG else _NO_LOCK

    def set_operation_name(self, operation_name: str) -> Any:
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> Any:
        if key == _PRIORITY_KEY:
            self._set_sampling_priority(value)
            return self
        if self._context.flags & SAMPLED_FLAG:
            try:
                kind = type(value)
                if kind is str:
                    limit = self._tracer.max_tag_value_length
                    if len(value) > limit:
                        value = value[:limit]
                elif kind is not bool and kind is not int and kind is not float:
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
        except Exception:  # noqa: BLE001 - a value int() cannot take is ignored
            return
        if self._lock is _NO_LOCK:
            self._lock = _new_lock()
        with self._lock:
            if self._finished:
                return
            context = self._context
            if priority > 0:
                context.flags |= _SAMPLED_AND_DEBUG
                self.tags[_PRIORITY_KEY] = priority
            else:
                context.flags &= ~_SAMPLED_AND_DEBUG

    def log_kv(self, key_values: Dict[str, Any], timestamp: Optional[float] = None) -> Any:
        if not self._context.flags & SAMPLED_FLAG:
            return self
        try:
            ts = _now() if timestamp is None else timestamp
            limit = self._tracer.max_tag_value_length
            fields = {}
            for key, value in key_values.items():
                kind = type(value)
                if kind is str:
                    if len(value) > limit:
                        value = value[:limit]
                elif kind is not bool and kind is not int and kind is not float:
                    value = self._log_value(value)  # type: ignore[attr-defined]
                fields[key] = value
            with self._lock:
                if not self._finished:
                    self.logs.append((int(ts * 1000000), fields))
        except Exception:  # noqa: BLE001
            self._tracer._internal_error("log_kv")
        return self

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Ends the span; a second call logs a warning and does nothing."""
        lock = self._lock
        if lock is _NO_LOCK:
            # Unsampled (and never turned on by sampling.priority): nothing to report, no
            # clock to read.
            if self._finished:
                self._warn_finished_twice()  # type: ignore[attr-defined]
                return
            self._finished = True
            self._tracer._finished_count()
            return
        end = _now() if finish_time is None else finish_time
        with lock:
            already = self._finished
            self._finished = True
        if already:
            self._warn_finished_twice()  # type: ignore[attr-defined]
            return
        self._tracer._finish_span(self, end)  # type: ignore[arg-type]

    def to_record(self, finish_time: float) -> SpanRecord:
        """The immutable record of this (finished) span."""
        context = self._context
        start = self.start_time
        duration = int((finish_time - start) * 1000000)
        # tuple.__new__ skips NamedTuple's Python-level __new__: one record per sampled span.
        return _new_tuple(SpanRecord, (
            context.trace_id, context.span_id, context.parent_id, self.operation_name,
            context.flags, int(start * 1000000), duration if duration > 0 else 0, self.tags,
            self.logs, self.references or []))

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None:
            opentracing.Span._on_error(self, exc_type, exc_val, exc_tb)
        self.finish()


class _SpanAPI(opentracing.Span):
    """The rest of the OpenTracing Span API, shared by both cores.

    Unsampled spans keep only what propagation needs: tags and logs on them are no-ops (apart
    from ``sampling.priority``, which can still turn sampling on), and ``finish()`` reports
    nothing. No method raises because of a bad tag or log value: tracing must never break the
    application.
    """

    # opentracing.Span has no __slots__, so instances still get a __dict__.
    __slots__ = ()

    @property
    def context(self) -> SpanContext:
        return self._context  # type: ignore[attr-defined,no-any-return]

    @property
    def tracer(self) -> Tracer:
        return self._tracer  # type: ignore[attr-defined,no-any-return]

    @property
    def is_sampled(self) -> bool:
        return bool(self._context.flags & SAMPLED_FLAG)  # type: ignore[attr-defined]

    @property
    def is_finished(self) -> bool:
        return bool(self._finished)  # type: ignore[attr-defined]

    def _log_value(self, value: Any) -> Any:
        tracer = self._tracer  # type: ignore[attr-defined]
        if isinstance(value, types.TracebackType):
            text = "".join(traceback.format_tb(value))
            return text[-tracer.max_traceback_length:]
        if isinstance(value, type):
            return value.__name__
        return tracer._tag_value(value)

    def set_baggage_item(self, key: str, value: Optional[str]) -> Any:
        try:
            with _BAGGAGE_LOCK:
                context = self._context  # type: ignore[attr-defined]
                old = context.baggage.get(key)
                self._context = context = context.with_baggage_item(key, value)
            if context.flags & SAMPLED_FLAG:
                fields = {"event": "baggage", "key": key, "value": value}
                if old is not None:
                    fields["override"] = "true"
                self.log_kv(fields)
        except Exception:  # noqa: BLE001
            self._tracer._internal_error("set_baggage_item")  # type: ignore[attr-defined]
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        return self._context.baggage.get(key)  # type: ignore[attr-defined,no-any-return]

    def _warn_finished_twice(self) -> None:
        name = self.operation_name  # type: ignore[attr-defined]
        self._tracer._internal_error(  # type: ignore[attr-defined]
            "finish", "finish() called twice on span %r; ignored" % name)

    def __repr__(self) -> str:
        return "<Span %r %r>" % (self.operation_name, self._context)  # type: ignore[attr-defined]


class PySpan(_PySpanCore, _SpanAPI):
    """A span with the pure-Python core, whether or not the C one was built."""

    __slots__ = ()


_cspan = cspan()

if _cspan is not None:
    class Span(_cspan.SpanCore, _SpanAPI):  # type: ignore[misc,name-defined]
        """A span of this tracer (C core)."""

        __slots__ = ()
else:
    Span = PySpan  # type: ignore[misc]
