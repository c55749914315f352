"""The tracers under test, behind one small interface: ours, jaeger-client and OpenTelemetry.

Each ``Subject`` knows how to make the benchmark's spans with its own API (loops written out
as an application would write them), flush, count its own losses and shut down cleanly:
jaeger-client's ``close()`` Future is polled with a deadline and its IOLoop thread stopped;
OpenTelemetry's provider is shut down.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jaeger_client
from _common import (
    CHILD_OP,
    EVENT_NAME,
    INT_VALUE,
    PARENT_OP,
    STR_VALUE,
    TAG_BOOL,
    TAG_INT,
    TAG_STR,
    WARMUP_OP,
    versions,
)
from _sinks import DEFAULT_QUIET, Sink, Sinks
from jaeger_client.metrics import MetricsFactory
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import opentracing_sls


class Subject:
    """A tracer under test: how to make spans with it, flush it, count its losses, close it.

    ``sent`` counts the benchmark's child spans made so far (``child_loop`` adds to it;
    callers of ``child_once`` add theirs, to keep the per-span path free of bookkeeping).
    """

    key = ""
    label = ""

    def __init__(self, sink: Sink, service: str) -> None:
        self.sink = sink
        self.service = service
        self.tracer: Any = None
        self.sent = 0

    # Loops are written out per API, as an application would write them: no helper call per
    # span, so the figures are the tracer's cost plus a for-loop (~0.02 us).
    def child_loop(self, n: int) -> None:
        """``n`` child spans of the benchmark's shape; the caller keeps a parent active."""
        raise NotImplementedError

    def child_once(self) -> None:
        """One child span of the benchmark's shape (for the paced loops)."""
        raise NotImplementedError

    def warmup_loop(self, n: int) -> None:
        """``n`` spans named ``warmup``: starts threads and sockets, fills caches."""
        raise NotImplementedError

    def parent(self) -> Any:
        """Context manager activating a parent span."""
        raise NotImplementedError

    def unsampled_loops(self) -> Dict[str, Callable[[int], None]]:
        """Loops over unsampled spans: ``root``, ``child`` (of an active unsampled parent)
        and ``active`` (scope-activated, under an active unsampled parent)."""
        raise NotImplementedError

    def flush(self, timeout: float = 30.0) -> None:
        """Pushes queued spans out now, where the tracer can; jaeger-client cannot."""

    def dropped(self) -> int:
        """Spans the tracer itself dropped (queue full, send failed ...)."""
        return 0

    def close(self, timeout: float = 15.0) -> bool:
        raise NotImplementedError

    def settings(self) -> str:
        """The reporter's queue and batching settings, for the tables."""
        return ""

    def payloads(self) -> Tuple[int, int]:
        """(payloads, bytes) the sink has received from this tracer so far."""
        snap = self.sink.snapshot()
        return snap["payloads"].get(self.service, 0), snap["bytes"].get(self.service, 0)

    def warm_up(self, n: int, timeout: float = 10.0) -> None:
        """Makes ``n`` warm-up spans under a parent and waits until the sink has them."""
        with self.parent():
            self.warmup_loop(n)
        self.flush(timeout)
        self.sink.wait_for(self.service, WARMUP_OP, n, timeout)

    def delivered(self, timeout: float = 30.0, quiet: float = DEFAULT_QUIET
                  ) -> Tuple[int, int]:
        """Flushes, then waits until the sink has every child span not dropped (or goes
        quiet); returns (received, received with the expected shape)."""
        self.flush(timeout)
        return self.sink.wait_for(self.service, CHILD_OP, self.sent - self.dropped(), timeout,
                                  quiet)


