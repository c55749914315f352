"""The basic samplers: constant, probabilistic, rate limiting and guaranteed throughput.

Results are precomputed ``(decision, tags)`` tuples, so the common unsampled path is an
attribute read and a comparison; the tracer must decide in well under a microsecond.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..constants import (
    MASK_64,
    SAMPLER_TYPE_CONST,
    SAMPLER_TYPE_LOWER_BOUND,
    SAMPLER_TYPE_PROBABILISTIC,
    SAMPLER_TYPE_RATE_LIMITING,
)
from .base import Sampler, SamplingDecision, check_probability, check_rate, decisions, sampler_tags
from .rate_limiter import Clock, RateLimiter

_TWO_POW_64 = 1 << 64


class ConstSampler(Sampler):
    """Always the same decision; tags ``const`` / the decision (bool)."""

    __slots__ = ("_result",)

    def __init__(self, decision: bool) -> None:
        decision = bool(decision)
        self._result: SamplingDecision = (decision, sampler_tags(SAMPLER_TYPE_CONST, decision))

    @property
    def decision(self) -> bool:
        return self._result[0]

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        return self._result

    def __eq__(self, other: Any) -> bool:
        return type(other) is ConstSampler and other.decision == self.decision

    def __hash__(self) -> int:
        return hash((ConstSampler, self.decision))

    def __repr__(self) -> str:
        return f"ConstSampler({self.decision!r})"


class ProbabilisticSampler(Sampler):
    """Samples a fraction ``rate`` of traces, decided by the trace id alone.

    Trace ids are uniformly random, so ``low 64 bits < rate * 2**64`` selects the fraction
    ``rate`` without drawing a new random number, and every service (and jaeger-client, which
    uses the same formula) reaches the same decision for the same trace. Only the low 64 bits
    count, so a 128-bit trace id decides like its 64-bit form. Tags: ``probabilistic`` / rate.
    """

    __slots__ = ("_rate", "_boundary", "_outcomes")

    def __init__(self, rate: float) -> None:
        self._rate = check_probability(rate)
        # For an integer id, ``id < x`` equals ``id < ceil(x)``: the ceiling keeps exactly
        # jaeger-client's float comparison (truncating would drop one id for tiny rates) while
        # the hot path compares two ints. Rate 1.0 gives 2**64 (always), 0.0 gives 0 (never).
        self._boundary = math.ceil(self._rate * _TWO_POW_64)
        self._outcomes = decisions(sampler_tags(SAMPLER_TYPE_PROBABILISTIC, self._rate))

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def boundary(self) -> int:
        """Trace ids whose low 64 bits are below this are sampled."""
        return self._boundary

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        return self._outcomes[(trace_id & MASK_64) < self._boundary]

    def __eq__(self, other: Any) -> bool:
        return type(other) is ProbabilisticSampler and other.rate == self.rate

    def __hash__(self) -> int:
        return hash((ProbabilisticSampler, self.rate))

    def __repr__(self) -> str:
        return f"ProbabilisticSampler({self.rate!r})"


def _max_balance(traces_per_second: float) -> float:
    # A bucket of at least one credit lets rates below 1/s sample at all; a zero rate gets an
    # empty bucket so that it really never samples, even right after an update from a higher rate.
    return max(traces_per_second, 1.0) if traces_per_second > 0.0 else 0.0


class RateLimitingSampler(Sampler):
    """Samples at most ``max_traces_per_second`` traces per second (leaky bucket).

    Bursts of up to ``max(mtps, 1)`` traces are allowed; 0 never samples. Tags:
    ``ratelimiting`` / mtps (float).
    """

    __slots__ = ("_limiter", "_mtps", "_outcomes")

    def __init__(
        self, max_traces_per_second: float = 10.0, *, clock: Clock = time.monotonic
    ) -> None:
        mtps = check_rate(max_traces_per_second, "max_traces_per_second")
        self._mtps = mtps
        self._limiter = RateLimiter(mtps, _max_balance(mtps), clock=clock)
        self._outcomes = decisions(sampler_tags(SAMPLER_TYPE_RATE_LIMITING, mtps))

    @property
    def max_traces_per_second(self) -> float:
        return self._mtps

    @property
    def rate_limiter(self) -> RateLimiter:
        return self._limiter

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        return self._outcomes[self._limiter.check_credit(1.0)]

    def update(self, max_traces_per_second: float) -> bool:
        """Change the rate in place, keeping the earned credits; ``True`` if it changed."""
        mtps = check_rate(max_traces_per_second, "max_traces_per_second")
        if mtps == self._mtps:
            return False
        self._limiter.update(mtps, _max_balance(mtps))
        self._mtps = mtps
        self._outcomes = decisions(sampler_tags(SAMPLER_TYPE_RATE_LIMITING, mtps))
        return True

    def __eq__(self, other: Any) -> bool:
        # The balance is transient state; two samplers with the same rate are equivalent.
        return type(other) is RateLimitingSampler and other._mtps == self._mtps

    __hash__ = None  # type: ignore[assignment]  # mutable through update()

    def __repr__(self) -> str:
        return f"RateLimitingSampler({self._mtps!r})"


class GuaranteedThroughputProbabilisticSampler(Sampler):
    """Probabilistic sampling with a per-operation floor of ``lower_bound`` traces per second.

    The probabilistic sampler decides first; when it samples, the lower-bound limiter is still
    charged so that rare operations are not sampled twice as often as intended. Otherwise the
    limiter decides. Tags: ``probabilistic`` / rate, or ``lowerbound`` / rate (the rate, not
    the bound, as jaeger-client reports it).
    """

    __slots__ = ("operation", "_limiter", "_lower_bound", "_state")

    def __init__(
        self,
        operation: str,
        lower_bound: float,
        rate: float,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.operation = operation
        lower_bound = check_rate(lower_bound, "lower_bound")
        self._lower_bound = lower_bound
        self._limiter = RateLimiter(lower_bound, _max_balance(lower_bound), clock=clock)
        self._state = self._make_state(check_probability(rate))

    @staticmethod
    def _make_state(rate: float) -> tuple:
        # One tuple swapped atomically by update(), so a concurrent is_sampled never pairs
        # the new probabilistic sampler with the old rate's lower-bound tags.
        return ProbabilisticSampler(rate), decisions(sampler_tags(SAMPLER_TYPE_LOWER_BOUND, rate))

    @property
    def rate(self) -> float:
        return self._state[0].rate

    @property
    def lower_bound(self) -> float:
        return self._lower_bound

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        probabilistic, lower_bound_outcomes = self._state
        result = probabilistic.is_sampled(trace_id, operation)
        if result[0]:
            self._limiter.check_credit(1.0)
            return result
        return lower_bound_outcomes[self._limiter.check_credit(1.0)]

    def update(self, lower_bound: float, rate: float) -> bool:
        """Change the bound and the rate in place; ``True`` if either changed."""
        lower_bound = check_rate(lower_bound, "lower_bound")
        rate = check_probability(rate)
        changed = False
        if rate != self.rate:
            self._state = self._make_state(rate)
            changed = True
        if lower_bound != self._lower_bound:
            self._limiter.update(lower_bound, _max_balance(lower_bound))
            self._lower_bound = lower_bound
            changed = True
        return changed

    def __eq__(self, other: Any) -> bool:
        return (
            type(other) is GuaranteedThroughputProbabilisticSampler
            and other.operation == self.operation
            and other.rate == self.rate
            and other._lower_bound == self._lower_bound
        )

    __hash__ = None  # type: ignore[assignment]  # mutable through update()

    def __repr__(self) -> str:
        return (
            f"GuaranteedThroughputProbabilisticSampler({self.operation!r}, "
            f"lower_bound={self._lower_bound!r}, rate={self.rate!r})"
        )
