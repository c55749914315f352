"""A sampler whose strategy is polled from jaeger-agent (or any Jaeger sampling endpoint).

Threading model: the constructor starts a daemon ``threading`` thread and returns at once;
the thread waits a short random delay (at most one second) before its first poll, so
construction never blocks nor touches the network. In a forked child the poller is
restarted by an ``os.register_at_fork`` hook (the thread does not survive ``fork()``); the
hook holds the samplers only through a ``WeakSet``, and the thread only through a weak
reference, so an abandoned sampler is collected and its thread ends.

The poller uses stdlib ``urllib.request`` without proxies (the agent is local; an
``HTTP_PROXY`` meant for the outside world must not capture it). Because it never goes
through ``requests`` and runs in a fresh thread with no active span, an instrumented
application never traces the poller's own traffic.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from typing import Any, Dict, Optional

from ..constants import (
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_SAMPLING_INTERVAL,
    DEFAULT_SAMPLING_PROBABILITY,
)
from ..metrics import Metrics
from .adaptive import AdaptiveSampler
from .base import Sampler, SamplingDecision, check_count, check_seconds
from .samplers import ProbabilisticSampler, RateLimitingSampler
from .strategy import (
    PerOperationStrategy,
    ProbabilisticStrategy,
    RateLimitingStrategy,
    SamplingStrategy,
    parse_strategy,
)

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING_ENDPOINT = "http://localhost:5778/sampling"
DEFAULT_TIMEOUT = 5.0
#: A strategy document is a few KB even with thousands of operations; refuse runaway bodies.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: The first poll happens after a random delay in [0, this) seconds (capped by the interval).
MAX_INITIAL_DELAY = 1.0
#: Each later poll waits refresh_interval * (1 +/- this), so fleets do not poll in lockstep.
INTERVAL_JITTER = 0.1
#: A repeated failure of the same kind is logged at most once per this many seconds.
FAILURE_LOG_INTERVAL = 600.0

METRIC_QUERIES_OK = "sampler.queries.ok"
METRIC_QUERIES_ERR = "sampler.queries.err"
METRIC_UPDATES_OK = "sampler.updates.ok"
METRIC_UPDATES_ERR = "sampler.updates.err"

_jitter = random.SystemRandom()  # no state to share with the parent after fork


class _FailureLog:
    """Logs the first failure of each kind at once, then at most once per interval.

    jaeger-client's ErrorReporter starts its window at "now", hiding the first 15 minutes
    of failures; here the first one is always logged and later ones say how many were hidden.
    """

    def __init__(self, interval: float = FAILURE_LOG_INTERVAL) -> None:
        self._interval = interval
        self._last_logged: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}

    def failure(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last_logged[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (%d similar failures since the last report)"
            args += (suppressed,)
        logger.warning(message, *args)


class RemoteControlledSampler(Sampler):
    """Delegates to a sampler built from the strategy served at ``sampling_endpoint``.

    Polls ``GET <sampling_endpoint>?service=<service_name>`` every ``refresh_interval``
    seconds (with jitter). Both the proto-JSON form (``/sampling``, string enums) and the
    legacy Thrift-JSON form (``/``, integer enums) are accepted. Until the first successful
    poll, and whenever a poll fails, the current sampler stays in effect
    (``initial_sampler``, default ``ProbabilisticSampler(0.001)``).

    Counters on ``metrics``: ``sampler.queries.ok|err`` (fetch and JSON decoding) and
    ``sampler.updates.ok|err`` (strategy validation; ``ok`` counts actual changes).

    ``start_polling=False`` skips the background thread; call :meth:`poll_once` yourself.
    """

    def __init__(
        self,
        service_name: str,
        sampling_endpoint: str = DEFAULT_SAMPLING_ENDPOINT,
        initial_sampler: Optional[Sampler] = None,
        refresh_interval: float = DEFAULT_SAMPLING_INTERVAL,
        max_operations: int = DEFAULT_MAX_OPERATIONS,
        metrics: Optional[Metrics] = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        start_polling: bool = True,
    ) -> None:
        if not isinstance(service_name, str) or not service_name:
            raise ValueError(f"service_name must be a non-empty string, got {service_name!r}")
        scheme = (
            urllib.parse.urlsplit(sampling_endpoint).scheme
            if isinstance(sampling_endpoint, str)
            else ""
        )
        if scheme not in ("http", "https"):
            raise ValueError(f"sampling_endpoint must be an http(s) URL, got {sampling_endpoint!r}")
        self.service_name = service_name
        self.sampling_endpoint = sampling_endpoint
        self.refresh_interval = check_seconds(refresh_interval, "refresh_interval")
        self.timeout = check_seconds(timeout, "timeout")
        self.max_operations = check_count(max_operations, "max_operations")
        self.metrics = metrics if metrics is not None else Metrics()
        # Created up front: Metrics.counter() locks on first use, and a lock held by another
        # thread at fork() time would deadlock the child's poller.
        self._queries_ok = self.metrics.counter(METRIC_QUERIES_OK)
        self._queries_err = self.metrics.counter(METRIC_QUERIES_ERR)
        self._updates_ok = self.metrics.counter(METRIC_UPDATES_OK)
        self._updates_err = self.metrics.counter(METRIC_UPDATES_ERR)
        separator = "&" if "?" in sampling_endpoint else "?"
        self._url = (
            f"{sampling_endpoint}{separator}service={urllib.parse.quote(service_name, safe='')}"
        )
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._sampler: Sampler = (
            initial_sampler
            if initial_sampler is not None
            else ProbabilisticSampler(DEFAULT_SAMPLING_PROBABILITY)
        )
        self._failures = _FailureLog()
        self._poll_lock = threading.Lock()
        self._closed = False
        self._start_polling = start_polling
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._finalizer: Optional[weakref.finalize] = None
        _live_samplers.add(self)
        if start_polling:
            self._start_thread()

    # -- hot path -------------------------------------------------------------------------

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        # One attribute read: updates swap ``_sampler`` atomically or update it in place.
        return self._sampler.is_sampled(trace_id, operation)

    @property
    def sampler(self) -> Sampler:
        """The sampler currently in effect."""
        return self._sampler

    # -- polling ------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Fetch and apply the strategy now; ``True`` if a valid strategy is in effect.

        Never raises for network or server faults: they are counted and logged, and the
        current sampler stays.
        """
        with self._poll_lock:
            if self._closed:
                return False
            payload = self._query()
            if payload is None:
                return False
            try:
                strategy = parse_strategy(payload)
            except ValueError as exc:
                self._updates_err.inc()
                self._failures.failure(
                    "strategy", "Invalid sampling strategy from %s: %s", self.sampling_endpoint, exc
                )
                return False
            if self._closed:  # closed while the request was in flight
                return False
            if self._apply(strategy):
                self._updates_ok.inc()
                logger.debug("Sampler for %r set to %r", self.service_name, self._sampler)
            return True

    def _query(self) -> Any:
        """The decoded JSON body, or ``None`` after counting and logging the failure."""
        kind = "request"
        try:
            with self._opener.open(self._url, timeout=self.timeout) as response:
                status = response.status
                body = response.read(MAX_RESPONSE_BYTES + 1)
            if status != 200:
                kind = "http"
                raise ValueError(f"HTTP status {status}")
            if len(body) > MAX_RESPONSE_BYTES:
                kind = "response"
                raise ValueError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
            kind = "json"
            payload = json.loads(body.decode("utf-8"))
        except urllib.error.HTTPError as exc:
            exc.close()  # an HTTPError holds the open response
            self._query_failed("http", exc)
            return None
        except Exception as exc:  # any fault of the agent or the network must not escape
            self._query_failed(kind, exc)
            return None
        self._queries_ok.inc()
        return payload

    def _query_failed(self, kind: str, exc: BaseException) -> None:
        self._queries_err.inc()
        self._failures.failure(
            kind, "Cannot get sampling strategy from %s (%s): %s", self._url, kind, exc
        )

    def _apply(self, strategy: SamplingStrategy) -> bool:
        current = self._sampler
        if isinstance(strategy, PerOperationStrategy):
            if isinstance(current, AdaptiveSampler):
                return current.update(strategy)
            self._sampler = AdaptiveSampler(strategy, self.max_operations)
            return True
        if isinstance(strategy, RateLimitingStrategy):
            if isinstance(current, RateLimitingSampler):
                # In place, so the bucket keeps its credits across polls.
                return current.update(strategy.max_traces_per_second)
            self._sampler = RateLimitingSampler(strategy.max_traces_per_second)
            return True
        if isinstance(strategy, ProbabilisticStrategy):
            if isinstance(current, ProbabilisticSampler) and current.rate == strategy.sampling_rate:
                return False
            self._sampler = ProbabilisticSampler(strategy.sampling_rate)
            return True
        raise TypeError(f"unknown sampling strategy {strategy!r}")

    def _next_delay(self) -> float:
        return self.refresh_interval * _jitter.uniform(1.0 - INTERVAL_JITTER, 1.0 + INTERVAL_JITTER)

    # -- thread lifecycle -----------------------------------------------------------------

    def _start_thread(self) -> None:
        stop = threading.Event()
        self._stop = stop
        first_delay = _jitter.uniform(0.0, min(MAX_INITIAL_DELAY, self.refresh_interval))
        thread = threading.Thread(
            target=_poll_loop,
            args=(weakref.ref(self), stop, first_delay),
            name="opentracing-sls-sampler",
            daemon=True,
        )
        # Stop the thread promptly if the sampler is dropped without close().
        self._finalizer = weakref.finalize(self, stop.set)
        self._thread = thread
        thread.start()

    def _after_fork_in_child(self) -> None:
        # Locks may have been held by the parent's poller at fork time: replace them.
        self._poll_lock = threading.Lock()
        self._thread = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._start_polling and not self._closed:
            self._start_thread()

    def close(self) -> None:
        """Stop polling (within about a second) and close the current sampler. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _live_samplers.discard(self)
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # An in-flight request may take up to ``timeout``; the thread is a daemon and
            # applies nothing after close, so waiting longer would only delay shutdown.
            thread.join(min(self.timeout, 1.0))
        if self._finalizer is not None:
            self._finalizer.detach()
        self._sampler.close()

    def __repr__(self) -> str:
        return (
            f"RemoteControlledSampler({self.service_name!r}, {self.sampling_endpoint!r}, "
            f"sampler={self._sampler!r})"
        )


def _poll_loop(
    ref: weakref.ref[RemoteControlledSampler], stop: threading.Event, delay: float
) -> None:
    # A strong reference exists only during a poll, never while waiting, so an abandoned
    # sampler can be collected (its finalizer then sets ``stop``).
    while not stop.wait(delay):
        sampler = ref()
        if sampler is None:
            return
        try:
            sampler.poll_once()
        except Exception:  # the poller must outlive any bug in a single poll
            logger.exception("Unexpected error while polling the sampling strategy")
        delay = sampler._next_delay()
        del sampler


_live_samplers: weakref.WeakSet[RemoteControlledSampler] = weakref.WeakSet()


def _restart_pollers_in_child() -> None:
    for sampler in list(_live_samplers):
        sampler._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_pollers_in_child)
