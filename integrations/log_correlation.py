"""Log correlation: ``trace_id`` and ``span_id`` of the active span on log records.

Opt-in, two ways:

- :class:`TraceContextFilter`, a ``logging.Filter`` to attach to a handler (or name in a
  ``dictConfig``) whose format uses ``%(trace_id)s`` and ``%(span_id)s``;
- :func:`enable_log_correlation`, which wraps the log-record factory so every record of the
  process has the two fields (``OPENTRACING_SLS_LOG_CORRELATION=true`` with
  ``opentracing-sls run``).

Ids are lower-case hex, 16 digits (32 for a 128-bit trace id), as the Jaeger UI shows them;
both fields are empty strings when no span is active. OpenTracing has no id accessor, so the
ids are read from the span context's ``trace_id``/``span_id`` integers, which this tracer,
jaeger-client and ``opentracing.mocktracer`` all have; other tracers give empty fields.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional, Tuple

import opentracing

from . import diagnostics

TRACE_ID = "trace_id"
SPAN_ID = "span_id"
_ERRORS = "integrations.logging.errors"

_lock = threading.Lock()
_installed: Optional[Callable[..., logging.LogRecord]] = None
_previous: Optional[Callable[..., logging.LogRecord]] = None
_enabled = False


def current_ids(tracer: Optional[opentracing.Tracer] = None) -> Tuple[str, str]:
    """(trace id, span id) of the active span in hex, or ("", "") when there is none."""
    try:
        span = (tracer or opentracing.global_tracer()).active_span
        if span is None:
            return "", ""
        context = span.context
        trace_id = getattr(context, "trace_id", None)
        span_id = getattr(context, "span_id", None)
        if not isinstance(trace_id, int) or not isinstance(span_id, int):
            return "", ""
        return ("%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id,
                "%016x" % span_id)
    except Exception:  # noqa: BLE001
        diagnostics.internal_error(_ERRORS, "reading the active span for a log record")
        return "", ""


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to each record it sees; never drops a record."""

    def __init__(self, name: str = "", tracer: Optional[opentracing.Tracer] = None) -> None:
        super().__init__(name)
        self.tracer = tracer

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, TRACE_ID):
            record.trace_id, record.span_id = current_ids(self.tracer)
        return True


def enable_log_correlation() -> bool:
    """Every log record created from now on carries ``trace_id``/``span_id``. Idempotent;
    returns False when it was already enabled."""
    global _installed, _previous, _enabled
    with _lock:
        if _enabled:
            return False
        _enabled = True
        if _installed is not None and _in_factory_chain(_installed):
            return True  # still in place under a later factory: re-enabled by the flag
        previous = logging.getLogRecordFactory()

        def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _enabled:
                record.trace_id, record.span_id = current_ids()
            return record

        record_factory.__wrapped__ = previous  # type: ignore[attr-defined]
        _previous = previous
        _installed = record_factory
        logging.setLogRecordFactory(record_factory)
        return True


def disable_log_correlation() -> bool:
    """Undoes :func:`enable_log_correlation`: restores the previous factory if ours is still
    the current one, else leaves ours as a pass-through. Returns False if not enabled."""
    global _installed, _previous, _enabled
    with _lock:
        if not _enabled:
            return False
        _enabled = False
        if _installed is not None and logging.getLogRecordFactory() is _installed:
            logging.setLogRecordFactory(_previous)  # type: ignore[arg-type]
            _installed = _previous = None
        return True


def _in_factory_chain(factory: Callable[..., Any]) -> bool:
    current: Any = logging.getLogRecordFactory()
    for _ in range(32):
        if current is None:
            return False
        if current is factory:
            return True
        current = getattr(current, "__wrapped__", None)
    return False
