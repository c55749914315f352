"""Sinks: where decoded spans go. Each sink writes from its own thread behind a bounded
queue, so a slow sink never stalls reception; every span it cannot take is counted."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from ..record import SpanRecord
from ..reporting.encoding import get_encoder
from .metrics import ShimMetrics
from .model import Process, Span, Tag

logger = logging.getLogger(__name__)

_LOG_INTERVAL = 60.0
#: Spans merged into one write (one SQLite transaction, one round of datagrams).
_WRITE_CHUNK = 5000


class Sink:
    """A bounded span queue drained by one worker thread calling :meth:`write`."""

    name = "sink"
    #: Seconds the worker may wait for ``linger_spans`` to gather before writing fewer (0:
    #: write whatever is queued at once). A write has a fixed cost (a transaction), so
    #: small ones cost more per span exactly when the sink has least time to spare.
    linger = 0.0
    linger_spans = _WRITE_CHUNK

    def __init__(self, metrics: ShimMetrics, max_spans: int) -> None:
        self.metrics = metrics
        self.max_spans = max_spans
        self._queue: Deque[List[Span]] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._flushing = 0  # drain() calls waiting: no lingering
        self._first_at = 0.0  # when the queue last became non-empty
        self._thread: Optional[threading.Thread] = None
        self._last_log: Dict[str, float] = {}
        self._written = metrics.written.labels(self.name)
        self._gauge = metrics.queue_length.labels("sink:" + self.name)

    # -- receive side (any thread) ---------------------------------------------------------------

    def submit(self, spans: List[Span]) -> None:
        """Queues spans; never blocks. Over capacity the batch is dropped and counted."""
        n = len(spans)
        with self._lock:
            before = self._queued
            if self._stop:
                reason = "stopped"
            elif before + n > self.max_spans:
                reason = "queue_full"
            else:
                self._queue.append(spans)
                self._queued = before + n
                reason = ""
                if not before:
                    self._first_at = time.monotonic()
        if reason:
            self.drop(n, reason)
            return
        # A lingering worker needs waking only when there is enough to write.
        if not before or not self.linger or before < self.linger_spans <= before + n:
            self._wake.set()

    # -- worker ------------------------------------------------------------------------------

    def start(self) -> None:
        self.open()
        self._thread = threading.Thread(target=self._run, name="shim-sink-" + self.name,
                                        daemon=True)
        self._thread.start()

    def _take(self) -> List[Span]:
        out: List[Span] = []
        with self._lock:
            while self._queue and len(out) < _WRITE_CHUNK:
                batch = self._queue.popleft()
                self._queued -= len(batch)
                out.extend(batch)
            self._busy = bool(out)
            self._gauge.set(self._queued)
        return out

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            if self.linger:
                self._gather()
            while True:
                spans = self._take()
                if not spans:
                    break
                try:
                    written = self.write(spans)
                    self._written.inc(len(spans) if written is None else written)
                except Exception:  # noqa: BLE001 - a failing write must not kill the sink
                    self.drop(len(spans), "write_error")
                    self.log_rate_limited("write_error", "sink %s failed to write %d spans",
                                          self.name, len(spans), exc_info=True)
            with self._lock:
                self._busy = False
                self._idle.notify_all()
                if self._stop and not self._queue:
                    return

    def _gather(self) -> None:
        """Waits (up to ``linger`` s after the first queued span) for ``linger_spans``."""
        while True:
            with self._lock:
                if (self._stop or self._flushing or not self._queue
                        or self._queued >= self.linger_spans):
                    return
                remaining = self._first_at + self.linger - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def drain(self, timeout: float) -> bool:
        """Waits until the queue is empty and the last write finished."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
        try:
            self._wake.set()
            with self._lock:
                while self._queue or self._busy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._idle.wait(min(remaining, 0.1))
            return True
        finally:
            with self._lock:
                self._flushing -= 1

    def stop(self, timeout: float) -> bool:
        """Writes what is queued (within ``timeout``), stops the worker, closes the sink."""
        drained = self.drain(timeout)
        with self._lock:
            self._stop = True
            left = self._queued
            self._queue.clear()
            self._queued = 0
        if left:
            self.drop(left, "shutdown_timeout")
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, timeout))
        self.close()
        return drained

    def drop(self, count: int, reason: str) -> None:
        self.metrics.dropped.labels(self.name, reason).inc(count)

    def log_rate_limited(self, kind: str, message: str, *args: Any, exc_info: bool = False
                         ) -> None:
        now = time.monotonic()
        last = self._last_log.get(kind)
        if last is None or now - last >= _LOG_INTERVAL:
            self._last_log[kind] = now
            logger.warning(message, *args, exc_info=exc_info)

    # -- what a sink implements ------------------------------------------------------------------

    def open(self) -> None:
        """Prepares the destination (called on start, in the caller's thread)."""

    def write(self, spans: List[Span]) -> Optional[int]:
        """Writes a batch; returns how many spans were written (None: all of them). A sink
        that skips some counts them itself with :meth:`drop` and a reason."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases the destination (called after the worker stopped)."""


