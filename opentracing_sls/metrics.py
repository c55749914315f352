"""Counters the tracer, reporter and samplers keep about themselves.

Hot paths (every span start and finish) count without taking a lock: a counter steps a
``_cspan.Tally`` (a C integer) when the C cores are built, else an ``itertools.count``; either
step is a single C call, atomic under the GIL.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Dict

from ._accel import load

_Tally = getattr(load("_cspan"), "Tally", None)


class Counter:
    """A monotonically increasing, thread-safe counter."""

    __slots__ = ("name", "_count", "_step", "_bulk", "_lock")

    def __init__(self, name: str) -> None:
        self.name = name
        if _Tally is not None:
            self._count = _Tally()
            self._step: Callable[[], object] = self._count
        else:
            self._count = itertools.count()
            self._step = self._count.__next__
        # Increments by more than one (batch sizes) add here, under a lock: they are rare.
        self._bulk = 0
        self._lock = threading.Lock()

    def inc(self, amount: int = 1) -> None:
        if amount == 1:
            self._step()
        elif amount > 0:
            with self._lock:
                self._bulk += amount

    def hot(self) -> Callable[[], object]:
        """A zero-argument incrementer for hot paths: the Tally itself, or the count's
        C-level ``__next__``."""
        return self._step

    @property
    def value(self) -> int:
        if type(self._count) is not itertools.count:  # a Tally
            return self._count.value + self._bulk  # type: ignore[no-any-return]
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
