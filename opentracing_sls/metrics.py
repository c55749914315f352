"""Counters the tracer, reporter and samplers keep about themselves.

A counter is an ``itertools.count``: ``next()`` on it is a single C call and atomic under the
GIL, so hot paths (every span start and finish) count without taking a lock.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Dict


class Counter:
    """A monotonically increasing, thread-safe counter."""

    __slots__ = ("name", "_count", "_bulk", "_lock")

    def __init__(self, name: str) -> None:
        self.name = name
        self._count = itertools.count()
        # Increments by more than one (batch sizes) add here, under a lock: they are rare.
        self._bulk = 0
        self._lock = threading.Lock()

    def inc(self, amount: int = 1) -> None:
        if amount == 1:
            next(self._count)
        elif amount > 0:
            with self._lock:
                self._bulk += amount

    def hot(self) -> Callable[[], object]:
        """A zero-argument incrementer for hot paths: the C-level ``__next__`` of the count."""
        return self._count.__next__

    @property
    def value(self) -> int:
        # repr() is "count(N)": it shows the next value without consuming it, and unlike
        # count.__reduce__ (deprecated in 3.12) it is stable across Python versions.
        return int(repr(self._count)[6:-1]) + self._bulk


class Metrics:
    """A named set of counters, created on first use."""

    def __init__(self) -> None:
        self._counters: Dict[str, Counter] = {}
        self._lock = threading.Lock()

    def counter(self, name: str) -> Counter:
        counter = self._counters.get(name)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(name, Counter(name))
        return counter

    def snapshot(self) -> Dict[str, int]:
        """Current values of every counter, by name."""
        return {name: c.value for name, c in sorted(self._counters.items())}
