"""A thread-safe leaky-bucket credit limiter on a monotonic clock."""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Callable, Optional

from .base import check_rate

Clock = Callable[[], float]


class RateLimiter:
    """Grants at most ``credits_per_second`` credits per second, with bursts up to ``max_balance``.

    The balance refills in proportion to the time elapsed since the previous call (a tick),
    capped at ``max_balance``; ``check_credit(cost)`` spends ``cost`` when the balance covers
    it. The initial balance is random in ``[0, max_balance)`` so that many processes started
    together do not all sample their first requests at once.

    ``clock`` is injectable for tests; it defaults to ``time.monotonic`` because wall-clock
    jumps (NTP, suspend) must neither drain nor flood the bucket.
    """

    __slots__ = (
        "_lock",
        "_clock",
        "_credits_per_second",
        "_max_balance",
        "_balance",
        "_last_tick",
        "_one_credit_at",
    )

    def __init__(
        self,
        credits_per_second: float,
        max_balance: float,
        *,
        clock: Clock = time.monotonic,
        initial_balance: Optional[float] = None,
    ) -> None:
        self._credits_per_second = check_rate(credits_per_second, "credits_per_second")
        self._max_balance = check_rate(max_balance, "max_balance")
        if initial_balance is None:
            balance = self._max_balance * random.random()
        else:
            balance = min(check_rate(initial_balance, "initial_balance"), self._max_balance)
        self._balance = balance
        self._clock = clock
        self._last_tick = clock()
        self._lock = threading.Lock()
        self._one_credit_at = -math.inf
        self._schedule()

    @property
    def credits_per_second(self) -> float:
        return self._credits_per_second

    @property
    def max_balance(self) -> float:
        return self._max_balance

    @property
    def balance(self) -> float:
        """The balance as of the last tick (reading it does not refill)."""
        return self._balance

    def check_credit(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` credits if the balance allows it; ``True`` when spent."""
        now = self._clock()
        # Lock-free refusal while the bucket cannot hold a whole credit yet: the usual case
        # for a lower-bound limiter (one credit per ten minutes) asked on every unsampled
        # trace. A stale read can only refuse a credit that just became available; credits
        # are granted under the lock only, so never twice.
        if now < self._one_credit_at and cost >= 1.0:
            return False
        with self._lock:
            self._refill(now)
            granted = self._balance >= cost
            if granted:
                self._balance -= cost
            self._schedule()
            return granted

    def update(self, credits_per_second: float, max_balance: float) -> None:
        """Change the rate and burst size, keeping the credits already earned.

        The balance is refilled at the old rate up to now, then clamped to the new maximum.
        It is deliberately not rescaled (jaeger-client rescales proportionally): raising the
        rate must not mint a burst out of thin air, and lowering it keeps what still fits.
        """
        credits_per_second = check_rate(credits_per_second, "credits_per_second")
        max_balance = check_rate(max_balance, "max_balance")
        with self._lock:
            self._refill(self._clock())
            self._credits_per_second = credits_per_second
            self._max_balance = max_balance
            if self._balance > max_balance:
                self._balance = max_balance
            self._schedule()

    def _refill(self, now: float) -> None:
        elapsed = now - self._last_tick
        # ``now`` was read before taking the lock, so another thread may have ticked later;
        # only move forward, or that interval would be credited twice.
        if elapsed > 0.0:
            self._last_tick = now
            balance = self._balance + elapsed * self._credits_per_second
            self._balance = balance if balance < self._max_balance else self._max_balance

    def _schedule(self) -> None:
        """Record when the balance next reaches one whole credit (for the lock-free path)."""
        missing = 1.0 - self._balance
        if missing <= 0.0:
            self._one_credit_at = -math.inf
        elif self._credits_per_second > 0.0 and self._max_balance >= 1.0:
            self._one_credit_at = self._last_tick + missing / self._credits_per_second
        else:
            self._one_credit_at = math.inf  # this bucket can never hold a whole credit

    def __repr__(self) -> str:
        return (
            f"RateLimiter(credits_per_second={self._credits_per_second!r}, "
            f"max_balance={self._max_balance!r})"
        )