class LocalSink(Sink):
    """Writes into the embedded SQLite store."""

    name = "local"
    # Measured: a transaction of 50 spans costs 15 us per span, of 1000 or more 9-10 us.
    linger = 0.1
    linger_spans = 2000

    def __init__(self, metrics: ShimMetrics, max_spans: int, path: str) -> None:
        super().__init__(metrics, max_spans)
        self.path = path
        self.store: Any = None

    def open(self) -> None:
        from .store import LocalStore

        self.store = LocalStore(self.path)

    def write(self, spans: List[Span]) -> Optional[int]:
        store = self.store
        duplicates, rejected = store.duplicates, store.rejected
        written = store.write_spans(spans)
        # Re-deliveries the store recognised, and spans it could not store: not "written".
        if store.duplicates > duplicates:
            self.drop(store.duplicates - duplicates, "duplicate")
        if store.rejected > rejected:
            self.drop(store.rejected - rejected, "rejected")
        return written

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class _Items:
    """A read-only ``items()``/``len()`` view over Tags, so the tracer's encoder can write
    them without a dict (which would merge repeated keys)."""

    __slots__ = ("_tags",)

    def __init__(self, tags: Iterable[Tag]) -> None:
        self._tags = tags

    def items(self) -> Iterable[Tuple[str, Any]]:
        return [(tag.key, tag.value) for tag in self._tags]

    def __len__(self) -> int:
        return len(self._tags)  # type: ignore[arg-type]


def to_record(span: Span) -> SpanRecord:
    """The tracer-side record of a model span, for re-encoding (tag types follow the values:
    str/float/bool/int/bytes map back to STRING/DOUBLE/BOOL/LONG/BINARY)."""
    return SpanRecord(span.trace_id, span.span_id, span.parent_id, span.operation_name,
                      span.flags, span.start_time, span.duration,
                      _Items(span.tags),  # type: ignore[arg-type]
                      [(log.timestamp, _Items(log.fields)) for log in span.logs],
                      [tuple(ref) for ref in span.references])


class JaegerAgentSink(Sink):
    """Forwards to a jaeger-agent as compact ``emitBatch`` datagrams, one process per batch,
    each datagram at most 65 000 bytes (a span that can never fit is dropped and counted)."""

    name = "jaeger_agent"
    max_packet = 65000

    def __init__(self, metrics: ShimMetrics, max_spans: int, host_port: str) -> None:
        super().__init__(metrics, max_spans)
        host, _, port = host_port.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.encoder = get_encoder("compact")
        self.sock: Optional[socket.socket] = None
        self.target: Any = None
        self.seq_no = 0
        self._processes: Dict[Process, bytes] = {}

    def open(self) -> None:
        # Resolved lazily in write(): an agent that is not up yet must not stop the shim.
        pass

    def _socket(self) -> Tuple[socket.socket, Any]:
        if self.sock is None:
            family, _, _, _, target = socket.getaddrinfo(*self.address, 0, socket.SOCK_DGRAM)[0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.target = target
        return self.sock, self.target

    def _process_bytes(self, process: Process) -> bytes:
        encoded = self._processes.get(process)
        if encoded is None:
            if len(self._processes) > 1000:
                self._processes.clear()
            encoded = self.encoder.encode_process(process.service_name,
                                                  _Items(process.tags))  # type: ignore[arg-type]
            self._processes[process] = encoded
        return encoded

    def write(self, spans: List[Span]) -> Optional[int]:
        by_process: Dict[Process, List[Span]] = {}
        for span in spans:
            by_process.setdefault(span.process, []).append(span)
        sock, target = self._socket()
        sent = 0
        for process, group in by_process.items():
            process_bytes = self._process_bytes(process)
            for datagram, count in self._datagrams(process_bytes, group):
                try:
                    sock.sendto(datagram, target)
                    sent += count
                except OSError:
                    self.drop(count, "send_failed")
                    self.log_rate_limited("send", "jaeger_agent sink: sending to %s:%d failed",
                                          *self.address, exc_info=True)
        return sent

    def _datagrams(self, process: bytes, spans: Sequence[Span]) -> Iterable[Tuple[bytes, int]]:
        encoder = self.encoder
        budget = self.max_packet - encoder.emit_batch_overhead(process)
        pending: List[bytes] = []
        size = 0
        for span in spans:
            encoded = encoder.encode_span(to_record(span))
            if len(encoded) > budget:
                self.drop(1, "too_large")
                continue
            if size + len(encoded) > budget:
                yield self._emit(process, pending), len(pending)
                pending, size = [], 0
            pending.append(encoded)
            size += len(encoded)
        if pending:
            yield self._emit(process, pending), len(pending)

    def _emit(self, process: bytes, spans: List[bytes]) -> bytes:
        self.seq_no += 1
        return self.encoder.encode_emit_batch(process, spans, self.seq_no, (0, 0, 0))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def build_sinks(config: Dict[str, Any], metrics: ShimMetrics) -> List[Sink]:
    sinks: List[Sink] = []
    for name in config["storage.type"]:
        if name == "local":
            sinks.append(LocalSink(metrics, config["queue.max_spans"],
                                   config["storage.local.path"]))
        elif name == "jaeger_agent":
            sinks.append(JaegerAgentSink(metrics, config["queue.max_spans"],
                                         config["storage.jaeger_agent.host_port"]))
    return sinks
