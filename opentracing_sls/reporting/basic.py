"""The reporter interface and the simple reporters: null, in-memory, logging, composite.

The batching reporter that sends spans to jaeger-agent lives in :mod:`.reporter`; everything
here is synchronous and has no threads, sockets or queues.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

from ..ids import id_to_hex, trace_id_to_hex
from ..metrics import Metrics
from ..record import SpanRecord

#: Counted when a span is reported to a reporter that has been closed.
DROPPED_CLOSED = "reporter.spans.dropped.closed"


class BaseReporter:
    """What the tracer needs from a reporter.

    The tracer calls :meth:`set_process` once, :meth:`report_span` for every finished sampled
    span, and :meth:`flush` / :meth:`close` on shutdown. ``report_span`` must never block and
    never raise: it runs on the application's threads.
    """

    metrics: Metrics

    def __init__(self, metrics: Optional[Metrics] = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.service_name: str = ""
        self.process_tags: Dict[str, Any] = {}
        self._closed = False
        self._dropped_closed = self.metrics.counter(DROPPED_CLOSED)

    def set_process(self, service_name: str, tags: Mapping[str, Any]) -> None:
        """Records the reporting process (service name and process-level tags)."""
        self.service_name = service_name
        self.process_tags = dict(tags)

    def report_span(self, record: SpanRecord) -> None:
        """Accepts one finished span; never blocks, never raises."""
        raise NotImplementedError

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until every span reported before the call is delivered; True if in time."""
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes and releases resources; idempotent. Later spans are dropped and counted."""
        self._closed = True
        return True

    @property
    def closed(self) -> bool:
        return self._closed


class NullReporter(BaseReporter):
    """Discards every span (the reporter of a disabled tracer)."""

    def report_span(self, record: SpanRecord) -> None:
        pass


class InMemoryReporter(BaseReporter):
    """Keeps finished spans in a list, for tests (yours and ours).

    Spans reported after :meth:`close` are dropped and counted like in every other reporter;
    the spans collected before stay available through :meth:`get_spans`.
    """

    def __init__(self, metrics: Optional[Metrics] = None) -> None:
        super().__init__(metrics)
        self._spans: List[SpanRecord] = []
        self._lock = threading.Lock()

    def report_span(self, record: SpanRecord) -> None:
        if self._closed:
            self._dropped_closed.inc()
            return
        with self._lock:
            self._spans.append(record)

    def get_spans(self) -> List[SpanRecord]:
        """A copy of the spans reported so far, in finish order."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        """Forgets every collected span."""
        with self._lock:
            self._spans.clear()


class LoggingReporter(BaseReporter):
    """Logs one line per finished span (``trace:span:parent:flags service.operation``).

    Useful next to the batching reporter while debugging (jaeger-client's ``logging: true``).
    """

    def __init__(
        self,
        logger: Optional[logging.Logger] = None,
        level: int = logging.INFO,
        metrics: Optional[Metrics] = None,
    ) -> None:
        super().__init__(metrics)
        self.logger = logger if logger is not None else logging.getLogger("opentracing_sls.spans")
        self.level = level

    def report_span(self, record: SpanRecord) -> None:
        if self._closed:
            self._dropped_closed.inc()
            return
        try:
            # Checked first so a disabled logger costs nothing but this call.
            if self.logger.isEnabledFor(self.level):
                self.logger.log(
                    self.level,
                    "Reporting span %s:%s:%s:%x %s.%s",
                    trace_id_to_hex(record.trace_id),
                    id_to_hex(record.span_id),
                    id_to_hex(record.parent_id),
                    record.flags,
                    self.service_name,
                    record.operation_name,
                )
        except Exception:  # never break the app because a log line could not be built
            pass


class CompositeReporter(BaseReporter):
    """Fans every call out to several reporters; one failing reporter never affects the others."""

    def __init__(self, *reporters: BaseReporter, metrics: Optional[Metrics] = None) -> None:
        super().__init__(metrics)
        self.reporters = list(reporters)

    def set_process(self, service_name: str, tags: Mapping[str, Any]) -> None:
        super().set_process(service_name, tags)
        for reporter in self.reporters:
            reporter.set_process(service_name, tags)

    def report_span(self, record: SpanRecord) -> None:
        for reporter in self.reporters:
            try:
                reporter.report_span(record)
            except Exception:  # a broken child reporter must not raise into the app
                pass

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self._each("flush", timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        self._closed = True
        return self._each("close", timeout)

    def _each(self, method: str, timeout: Optional[float]) -> bool:
        # One deadline for the whole call, so N reporters do not wait N times the timeout.
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for reporter in self.reporters:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok = getattr(reporter, method)(remaining) and ok
            except Exception:  # flush/close run at shutdown: report failure, do not raise
                ok = False
        return ok
