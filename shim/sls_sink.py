"""The ``aliyun_sls`` sink: spans to an SLS Logstore, batched, pipelined, spooled on failure.

Flow::

    worker thread (Sink._run) ── encode (sls_encode) ── LogGroups sealed by count, bytes, time
        │ healthy: ready queue (bounded) ── N sender threads ── PutLogs via the SDK
        │ outage or halted: disk spool ◄── groups a sender could not deliver
        └─────────────────────────────── replayer thread: spool ── PutLogs, in order

- **Batching**: a group is sealed at ``batch.max_logs`` logs or ``batch.max_bytes`` raw bytes,
  or ``batch.linger_ms`` after its first log; senders work in parallel, so encoding the next
  group overlaps the HTTP round trip of the previous ones (the GIL is released while waiting).
- **Outage**: a group still failing with a retryable error after ``retry.max_attempts``
  attempts goes to the spool and declares an outage: from then on new groups go straight to
  the spool and only the replayer talks to SLS, retrying the oldest record with capped
  backoff. When the spool is empty again, the outage is over. Nothing is dropped while the
  spool has room.
- **Halt**: an ``auth`` or ``fatal`` error (or a missing project without ``auto_create``) is
  logged once, makes ``/healthz`` unhealthy and sends everything to the spool; the replayer
  tries again every :attr:`SlsSink.halt_recheck` seconds and at the next start.
- **Shutdown**: what is queued is sent (one attempt each) within the budget; whatever is not
  delivered goes to the spool, so it is sent after the restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, NamedTuple, Optional

import lz4.block

from .metrics import ShimMetrics
from .model import Span
from .sinks import Sink
from .sls_client import AUTH, MISSING, RETRYABLE, Credentials, Endpoint, SlsClient, SlsError
from .sls_delivery import Delivery, Group, Policy, shrink
from .sls_encode import MAX_VALUE_BYTES, GroupBuilder, LogEncoder, group_tail
from .sls_provision import Settings, provision
from .spool import Spool

logger = logging.getLogger(__name__)


class SlsOptions(NamedTuple):
    endpoint: Endpoint
    credentials: Credentials
    settings: Settings  # project, logstore, auto_create, ttl, shards
    max_logs: int
    max_bytes: int
    linger: float  # seconds
    senders: int
    policy: Policy
    request_timeout: float
    spool_path: str  # "" = no spool
    spool_max_bytes: int
    spool_fsync: bool


class SlsSink(Sink):
    name = "aliyun_sls"
    #: Seconds between attempts while halted (auth or fatal errors).
    halt_recheck = 60.0
    #: Seconds :meth:`close` gives the senders after the queue was drained.
    close_timeout = 5.0

    def __init__(self, metrics: ShimMetrics, max_spans: int, options: SlsOptions) -> None:
        super().__init__(metrics, max_spans)
        self.options = options
        self.settings = options.settings
        self.client = SlsClient(options.endpoint, options.credentials, options.request_timeout,
                                self._on_request)
        self.encoder = LogEncoder(MAX_VALUE_BYTES)
        self.tail = group_tail()
        self._sealed: List[Group] = []
        self.builder = GroupBuilder(self._on_sealed, options.max_logs, options.max_bytes,
                                    self.tail)
        self._build_lock = threading.Lock()
        self._route = threading.Condition()  # guards everything below up to _halted_at
        self._ready: Deque[Group] = deque()
        self._ready_limit = 2 * options.senders
        self._inflight = 0
        self._outage = False
        self._closed = False
        self._halted: Optional[SlsError] = None
        self._halted_at = 0.0
        self._provisioned = False
        self._provision_lock = threading.Lock()
        self._closing = threading.Event()
        self._stopping = threading.Event()
        self._replay_wake = threading.Event()
        self._threads: List[threading.Thread] = []
        self.spool: Optional[Spool] = None
        self.delivery = Delivery(self.client, self.settings.project, self.settings.logstore,
                                 options.policy, self._stopping, self._reprovision,
                                 self._on_retry, self._on_drop, self._on_written,
                                 self._on_truncated, self.tail)
        m = metrics
        self._retries = m.sls_retries
        self._truncated = m.sls_values_truncated
        self._replayed = m.spool_replayed.labels(self.name)
        self._corrupt = m.spool_corrupt.labels(self.name)
        self._written_path = threading.local()

    def __repr__(self) -> str:
        return "SlsSink(%s, %s/%s)" % (self.options.endpoint.url, self.settings.project,
                                        self.settings.logstore)

    # -- start -----------------------------------------------------------------------------------

    def open(self) -> None:
        opts = self.options
        if opts.spool_path:
            try:
                self.spool = Spool(opts.spool_path, opts.spool_max_bytes, opts.spool_fsync,
                                   on_corrupt=self._on_corrupt)
            except OSError as exc:
                raise RuntimeError("config key 'spool.path': cannot use %r as the spool: %s"
                                   % (opts.spool_path, exc.strerror or exc)) from None
            self._gauges()
            if self.spool.batches:
                logger.info("spool %s holds %d batches (%d spans) from an earlier run: "
                            "replaying them", opts.spool_path, self.spool.batches,
                            self.spool.items)
        try:
            self._ensure_provisioned()
        except SlsError as exc:
            if exc.kind != RETRYABLE:
                if self.spool is not None:
                    self.spool.close()
                raise RuntimeError(self._refusal(exc)) from None
            logger.warning("SLS is not reachable at start (%s); spans are %s until it is",
                           exc, "spooled" if self.spool is not None else "retried")
        for index in range(opts.senders):
            self._thread_start(self._sender, "shim-sls-sender-%d" % index)
        if self.spool is not None:
            self._thread_start(self._replayer, "shim-sls-replayer")

    def _thread_start(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _ensure_provisioned(self) -> None:
        if self._provisioned:
            return
        with self._provision_lock:
            if not self._provisioned:
                provision(self.client, self.settings)
                self._provisioned = True

    def _reprovision(self) -> None:
        """A put said the project or logstore is missing (deleted meanwhile)."""
        self._provisioned = False
        self._ensure_provisioned()

    # -- worker thread: encode and batch ---------------------------------------------------------

    def write(self, spans: List[Span]) -> int:
        """Encodes and batches; returns 0 because spans count as written only when SLS takes
        them (:meth:`_on_written`), asynchronously."""
        now = time.monotonic()
        encode = self.encoder.encode
        add = self.builder.add
        shrunk = 0
        with self._build_lock:
            for span in spans:
                try:
                    log = encode(span)
                except (ValueError, OverflowError):  # numbers no log can hold
                    self.drop(1, "unencodable")
                    continue
                if not add(log, now):
                    data, cut = shrink(log + self.tail)
                    shrunk += cut
                    if not add(data[:len(data) - len(self.tail)], now):
                        self.drop(1, "too_large")
            sealed, self._sealed = self._sealed, []
            truncated, self.encoder.truncated = self.encoder.truncated, 0
        if truncated:
            self._truncated.labels("1MiB").inc(truncated)
        if shrunk:
            self._truncated.labels("64KiB").inc(shrunk)
        for group in sealed:
            self._dispatch(group)
        return 0

    def _on_sealed(self, data: bytes, count: int) -> None:
        self._sealed.append(Group(data, count))

    def _seal(self, lingering_only: bool) -> List[Group]:
        if not len(self.builder):
            return []
        if not self._build_lock.acquire(timeout=0.05):
            return []  # the worker is adding: it seals by size itself
        try:
            if len(self.builder) and (not lingering_only or time.monotonic()
                                      - self.builder.opened_at >= self.options.linger):
                self.builder.seal()
            sealed, self._sealed = self._sealed, []
        finally:
            self._build_lock.release()
        return sealed

    def _dispatch(self, group: Group) -> None:
        """Hands a sealed group to the senders, waiting while they are all busy (the sink's
        queue absorbs the wait); in an outage or halt it goes to the spool instead."""
        with self._route:
            while not (self._outage or self._halted is not None or self._closed
                       or len(self._ready) < self._ready_limit):
                self._route.wait(0.1)
            if not (self._outage or self._halted is not None or self._closed):
                self._ready.append(group)
                self._route.notify_all()
                return
        self._keep(group)

    # -- senders ---------------------------------------------------------------------------------

    def _sender(self) -> None:
        tick = min(0.1, max(0.005, self.options.linger / 4))
        while True:
            with self._route:
                if not self._ready and not self._closed:
                    self._route.wait(tick)
                group = self._ready.popleft() if self._ready else None
                if group is not None:
                    self._inflight += 1
                    self._route.notify_all()
                elif self._closed:
                    return
            if group is None:
                for sealed in self._seal(lingering_only=True):
                    with self._route:
                        self._inflight += 1
                    self._send_tracked(sealed)  # idle: deliver it here rather than queue it
                continue
            self._send_tracked(group)

    def _send_tracked(self, group: Group) -> None:
        try:
            self._send_live(group)
        finally:
            with self._route:
                self._inflight -= 1
                self._route.notify_all()

    def _send_live(self, group: Group) -> None:
        with self._route:
            halted = self._halted is not None and (
                time.monotonic() - self._halted_at < self.halt_recheck
                or self.spool is not None)
            skip = self._outage or halted
        if skip:
            self._keep(group)
            return
        self._written_path.value = "direct"
        try:
            self._ensure_provisioned()
        except SlsError as exc:
            self._keep(group)
            self._failed(exc)
            return
        outcome = self.delivery.deliver(group, persistent=False, give_up=self._give_up_live)
        if outcome.left:
            for piece in outcome.left:  # first, so an outage never looks over with it unsaved
                self._keep(piece)
            self._failed(outcome.error)
        elif self._halted is not None:
            self._recovered()

    def _give_up_live(self) -> bool:
        return self._outage or self._halted is not None or self._closing.is_set()

    # -- failures --------------------------------------------------------------------------------

    def _failed(self, error: Optional[SlsError]) -> None:
        if error is None:
            return
        if error.kind == RETRYABLE:
            if self.spool is None:
                return  # no spool: each group tries on its own, then is dropped
            with self._route:
                first = not self._outage
                self._outage = True
                self._route.notify_all()
            if first:
                logger.warning("SLS is unavailable (%s): spooling to %s until it recovers",
                               error, self.options.spool_path)
        else:
            with self._route:
                first = self._halted is None
                self._halted = error
                self._halted_at = time.monotonic()
                self._route.notify_all()
            if first:
                logger.error("%s", self._refusal(error))
        self._replay_wake.set()

    def _refusal(self, error: SlsError) -> str:
        keep = ("spans are kept in the spool %s and sent when this is fixed (retried every "
                "%.0f s and at start)" % (self.options.spool_path, self.halt_recheck)
                if self.spool is not None else "spans are dropped (no spool.path)")
        if error.kind == AUTH:
            if error.code in ("RequestTimeExpired", "InvalidRequestTime"):
                what = "SLS refused the request time: check this host's clock"
            else:
                what = ("SLS refused the access key: check storage.aliyun_sls.accesskey.id, "
                        "storage.aliyun_sls.accesskey.secret (or .secret_file) and "
                        "storage.aliyun_sls.security_token")
        elif error.kind == MISSING:
            what = "the SLS project or logstore is missing"
        else:
            what = ("SLS refused the request: check storage.aliyun_sls.endpoint, .project "
                    "and .logstore")
        return "%s (%s); %s" % (what, error, keep)

    def _recovered(self) -> None:
        with self._route:
            was = self._halted
            self._halted = None
            self._route.notify_all()
        if was is not None:
            logger.warning("SLS accepts writes again (after %s)", was.code)

    def _keep(self, group: Group) -> None:
        """Into the spool, or dropped and counted when there is none or it is full."""
        spool = self.spool
        if spool is None:
            self.drop(group.count, "sls_refused" if self._halted is not None
                      else "sls_unavailable")
            return
        if not spool.append(lz4.block.compress(group.data), group.count):
            self.drop(group.count, "spool_full" if not self._stopping.is_set()
                      else "shutdown_timeout")
            self.log_rate_limited("spool_full", "aliyun_sls sink: spool %s is full (%d bytes): "
                                  "dropping new spans", self.options.spool_path,
                                  spool.max_bytes)
        self._gauges()
        self._replay_wake.set()

    # -- replayer --------------------------------------------------------------------------------

    def _replayer(self) -> None:
        spool = self.spool
        assert spool is not None
        replayed = 0
        while not self._closing.is_set():
            record = spool.peek()
            if record is None:
                with self._route:
                    ended = self._outage and not spool.batches
                    if ended:
                        self._outage = False
                        self._route.notify_all()
                if ended:
                    logger.warning("SLS is available again: %d spooled batches replayed",
                                   replayed)
                    replayed = 0
                self._replay_wake.wait(0.5)
                self._replay_wake.clear()
                continue
            with self._route:
                wait = (self._halted_at + self.halt_recheck - time.monotonic()
                        if self._halted is not None else 0.0)
            if wait > 0:
                self._closing.wait(min(wait, 1.0))
                continue
            self._written_path.value = "spool"
            try:
                self._ensure_provisioned()
            except SlsError as exc:
                self._failed(exc)
                if exc.kind == RETRYABLE:
                    self._closing.wait(self.options.policy.max_backoff)
                continue
            group = Group(lz4.block.decompress(record.payload), record.items)
            outcome = self.delivery.deliver(group, persistent=True,
                                            give_up=self._closing.is_set)
            if outcome.left and not outcome.delivered:
                if not self._closing.is_set():
                    self._failed(outcome.error)
                continue
            spool.commit(record)
            self._replayed.inc()
            replayed += 1
            for piece in outcome.left:  # split, partly delivered, then halted: keep the rest
                self._keep(piece)
            if self._halted is not None and not outcome.left:
                self._recovered()
            self._gauges()

    # -- draining and closing --------------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Also seals the open group and waits until the senders have handled every group
        (delivered, or kept in the spool)."""
        deadline = time.monotonic() + timeout
        if not super().drain(timeout):
            return False
        for group in self._seal(lingering_only=False):
            self._dispatch(group)
        with self._route:
            while self._ready or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._route.wait(min(remaining, 0.05))
        return True

    def close(self) -> None:
        self._closing.set()
        self._replay_wake.set()
        for group in self._seal(lingering_only=False):
            self._dispatch(group)
        with self._route:
            self._closed = True
            self._route.notify_all()
        deadline = time.monotonic() + self.close_timeout
        for thread in self._threads:
            thread.join(timeout=max(0.05, deadline - time.monotonic()))
        self._stopping.set()
        with self._route:
            left = list(self._ready)
            self._ready.clear()
        for group in left:
            self._keep(group)
        for thread in self._threads:
            thread.join(timeout=1.0)
        if self.spool is not None:
            self.spool.close()
            self._gauges()

    # -- health and metrics ----------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        with self._route:
            halted, outage = self._halted, self._outage
        spool = self.spool
        return {"healthy": halted is None,
                "state": "halted" if halted else ("spooling" if outage else "ok"),
                "error": str(halted) if halted else "",
                "spool_batches": spool.batches if spool is not None else 0,
                "spool_spans": spool.items if spool is not None else 0,
                "spool_bytes": spool.bytes if spool is not None else 0}

    def _gauges(self) -> None:
        spool = self.spool
        if spool is not None:
            m = self.metrics
            m.spool_bytes.labels(self.name).set(spool.bytes)
            m.spool_batches.labels(self.name).set(spool.batches)
            m.spool_spans.labels(self.name).set(spool.items)

    def _on_request(self, operation: str, outcome: str) -> None:
        self.metrics.sls_requests.labels(operation, outcome).inc()

    def _on_retry(self, reason: str) -> None:
        self._retries.labels(reason).inc()

    def _on_drop(self, count: int, reason: str, detail: str) -> None:
        self.drop(count, reason)
        self.log_rate_limited(reason, "aliyun_sls sink: SLS refused %d spans, dropped (%s): %s",
                              count, reason, detail)

    def _on_written(self, logs: int, raw_bytes: int) -> None:
        path = getattr(self._written_path, "value", "direct")
        self._written.inc(logs)
        self.metrics.sls_logs_written.labels(path).inc(logs)
        self.metrics.sls_bytes_written.labels(path).inc(raw_bytes)

    def _on_truncated(self, count: int) -> None:
        if count:
            self._truncated.labels("64KiB").inc(count)

    def _on_corrupt(self, skipped: int) -> None:
        self._corrupt.inc(skipped)
        logger.warning("spool %s: skipped %d damaged bytes (a torn or corrupt record)",
                       self.options.spool_path, skipped)