class _OpenTracingSubject(Subject):
    def child_loop(self, n: int) -> None:
        tracer = self.tracer
        for _ in range(n):
            with tracer.start_active_span(CHILD_OP) as scope:
                span = scope.span
                span.set_tag(TAG_STR, STR_VALUE)
                span.set_tag(TAG_INT, INT_VALUE)
                span.set_tag(TAG_BOOL, True)
                span.log_kv({"event": "lookup", "value": 42})
        self.sent += n

    def child_once(self) -> None:
        with self.tracer.start_active_span(CHILD_OP) as scope:
            span = scope.span
            span.set_tag(TAG_STR, STR_VALUE)
            span.set_tag(TAG_INT, INT_VALUE)
            span.set_tag(TAG_BOOL, True)
            span.log_kv({"event": "lookup", "value": 42})

    def warmup_loop(self, n: int) -> None:
        for _ in range(n):
            with self.tracer.start_active_span(WARMUP_OP) as scope:
                scope.span.set_tag(TAG_STR, STR_VALUE)
                scope.span.log_kv({"event": "lookup", "value": 42})

    def parent(self) -> Any:
        return self.tracer.start_active_span(PARENT_OP)

    def unsampled_loops(self) -> Dict[str, Callable[[int], None]]:
        tracer = self.tracer

        def root(n: int) -> None:
            for _ in range(n):
                tracer.start_span("op").finish()

        def child(n: int) -> None:
            with tracer.start_active_span(PARENT_OP):
                for _ in range(n):
                    tracer.start_span("op").finish()

        def active(n: int) -> None:
            with tracer.start_active_span(PARENT_OP):
                for _ in range(n):
                    with tracer.start_active_span("op"):
                        pass

        return {"root": root, "child": child, "active": active}


class Ours(_OpenTracingSubject):
    key = "ours"

    def __init__(self, sink: Sink, service: str, sampled: bool = True,
                 queue_size: Optional[int] = None) -> None:
        super().__init__(sink, service)
        self.label = "opentracing-sls " + versions()["ours"]
        config: Dict[str, Any] = {
            "sampler": {"type": "const", "param": 1 if sampled else 0},
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": sink.port},
        }
        if queue_size:
            config["reporter_queue_size"] = queue_size
        self.config = config
        self.tracer = opentracing_sls.Config(config, service_name=service).new_tracer()

    def flush(self, timeout: float = 30.0) -> None:
        self.tracer.flush(timeout)

    def settings(self) -> str:
        r = self.tracer.reporter
        return "queue %d, batch %d, flush %gs" % (r.queue_size, r.batch_size, r.flush_interval)

    def metrics(self) -> Dict[str, int]:
        return self.tracer.metrics.snapshot()

    def dropped(self) -> int:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("reporter.spans.dropped."))

    def close(self, timeout: float = 15.0) -> bool:
        return bool(self.tracer.close(timeout))


class _JaegerCounters(MetricsFactory):
    """A jaeger-client MetricsFactory that counts only the reporter's outcomes.

    Every other metric stays the base factory's no-op, so the tracer's hot path costs no
    more than with jaeger-client's default (its LegacyMetricsFactory calls a no-op too).
    """

    def __init__(self) -> None:
        self.values: Dict[str, int] = {}
        self._lock = threading.Lock()

    def create_counter(self, name: str, tags: Optional[Dict[str, str]] = None) -> Any:
        if name != "jaeger:reporter_spans":
            return super().create_counter(name, tags)
        key = (tags or {}).get("result", "")

        def inc(value: int) -> None:
            with self._lock:
                self.values[key] = self.values.get(key, 0) + value

        return inc


