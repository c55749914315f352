"""Trace and span id generation: fork-safe and never zero.

jaeger-client seeds ``random.Random(time.time() * pid)`` once, so pre-fork workers draw the
same ids. We keep a private generator seeded from ``os.urandom`` and reseed it in every forked
child, which keeps id generation at one C call on the hot path.
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))
_getrandbits = _rng.getrandbits


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> int:
    """A random non-zero 64-bit id (span ids and 64-bit trace ids)."""
    value = _getrandbits(64)
    while not value:
        value = _getrandbits(64)
    return value


def new_trace_id(bits_128: bool = False) -> int:
    """A random non-zero trace id; 128-bit ids have non-zero high and low halves."""
    if not bits_128:
        return new_id()
    return (new_id() << 64) | new_id()


def id_to_hex(value: int, width: int = 16) -> str:
    """Lower-case hex, zero-padded to ``width`` (16 for span ids, 16 or 32 for trace ids)."""
    return format(value, "0%dx" % width)


def trace_id_to_hex(trace_id: int) -> str:
    """16 hex digits for a 64-bit trace id, 32 for a 128-bit one."""
    return format(trace_id, "032x" if trace_id >> 64 else "016x")
