"""The sampler contract and the parameter checks every sampler shares.

A sampler is a small value object: ``is_sampled(trace_id, operation)`` returns the decision
together with the tags the tracer puts on a sampled root span (``sampler.type`` and
``sampler.param``), so the stored trace says how it was selected.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple

from ..constants import SAMPLER_PARAM_TAG_KEY, SAMPLER_TYPE_TAG_KEY

#: ``(sampled, tags)``. The tags dict is shared between calls: callers must copy, not mutate it.
SamplingDecision = Tuple[bool, Dict[str, Any]]


class Sampler(ABC):
    """Decides whether a new trace is recorded.

    Implementations must be thread-safe: the tracer calls ``is_sampled`` from every
    application thread, without a lock of its own.
    """

    __slots__ = ()

    @abstractmethod
    def is_sampled(self, trace_id: int, operation: str = "") -> SamplingDecision:
        """Decide for a new trace.

        ``trace_id`` is an unsigned int of up to 128 bits; ``operation`` is the root span's
        operation name. Returns ``(sampled, tags)`` where ``tags`` holds ``sampler.type`` and
        ``sampler.param`` for the root span. The tags dict is shared: do not mutate it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most samplers hold nothing
        """Release background resources. Stateless samplers have none."""


def sampler_tags(sampler_type: str, param: Any) -> Dict[str, Any]:
    """The ``sampler.type`` / ``sampler.param`` tags for a root span."""
    return {SAMPLER_TYPE_TAG_KEY: sampler_type, SAMPLER_PARAM_TAG_KEY: param}


def decisions(tags: Dict[str, Any]) -> Tuple[SamplingDecision, SamplingDecision]:
    """Both precomputed results, indexable by the boolean decision: ``decisions(t)[sampled]``.

    Returning a prebuilt tuple keeps ``is_sampled`` free of allocations on the hot path.
    """
    return (False, tags), (True, tags)


def _as_float(value: Any, name: str) -> float:
    # bool is an int subclass, but ``True`` as a rate is always a configuration mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if math.isnan(result):
        raise ValueError(f"{name} must be a number, got NaN")
    return result


def check_probability(value: Any, name: str = "sampling rate") -> float:
    """``value`` as a float in [0.0, 1.0], else ``ValueError`` naming ``name``."""
    result = _as_float(value, name)
    if not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be between 0.0 and 1.0, got {value!r}")
    return result


def check_rate(value: Any, name: str, maximum: Optional[float] = None) -> float:
    """``value`` as a finite float >= 0 (and <= ``maximum``); else ``ValueError`` naming it."""
    result = _as_float(value, name)
    if result < 0.0 or math.isinf(result):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value!r}")
    return result


def check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 0 (bools refused), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def check_seconds(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, else ``ValueError`` naming ``name``."""
    result = check_rate(value, name)
    if result <= 0.0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return result
