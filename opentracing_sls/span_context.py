"""The immutable, propagated part of a span."""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import opentracing

from ._accel import cspan
from .constants import DEBUG_FLAG, EMPTY_BAGGAGE, SAMPLED_FLAG


class _PyContextCore:
    """The fields of a SpanContext: the pure-Python twin of ``_cspan.ContextCore``."""

    __slots__ = ("trace_id", "span_id", "parent_id", "flags", "_baggage", "debug_id",
                 "sampling_deferred", "trace_state")

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int = 0,
        flags: int = 0,
        baggage: Optional[Mapping[str, str]] = None,
        debug_id: Optional[str] = None,
        sampling_deferred: bool = False,
        trace_state: Optional[str] = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.flags = flags
        self._baggage = dict(baggage) if baggage else EMPTY_BAGGAGE
        self.debug_id = debug_id
        self.sampling_deferred = sampling_deferred
        self.trace_state = trace_state


_cspan = cspan()
_ContextCore = _cspan.ContextCore if _cspan is not None else _PyContextCore


class SpanContext(_ContextCore, opentracing.SpanContext):  # type: ignore[valid-type,misc]
    """Trace id, span id, parent id, flags and baggage.

    ``trace_id`` is an unsigned int of up to 128 bits, ``span_id``/``parent_id`` unsigned
    64-bit ints (``parent_id`` 0 for a root). ``flags`` carries the Jaeger bits
    (``SAMPLED_FLAG``, ``DEBUG_FLAG``).

    An *extracted* context may lack parts:

    - ``sampling_deferred=True``: the upstream sent ids but no sampling decision (B3 with
      ``X-B3-Sampled`` absent, ``traceparent`` is always decided); the tracer's local sampler
      decides for the child.
    - ``trace_state``: the W3C ``tracestate`` value, carried verbatim to children.
    - ``trace_id == 0``: no ids at all, only baggage or a debug id (``jaeger-debug-id``),
      with ``sampling_deferred=True``, or a bare decision (``b3: 0``, ``b3: 1``) with
      ``sampling_deferred=False``; the tracer starts a new root and keeps what there is.
    """

    # The fields and __init__(trace_id, span_id, parent_id=0, flags=0, baggage=None,
    # debug_id=None, sampling_deferred=False, trace_state=None) come from the core.
    __slots__ = ()

    @property
    def baggage(self) -> Dict[str, str]:
        return self._baggage

    @property
    def has_trace(self) -> bool:
        """True when the context carries usable ids (not only baggage or a decision)."""
        return bool(self.trace_id and self.span_id)

    @property
    def is_sampled(self) -> bool:
        return bool(self.flags & SAMPLED_FLAG)

    @property
    def is_debug(self) -> bool:
        return bool(self.flags & DEBUG_FLAG)

    def with_baggage_item(self, key: str, value: Optional[str]) -> SpanContext:
        """A copy with ``key`` set (or removed when ``value`` is None)."""
        baggage = dict(self._baggage)
        if value is None:
            baggage.pop(key, None)
        else:
            baggage[key] = value
        return SpanContext(self.trace_id, self.span_id, self.parent_id, self.flags, baggage,
                           self.debug_id, self.sampling_deferred, self.trace_state)

    def __repr__(self) -> str:
        return "SpanContext(trace_id=%x, span_id=%x, parent_id=%x, flags=%d%s)" % (
            self.trace_id, self.span_id, self.parent_id, self.flags,
            ", deferred" if self.sampling_deferred else "")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanContext):
            return NotImplemented
        return (self.trace_id, self.span_id, self.parent_id, self.flags, self._baggage,
                self.debug_id, self.sampling_deferred, self.trace_state) == (
            other.trace_id, other.span_id, other.parent_id, other.flags, other._baggage,
            other.debug_id, other.sampling_deferred, other.trace_state)

    __hash__ = None  # type: ignore[assignment]