class Jaeger(_OpenTracingSubject):
    key = "jaeger"

    def __init__(self, sink: Sink, service: str, sampled: bool = True,
                 queue_size: Optional[int] = None) -> None:
        super().__init__(sink, service)
        self.label = "jaeger-client " + versions()["jaeger"]
        config: Dict[str, Any] = {
            "sampler": {"type": "const", "param": 1 if sampled else 0},
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": sink.port},
        }
        if queue_size:
            config["reporter_queue_size"] = queue_size
        self.config = config
        self.counters = _JaegerCounters()
        self.tracer = jaeger_client.Config(config, service_name=service,
                                           metrics_factory=self.counters).new_tracer()
        self._closed: Optional[bool] = None

    def dropped(self) -> int:
        return self.counters.values.get("dropped", 0) + self.counters.values.get("err", 0)

    def reported(self) -> int:
        return self.counters.values.get("ok", 0)

    def settings(self) -> str:
        r = self.tracer.reporter
        return "queue %d, batch %d, flush %gs" % (r.queue_capacity, r.batch_size,
                                                 r.flush_interval)

    def close(self, timeout: float = 15.0) -> bool:
        """``tracer.close()`` returns a Future completed on the IOLoop thread: poll it with a
        deadline instead of blocking, then stop that thread and close its UDP socket."""
        if self._closed is not None:
            return self._closed
        deadline = time.monotonic() + timeout
        future = self.tracer.close()
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        ok = future.done()
        channel = self.tracer.reporter._channel
        thread_loop = getattr(channel, "_thread_loop", None)
        if thread_loop is not None and thread_loop._thread is not None:
            io_loop = thread_loop._io_loop
            # ThreadLoop.stop() calls IOLoop.stop() from this thread; asyncio loops are not
            # thread-safe, so schedule the stop on the loop itself.
            io_loop.add_callback(io_loop.stop)
            thread_loop._thread.join(max(0.5, deadline - time.monotonic()))
            if not thread_loop._thread.is_alive():
                try:
                    io_loop.close(all_fds=False)
                except Exception:  # noqa: BLE001 - best effort on a peer's internals
                    pass
            else:
                ok = False
        try:
            channel.close()  # the TUDPTransport socket
        except Exception:  # noqa: BLE001
            pass
        self._closed = ok
        return ok


