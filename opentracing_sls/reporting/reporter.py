"""The batching reporter: a bounded queue in front of one background worker thread.

Application threads encode each finished span (the C encoder: a fraction of a microsecond)
and append the bytes to a ``collections.deque``. A single daemon ``threading`` worker wakes
when ``batch_size`` spans are queued or ``flush_interval`` has passed, packs the encoded spans
into payloads no larger than the sender's limit (65 000 bytes for UDP) and sends them. Every
loss is counted: queue full, span too large for any packet, encoding error, send failure,
reported after close. The cumulative counts travel in each batch's ``ClientStats`` next to an
increasing ``seqNo`` and a per-process ``client-uuid`` tag, which jaeger-agent's
``client_stats`` metrics need.

Deliberately unlike jaeger-client 4.8.0: no Tornado loop, no unbounded callback list, no
whole-batch loss above 65 000 bytes, ``flush``/``close`` that block until delivery, an
``atexit`` flush, and a worker, socket and client-uuid that are recreated in a forked child.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional

from ..constants import CLIENT_UUID_TAG_KEY
from ..metrics import Metrics
from ..record import SpanRecord
from .basic import BaseReporter
from .encoding import _speedups, pack_spans_fast
from .senders import Sender, UdpSender

logger = logging.getLogger(__name__)

#: Spans held in memory before new ones are dropped. 10 000 covers half a second of a
#: 20 000 spans/s burst while the worker waits for the GIL, at ~1-2 KB per queued record.
DEFAULT_QUEUE_SIZE = 10000
#: Queue length that wakes the worker before ``flush_interval``: at 20 000 spans/s that is
#: 40 wake-ups a second, each filling a few well-packed datagrams, so the per-span cost of
#: waking stays negligible and the queue stays far from full.
DEFAULT_BATCH_SIZE = 500
#: Longest time a span waits in the queue when traffic is low (jaeger-client's default).
DEFAULT_FLUSH_INTERVAL = 1.0
#: How long the interpreter-exit hook waits for queued spans to be sent.
EXIT_TIMEOUT = 5.0
#: Used until the tracer calls ``set_process``.
DEFAULT_SERVICE_NAME = "unknown_service"

#: The worker pops at most this many spans at a time, so ``flush`` waiters see progress
#: under continuous load and the queue lock is never held for long.
_DRAIN_CHUNK = 1000
#: One log line per kind of loss per minute; the first one is logged immediately.
_LOG_INTERVAL = 60.0

SPANS_REPORTED = "reporter.spans.reported"
DROPPED_QUEUE_FULL = "reporter.spans.dropped.queue_full"
DROPPED_TOO_LARGE = "reporter.spans.dropped.too_large"
DROPPED_SEND_FAILED = "reporter.spans.dropped.send_failed"
DROPPED_ENCODE_ERROR = "reporter.spans.dropped.encode_error"
DROPPED_FORK = "reporter.spans.dropped.fork"
BATCHES_SENT = "reporter.batches.sent"
BATCHES_FAILED = "reporter.batches.failed"

# Reporters that may still hold spans: flushed at exit, reinitialised in a forked child.
# Weak, so a reporter that was never used and is no longer referenced can be collected;
# close() removes a reporter, which is what "unregistering" its exit hook means here.
_LIVE: weakref.WeakSet[Reporter] = weakref.WeakSet()


class Reporter(BaseReporter):
    """Batches finished spans and sends them through a :class:`~.senders.Sender`.

    :param sender: where payloads go; default ``UdpSender()`` (localhost:6831, compact).
    :param queue_size: spans held before new ones are dropped (``DEFAULT_QUEUE_SIZE``).
    :param batch_size: queue length that wakes the worker early (``DEFAULT_BATCH_SIZE``,
        or ``queue_size`` if smaller); the worker then drains the whole queue, packing
        datagrams by size, not by count.
    :param flush_interval: seconds between wake-ups when fewer spans arrive.
    :param metrics: counters to update; pass the tracer's to share them.
    :param encoder: Thrift encoder; default ``get_encoder(sender.protocol)``.

    Nothing happens at construction: the worker starts on the first ``report_span`` and the
    sender opens its socket on the first send.
    """

    def __init__(
        self,
        sender: Optional[Sender] = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: Optional[int] = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        metrics: Optional[Metrics] = None,
        encoder: Any = None,
    ) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        if batch_size is None:
            batch_size = min(DEFAULT_BATCH_SIZE, queue_size)
        if not isinstance(batch_size, int) or not 1 <= batch_size <= queue_size:
            raise ValueError(f"batch_size must be an int in 1..queue_size, got {batch_size!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval!r}")
        super().__init__(metrics)
        self.sender: Sender = sender if sender is not None else UdpSender()
        if encoder is None:
            from .encoding import get_encoder

            # Imported here so that importing the package (for BaseReporter) never pulls
            # in the Thrift encoders; only a batching reporter needs them.
            encoder = get_encoder(self.sender.protocol)
        elif getattr(encoder, "protocol", self.sender.protocol) != self.sender.protocol:
            raise ValueError(
                f"encoder protocol {encoder.protocol!r} does not match"
                f" the sender's {self.sender.protocol!r}"
            )
        self.encoder = encoder
        self._encode = encoder.encode_span
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.service_name = DEFAULT_SERVICE_NAME

        metrics = self.metrics
        self._c_reported = metrics.counter(SPANS_REPORTED)
        self._c_queue_full = metrics.counter(DROPPED_QUEUE_FULL)
        self._c_too_large = metrics.counter(DROPPED_TOO_LARGE)
        self._c_send_failed = metrics.counter(DROPPED_SEND_FAILED)
        self._c_encode_error = metrics.counter(DROPPED_ENCODE_ERROR)
        self._c_fork = metrics.counter(DROPPED_FORK)
        self._c_batches_sent = metrics.counter(BATCHES_SENT)
        self._c_batches_failed = metrics.counter(BATCHES_FAILED)
        self._log_next: Dict[str, float] = {}
        self._log_unlogged: Dict[str, int] = {}
        self._close_result = True
        self._reset_process_state()
        if _speedups is not None and type(self).report_span is Reporter.report_span:
            # report_span's C twin (the same steps, without a Python frame per span); a
            # subclass that overrides report_span keeps its own.
            self.report_span = _speedups.ReportSpan(self, Reporter.report_span)
        _LIVE.add(self)

    def _reset_process_state(self) -> None:
        """Everything that belongs to one process: rebuilt from scratch in a forked child."""
        self._pid = os.getpid()
        self._queue: Deque[bytes] = deque()  # encoded spans
        self._accepting = False  # set once the worker runs; the hot path checks only this
        self._wake = threading.Event()
        self._wake_pending = False
        # Guards the pair (_taken, queue length) that flush() reads, and _done.
        self._cond = threading.Condition(threading.Lock())
        self._taken = 0  # spans popped from the queue
        self._done = 0  # spans popped and then sent, or dropped and counted
        self._send_lock = threading.Lock()  # one drain at a time (worker or inline)
        self._stats_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._worker: Optional[threading.Thread] = None
        self._stopping = False
        # ClientStats are per client-uuid, so a child starts again from zero.
        self._full_queue_dropped = 0
        self._too_large_dropped = 0
        self._failed_to_emit = 0
        self._logged_full_queue = 0
        self._seq_no = 0
        self._client_uuid = str(uuid.uuid4())
        self._process: Optional[bytes] = None

    # ----------------------------------------------------------------- application side

    def set_process(self, service_name: str, tags: Mapping[str, Any]) -> None:
        """Sets the Process sent with every batch; our own ``client-uuid`` tag is added."""
        super().set_process(service_name or DEFAULT_SERVICE_NAME, tags)
        self._process = None  # re-encoded by the worker before its next batch

    def report_span(self, record: SpanRecord) -> None:
        """Queues a finished span. Never blocks, never raises; drops and counts when full.

        The span is encoded here, while its record is still in the CPU's cache: encoding it
        later on the worker costs several times more, in cache misses (the queue then holds
        one bytes object per span instead of a tree of objects).
        """
        queue = self._queue
        if self._accepting and len(queue) < self.queue_size:
            try:
                data = self._encode(record)
            except Exception as exc:
                self._encode_failed(exc)
                return
            queue.append(data)
            # Wake the worker once per fill-up, not per span: Event.set takes a lock.
            if len(queue) >= self.batch_size and not self._wake_pending:
                self._wake_worker()
            return
        self._report_slow(record)

    def _encode_failed(self, exc: Exception) -> None:
        try:
            self._lost("encode", self._c_encode_error, 1, exc)
        except Exception:  # pragma: no cover - never raise into the application
            pass

    def _wake_worker(self) -> None:
        try:
            self._wake_pending = True
            # The pid check lives here, once per batch, because os.getpid() costs more than
            # the whole hot path. It catches forks that bypass os.register_at_fork (C-level
            # forks such as uWSGI's without --py-call-osafterfork); the Event's lock may
            # have been held by the parent's worker at that moment, so check before set().
            if self._pid != os.getpid():
                self._after_fork(hooks_ran=False)
                return
            self._wake.set()
        except Exception:  # pragma: no cover - never raise into the application
            pass

    def _report_slow(self, record: SpanRecord) -> None:
        try:
            if self._closed:
                self._dropped_closed.inc()
                return
            if self._pid != os.getpid():
                self._after_fork(hooks_ran=False)
            if not self._accepting or self._worker is None or not self._worker.is_alive():
                self._start_worker()
            if not self._accepting:  # closed meanwhile
                self._dropped_closed.inc()
                return
            if len(self._queue) < self.queue_size:
                self.report_span(record)  # the worker runs now: the fast path takes it
                return
            with self._stats_lock:
                self._full_queue_dropped += 1
            self._c_queue_full.inc()
            if not self._wake_pending:
                self._wake_worker()
        except Exception:  # pragma: no cover - never raise into the application
            pass

    def _start_worker(self) -> None:
        with self._cond:
            if self._closed or (self._worker is not None and self._worker.is_alive()):
                self._accepting = not self._closed
                return
            worker = threading.Thread(
                target=self._run, name="opentracing-sls-reporter", daemon=True
            )
            try:
                worker.start()
            except RuntimeError as exc:
                # E.g. at interpreter shutdown. Spans still queue; flush/close send them
                # from the calling thread.
                self._warn("worker", 0, "cannot start reporter thread: %s", exc)
                worker = None
            self._worker = worker
            self._accepting = True

    @property
    def queue_length(self) -> int:
        """Spans waiting in the queue."""
        return len(self._queue)

    @property
    def client_uuid(self) -> str:
        """The ``client-uuid`` process tag of this process (new in every forked child)."""
        return self._client_uuid

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Blocks until every span reported before the call is sent or dropped and counted.

        Returns False if that did not happen within ``timeout`` seconds (None: no limit).
        """
        try:
            return self._flush(_deadline(timeout))
        except Exception as exc:
            self._warn("flush", 0, "reporter flush failed: %r", exc)
            return False

    def _flush(self, deadline: Optional[float]) -> bool:
        if self._pid != os.getpid():
            self._after_fork(hooks_ran=False)
        cond = self._cond
        with cond:
            target = self._taken + len(self._queue)
            if self._done >= target:
                return True
        worker = self._worker
        if worker is threading.current_thread():
            return False  # the worker cannot wait for itself
        if worker is None or not worker.is_alive():
            # No worker to wait for (never started, could not start, or stopped): send here.
            if not self._send_lock.acquire(timeout=_remaining(deadline, -1)):
                return False
            try:
                self._drain()
            finally:
                self._send_lock.release()
        else:
            self._wake_pending = True
            self._wake.set()
        with cond:
            return cond.wait_for(lambda: self._done >= target, _remaining(deadline))

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes, stops the worker and closes the sender. Idempotent.

        Returns False if queued spans could not be delivered within ``timeout``; the worker
        then keeps draining in the background and closes the sender when done. Spans reported
        after close are dropped and counted as ``reporter.spans.dropped.closed``.
        """
        deadline = _deadline(timeout)
        # Serialised, so a second close (say the exit hook while a thread is closing) waits
        # for the first one's outcome instead of reporting success early.
        if not self._close_lock.acquire(timeout=_remaining(deadline, -1)):
            return False
        try:
            return self._close(deadline)
        except Exception as exc:
            self._warn("close", 0, "reporter close failed: %r", exc)
            return False
        finally:
            self._close_lock.release()

    def _close(self, deadline: Optional[float]) -> bool:
        if self._closed:
            return self._close_result
        if self._pid != os.getpid():
            self._after_fork(hooks_ran=False)
        self._closed = True
        self._accepting = False
        _LIVE.discard(self)
        ok = self._flush(deadline)
        worker = self._worker
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            self._stopping = True
            self._wake.set()
            worker.join(_remaining(deadline))
            if worker.is_alive():
                ok = False
        if worker is None or not worker.is_alive():
            # A span that slipped past the closed check while we were flushing.
            with self._cond:
                left = len(self._queue)
                self._queue.clear()
                self._taken += left
                self._done += left
            if left:
                self._dropped_closed.inc(left)
            self._close_sender()
        self._close_result = ok
        return ok

    # ------------------------------------------------------------------------- worker

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self.flush_interval)
            self._wake_pending = False
            wake.clear()
            stopping = self._stopping
            with self._send_lock:
                try:
                    self._drain()
                except Exception as exc:  # a bug must not kill the worker
                    self._warn("worker", 0, "reporter worker error: %r", exc)
            if stopping:
                self._close_sender()
                return

    def _drain(self) -> None:
        """Sends everything queued. Caller holds ``_send_lock``."""
        queue = self._queue
        cond = self._cond
        pack = pack_spans_fast
        process: Optional[bytes] = None
        budget = 0
        pending: List[bytes] = []
        pending_size = 0
        try:
            while True:
                with cond:
                    count = min(len(queue), _DRAIN_CHUNK)
                    popleft = queue.popleft
                    records = [popleft() for _ in range(count)]
                    self._taken += count
                if not count:
                    break
                if process is None:
                    try:
                        process = self._process_bytes()
                        budget = self.sender.max_payload_size - self.sender.payload_overhead(
                            self.encoder, process
                        )
                    except Exception as exc:
                        process = None
                        self._lost("encode", self._c_encode_error, count, exc)
                        continue  # the finally clause marks these spans done
                # Spans were encoded when reported (report_span).
                groups, too_large = pack(records, budget, pending_size)
                for size in too_large:
                    self._too_large(size)
                spans, pending_size = groups[0]
                pending.extend(spans)
                for spans, size in groups[1:]:
                    if pending:
                        self._emit(process, pending)
                    pending, pending_size = spans, size
                if pending and not queue:
                    self._emit(process, pending)
                    pending, pending_size = [], 0
                with cond:
                    self._done = self._taken - len(pending)
                    cond.notify_all()
            if pending and process is not None:
                self._emit(process, pending)
                pending = []
        finally:
            if pending:  # only after an unexpected error: these spans are lost
                self._lost("send", self._c_send_failed, len(pending), "internal error")
            with cond:
                self._done = self._taken
                cond.notify_all()
            self._log_queue_full()

    def _process_bytes(self) -> bytes:
        if self._process is None:
            tags = dict(self.process_tags)
            tags[CLIENT_UUID_TAG_KEY] = self._client_uuid
            try:
                self._process = self.encoder.encode_process(self.service_name, tags)
            except Exception as exc:
                # An odd process tag must not stop all reporting: send the essentials.
                self._warn("process", 0, "cannot encode process tags, sending without: %r", exc)
                self._process = self.encoder.encode_process(
                    self.service_name, {CLIENT_UUID_TAG_KEY: self._client_uuid}
                )
        return self._process

    def _emit(self, process: bytes, spans: List[bytes]) -> None:
        """Sends one payload; never raises. Caller holds ``_send_lock``."""
        count = len(spans)
        with self._stats_lock:
            full_queue = self._full_queue_dropped
            failed = self._failed_to_emit
        stats = (full_queue, self._too_large_dropped, failed)
        seq_no = self._seq_no + 1
        try:
            payload = self.sender.build_payload(self.encoder, process, spans, seq_no, stats)
        except Exception as exc:
            self._lost("send", self._c_send_failed, count, exc)
            return
        if len(payload) > self.sender.max_payload_size:
            # Only if the encoder's overhead bound was wrong; split rather than lose.
            if count > 1:
                self._emit(process, spans[: count // 2])
                self._emit(process, spans[count // 2 :])
            else:
                self._too_large(len(payload))
            return
        self._seq_no = seq_no
        try:
            self.sender.send(payload)
        except Exception as exc:
            self._c_batches_failed.inc()
            self._lost("send", self._c_send_failed, count, exc)
            return
        self._c_reported.inc(count)
        self._c_batches_sent.inc()

    def _too_large(self, size: int) -> None:
        self._too_large_dropped += 1
        self._c_too_large.inc()
        self._warn(
            "too_large",
            1,
            "dropped a span of %d bytes: larger than any %r payload can carry (limit %d)",
            size,
            self.sender,
            self.sender.max_payload_size,
        )

    def _lost(self, kind: str, counter: Any, count: int, exc: Any) -> None:
        # Encoding errors also count as failedToEmitSpans: the agent should see every loss.
        with self._stats_lock:  # application threads count encoding failures too
            self._failed_to_emit += count
        counter.inc(count)
        if kind == "encode":
            self._warn(kind, count, "dropped a span that could not be encoded: %r", exc)
        else:
            self._warn(kind, count, "failed to send %d span(s) to %r: %s", count, self.sender, exc)

    def _log_queue_full(self) -> None:
        with self._stats_lock:
            dropped = self._full_queue_dropped - self._logged_full_queue
            if not dropped or not self._log_allowed("queue_full"):
                return
            self._logged_full_queue = self._full_queue_dropped
        logger.warning(
            "dropped %d span(s): reporter queue full (queue_size=%d)", dropped, self.queue_size
        )

    def _warn(self, kind: str, spans: int, message: str, *args: Any) -> None:
        """Logs at most once a minute per kind; the first occurrence is logged at once."""
        unlogged = self._log_unlogged.get(kind, 0) + spans
        if not self._log_allowed(kind):
            self._log_unlogged[kind] = unlogged
            return
        self._log_unlogged[kind] = 0
        if unlogged > spans:
            message += " (%d span(s) lost this way since the last message)"
            args = args + (unlogged,)
        logger.warning(message, *args)

    def _log_allowed(self, kind: str) -> bool:
        now = time.monotonic()
        next_at = self._log_next.get(kind)
        if next_at is not None and now < next_at:
            return False
        self._log_next[kind] = now + _LOG_INTERVAL
        return True

    def _close_sender(self) -> None:
        try:
            self.sender.close()
        except Exception:
            pass

    # --------------------------------------------------------------------------- fork

    def _after_fork(self, hooks_ran: bool = True) -> None:
        """In a forked child: forget the parent's queue, thread, locks, socket and identity.

        The parent still owns and sends its queued spans; the child starts empty and
        reports as a new client (fresh client-uuid, seqNo and ClientStats).

        With ``hooks_ran=False`` the fork was noticed late, by a pid check: the child may
        already have queued spans behind the parent's, and the two cannot be told apart.
        Re-sending the parent's would duplicate them, so the whole inherited queue is
        dropped, counted as ``reporter.spans.dropped.fork`` and logged.
        """
        inherited = len(self._queue)
        self._reset_process_state()
        try:
            self.sender.reset_after_fork()
        except Exception:
            pass
        if not hooks_ran and inherited:
            self._c_fork.inc(inherited)
            self._warn(
                "fork",
                inherited,
                "process forked without os.register_at_fork hooks (uWSGI: enable"
                " py-call-osafterfork); dropped %d queued span(s) inherited at the fork",
                inherited,
            )


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _remaining(deadline: Optional[float], none: Any = None) -> Any:
    if deadline is None:
        return none
    return max(0.0, deadline - time.monotonic())


def _reinit_after_fork() -> None:
    for reporter in list(_LIVE):
        if not reporter.closed:
            reporter._after_fork()


def _close_at_exit() -> None:
    for reporter in list(_LIVE):
        reporter.close(EXIT_TIMEOUT)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
atexit.register(_close_at_exit)