def build_sls_sink(config: Dict[str, Any], metrics: ShimMetrics) -> SlsSink:
    """The sink of a resolved shim configuration (``storage.aliyun_sls.*``, ``spool.*``)."""
    from .sls_config import parse_endpoint

    def key(name: str) -> Any:
        return config["storage.aliyun_sls." + name]

    def reveal(value: Any) -> str:
        return value.reveal() if hasattr(value, "reveal") else str(value or "")

    options = SlsOptions(
        endpoint=parse_endpoint(key("endpoint")),
        credentials=Credentials(key("accesskey.id"), reveal(key("accesskey.secret")),
                                reveal(key("security_token"))),
        settings=Settings(key("project"), key("logstore"), key("auto_create"),
                          key("ttl_days"), key("shard_count")),
        max_logs=key("batch.max_logs"),
        max_bytes=key("batch.max_bytes"),
        linger=key("batch.linger_ms") / 1000.0,
        senders=key("senders"),
        policy=Policy(key("retry.max_attempts"), key("retry.initial_backoff_ms") / 1000.0,
                      key("retry.max_backoff_ms") / 1000.0),
        request_timeout=key("timeout_ms") / 1000.0,
        spool_path=config["spool.path"],
        spool_max_bytes=config["spool.max_bytes"],
        spool_fsync=config["spool.fsync"])
    return SlsSink(metrics, config["queue.max_spans"], options)