class _JsonUdpExporter(SpanExporter):
    """Fallback OpenTelemetry exporter: each span as one JSON line, lines packed into UDP
    datagrams of at most 65 000 bytes (the same limit as Jaeger's agent protocol)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.address = (host, port)

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        packet: List[bytes] = []
        size = 0
        try:
            for span in spans:
                ctx = span.context
                line = json.dumps({
                    "service": span.resource.attributes.get("service.name", ""),
                    "name": span.name, "trace_id": "%032x" % ctx.trace_id,
                    "span_id": "%016x" % ctx.span_id,
                    "parent_id": "%016x" % span.parent.span_id if span.parent else None,
                    "start": span.start_time, "end": span.end_time,
                    "attributes": dict(span.attributes or {}),
                    "events": [{"name": e.name, "time": e.timestamp,
                                "attributes": dict(e.attributes or {})} for e in span.events],
                }, separators=(",", ":")).encode()
                if packet and size + len(line) + 1 > 65000:
                    self.sock.sendto(b"\n".join(packet), self.address)
                    packet, size = [], 0
                packet.append(line)
                size += len(line) + 1
            if packet:
                self.sock.sendto(b"\n".join(packet), self.address)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.sock.close()


class _CountingExporter(SpanExporter):
    """Wraps an exporter to count the child spans the BatchSpanProcessor handed over."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.handed = 0
        self.failed = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        # Only the benchmark's child spans, to compare with what the benchmark made.
        children = sum(1 for span in spans if span.name == CHILD_OP)
        self.handed += children
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += children
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class OTel(Subject):
    key = "otel"

    def __init__(self, sink: Sink, service: str, sampled: bool = True,
                 queue_size: Optional[int] = None) -> None:
        super().__init__(sink, service)
        self.label = "opentelemetry-sdk " + versions()["otel"]
        if sink.kind == "otlp-http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            inner = OTLPSpanExporter(endpoint=sink.endpoint)
        else:
            inner = _JsonUdpExporter("127.0.0.1", sink.port)
        self.exporter = _CountingExporter(inner)
        self.provider = TracerProvider(
            sampler=ALWAYS_ON if sampled else ALWAYS_OFF,
            resource=Resource.create({"service.name": service}),
            shutdown_on_exit=False)
        kwargs = {"max_queue_size": queue_size} if queue_size else {}
        self.processor = BatchSpanProcessor(self.exporter, **kwargs)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("bench")
        self._closed = False

    def child_loop(self, n: int) -> None:
        tracer = self.tracer
        for _ in range(n):
            with tracer.start_as_current_span(CHILD_OP) as span:
                span.set_attribute(TAG_STR, STR_VALUE)
                span.set_attribute(TAG_INT, INT_VALUE)
                span.set_attribute(TAG_BOOL, True)
                span.add_event(EVENT_NAME, {"event": "lookup", "value": 42})
        self.sent += n

    def child_once(self) -> None:
        with self.tracer.start_as_current_span(CHILD_OP) as span:
            span.set_attribute(TAG_STR, STR_VALUE)
            span.set_attribute(TAG_INT, INT_VALUE)
            span.set_attribute(TAG_BOOL, True)
            span.add_event(EVENT_NAME, {"event": "lookup", "value": 42})

    def warmup_loop(self, n: int) -> None:
        for _ in range(n):
            with self.tracer.start_as_current_span(WARMUP_OP) as span:
                span.set_attribute(TAG_STR, STR_VALUE)
                span.add_event(EVENT_NAME, {"event": "lookup", "value": 42})

    def parent(self) -> Any:
        return self.tracer.start_as_current_span(PARENT_OP)

    def unsampled_loops(self) -> Dict[str, Callable[[int], None]]:
        tracer = self.tracer

        def root(n: int) -> None:
            for _ in range(n):
                tracer.start_span("op").end()

        def child(n: int) -> None:
            with tracer.start_as_current_span(PARENT_OP):
                for _ in range(n):
                    tracer.start_span("op").end()

        def active(n: int) -> None:
            with tracer.start_as_current_span(PARENT_OP):
                for _ in range(n):
                    with tracer.start_as_current_span("op"):
                        pass

        return {"root": root, "child": child, "active": active}

    def flush(self, timeout: float = 30.0) -> None:
        self.provider.force_flush(int(timeout * 1000))

    def settings(self) -> str:
        # Private attributes of the SDK's shared BatchProcessor; display only.
        p = getattr(self.processor, "_batch_processor", None)
        try:
            return "queue %d, batch %d, delay %gs" % (
                p._max_queue_size, p._max_export_batch_size, p._schedule_delay)
        except AttributeError:
            return "BatchSpanProcessor"

    def dropped(self) -> int:
        # The BatchSpanProcessor counts drops only in opt-in internal metrics; what it never
        # handed to the exporter is what it dropped (exact once flushed).
        return max(0, self.sent - self.exporter.handed) + self.exporter.failed

    def close(self, timeout: float = 15.0) -> bool:
        if not self._closed:
            self._closed = True
            self.provider.shutdown()
        return True


SUBJECTS = (Ours, Jaeger, OTel)


def make_subject(cls: Any, sinks: Sinks, prefix: str, sampled: bool = True,
                 queue_size: Optional[int] = None) -> Subject:
    """A subject of class ``cls``, with its own service name so the sinks count apart."""
    sink = sinks.otel if cls is OTel else sinks.udp
    return cls(sink, "%s-%s" % (prefix, cls.key), sampled, queue_size)


def make_subjects(sinks: Sinks, prefix: str, sampled: bool = True,
                  queue_size: Optional[int] = None) -> List[Subject]:
    """One subject per tracer: ours, jaeger-client, OpenTelemetry."""
    made: List[Subject] = []
    try:
        for cls in SUBJECTS:
            made.append(make_subject(cls, sinks, prefix, sampled, queue_size))
    except BaseException:
        close_all(made)
        raise
    return made


def close_all(subjects: Sequence[Subject], timeout: float = 15.0) -> None:
    for subject in subjects:
        try:
            if not subject.close(timeout):
                print("warning: %s did not close within %.0f s" % (subject.label, timeout),
                      file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - close the others anyway
            print("warning: closing %s failed: %r" % (subject.label, exc), file=sys.stderr)
