"""Per-operation sampling: one guaranteed-throughput sampler per operation name."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Mapping, Union

from ..constants import DEFAULT_MAX_OPERATIONS
from .base import Sampler, SamplingDecision, check_count
from .rate_limiter import Clock
from .samplers import GuaranteedThroughputProbabilisticSampler, ProbabilisticSampler
from .strategy import PerOperationStrategy, parse_per_operation


class AdaptiveSampler(Sampler):
    """Samples each operation with its own rate and a shared lower bound.

    ``strategies`` is the ``operationSampling`` object of a sampling response (JSON dict:
    ``defaultSamplingProbability``, ``defaultLowerBoundTracesPerSecond``,
    ``perOperationStrategies``) or an already parsed :class:`PerOperationStrategy`.

    An operation not listed gets a guaranteed-throughput sampler with the defaults, while
    fewer than ``max_operations`` exist; past that, new operations share the default
    probabilistic sampler so that unbounded operation names (ids in URLs) cannot grow memory.

    Thread-safe: known operations are a lock-free dict lookup; the lock is taken only to add
    an operation or to apply an update.
    """

    def __init__(
        self,
        strategies: Union[Mapping[str, Any], PerOperationStrategy],
        max_operations: int = DEFAULT_MAX_OPERATIONS,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        strategy = parse_per_operation(strategies)
        self.max_operations = check_count(max_operations, "max_operations")
        self._clock = clock
        self._lock = threading.Lock()
        self._strategy = strategy
        self._default_sampler = ProbabilisticSampler(strategy.default_sampling_probability)
        self._samplers: Dict[str, GuaranteedThroughputProbabilisticSampler] = {
            op.operation: self._new_sampler(op.operation, op.sampling_rate)
            for op in strategy.operations
        }

    @property
    def strategy(self) -> PerOperationStrategy:
        """The strategy last applied."""
        return self._strategy

    @property
    def default_sampling_probability(self) -> float:
        return self._strategy.default_sampling_probability

    @property
    def lower_bound(self) -> float:
        return self._strategy.default_lower_bound_traces_per_second

    @property
    def samplers(self) -> Dict[str, GuaranteedThroughputProbabilisticSampler]:
        """A snapshot of the per-operation samplers."""
        return dict(self._samplers)

    def _new_sampler(self, operation: str, rate: float) -> GuaranteedThroughputProbabilisticSampler:
        return GuaranteedThroughputProbabilisticSampler(
            operation, self._strategy.default_lower_bound_traces_per_second, rate, clock=self._clock
        )

    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        sampler = self._samplers.get(operation)
        if sampler is None:
            return self._sample_new_operation(trace_id, operation)
        return sampler.is_sampled(trace_id, operation)

    def _sample_new_operation(self, trace_id: int, operation: str) -> SamplingDecision:
        with self._lock:
            # Re-check under the lock: another thread may have added it, and the count must
            # not overshoot max_operations.
            sampler = self._samplers.get(operation)
            if sampler is None:
                if len(self._samplers) >= self.max_operations:
                    fallback = self._default_sampler
                    return fallback.is_sampled(trace_id, operation)
                sampler = self._new_sampler(operation, self._strategy.default_sampling_probability)
                self._samplers[operation] = sampler
        return sampler.is_sampled(trace_id, operation)

    def update(self, strategies: Union[Mapping[str, Any], PerOperationStrategy]) -> bool:
        """Apply a new strategy in place; ``True`` if it differs from the current one.

        Existing samplers keep their rate-limiter balance. Operations the new strategy no
        longer lists fall back to the new defaults (jaeger-client leaves them at their old
        rate forever). Raises ``ValueError`` for an invalid strategy, changing nothing.
        """
        strategy = parse_per_operation(strategies)
        with self._lock:
            if strategy == self._strategy:
                return False
            lower_bound = strategy.default_lower_bound_traces_per_second
            default_rate = strategy.default_sampling_probability
            self._strategy = strategy
            listed = {op.operation: op.sampling_rate for op in strategy.operations}
            for operation, sampler in self._samplers.items():
                sampler.update(lower_bound, listed.pop(operation, default_rate))
            # The remaining entries are new operations; the server's list is never truncated.
            for operation, rate in listed.items():
                self._samplers[operation] = self._new_sampler(operation, rate)
            if self._default_sampler.rate != default_rate:
                self._default_sampler = ProbabilisticSampler(default_rate)
            return True

    def __eq__(self, other: Any) -> bool:
        if type(other) is not AdaptiveSampler:
            return False
        return (
            self.max_operations == other.max_operations
            and self._strategy == other._strategy
            and {op: s.rate for op, s in self._samplers.items()}
            == {op: s.rate for op, s in other._samplers.items()}
        )

    __hash__ = None  # type: ignore[assignment]  # mutable through update()

    def __repr__(self) -> str:
        return (
            f"AdaptiveSampler(default_sampling_probability={self.default_sampling_probability!r}, "
            f"lower_bound={self.lower_bound!r}, operations={len(self._samplers)}, "
            f"max_operations={self.max_operations})"
        )
