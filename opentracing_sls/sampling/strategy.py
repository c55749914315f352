"""Sampling strategies as served by jaeger-agent (port 5778) and the Jaeger v2 extension.

``parse_strategy`` turns a decoded JSON response into a validated, immutable strategy and
raises ``ValueError`` for anything it cannot trust. It accepts both wire forms:

- proto-JSON from ``/sampling``: ``"strategyType": "PROBABILISTIC" | "RATE_LIMITING"``;
- legacy Thrift-JSON from ``/``: ``"strategyType": 0 | 1`` (jaeger-client rejects these).

Field names follow ``jaeger-idl`` ``proto/api_v2/sampling.proto``.
"""

from __future__ import annotations

from collections import abc
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple, Union

from ..constants import DEFAULT_LOWER_BOUND, DEFAULT_SAMPLING_PROBABILITY
from .base import check_probability, check_rate

#: Largest ``maxTracesPerSecond`` accepted from a server. jaeger-client rejects 500 and above,
#: which refuses legitimate configurations; we accept the whole range of the Thrift field
#: (i16) and refuse only values that can only be garbage.
MAX_REMOTE_TRACES_PER_SECOND = 32767.0

PROBABILISTIC = "PROBABILISTIC"
RATE_LIMITING = "RATE_LIMITING"
# Enum values of SamplingStrategyType in sampling.thrift / sampling.proto.
_ENUM_BY_NUMBER = {0: PROBABILISTIC, 1: RATE_LIMITING}


@dataclass(frozen=True)
class ProbabilisticStrategy:
    """Sample a fixed fraction of traces."""

    sampling_rate: float = DEFAULT_SAMPLING_PROBABILITY


@dataclass(frozen=True)
class RateLimitingStrategy:
    """Sample at most this many traces per second."""

    max_traces_per_second: float


@dataclass(frozen=True)
class OperationStrategy:
    """The probabilistic rate for one operation name."""

    operation: str
    sampling_rate: float


@dataclass(frozen=True)
class PerOperationStrategy:
    """Per-operation rates with defaults and a lower bound (``operationSampling``).

    ``defaultUpperBoundTracesPerSecond`` exists on the wire but no client enforces it; it is
    accepted and ignored.
    """

    default_sampling_probability: float = DEFAULT_SAMPLING_PROBABILITY
    default_lower_bound_traces_per_second: float = DEFAULT_LOWER_BOUND
    operations: Tuple[OperationStrategy, ...] = ()


SamplingStrategy = Union[ProbabilisticStrategy, RateLimitingStrategy, PerOperationStrategy]


def _field(payload: Mapping[str, Any], key: str, default: Any) -> Any:
    # proto-JSON emitted with defaults may carry explicit nulls; treat them as absent.
    value = payload.get(key)
    return default if value is None else value


def _sub_object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = _field(payload, key, {})
    if not isinstance(value, abc.Mapping):
        raise ValueError(f"{key} must be an object, got {value!r}")
    return value


def _rate_of(payload: Mapping[str, Any], default: float, prefix: str = "") -> float:
    probabilistic = _sub_object(payload, "probabilisticSampling")
    return check_probability(
        _field(probabilistic, "samplingRate", default),
        prefix + "probabilisticSampling.samplingRate",
    )


def _strategy_type(payload: Mapping[str, Any]) -> str:
    raw = payload.get("strategyType")
    if raw is None:
        # proto3 may omit the enum's zero value (PROBABILISTIC); infer from the sub-object.
        return RATE_LIMITING if payload.get("rateLimitingSampling") is not None else PROBABILISTIC
    if isinstance(raw, str) and raw.upper() in (PROBABILISTIC, RATE_LIMITING):
        return raw.upper()
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in _ENUM_BY_NUMBER:
        return _ENUM_BY_NUMBER[raw]
    raise ValueError(
        f"unsupported strategyType {raw!r} (expected PROBABILISTIC, RATE_LIMITING, 0 or 1)"
    )


def parse_per_operation(payload: Any) -> PerOperationStrategy:
    """Validate an ``operationSampling`` object.

    An operation listed without ``probabilisticSampling`` gets ``defaultSamplingProbability``
    (jaeger-client uses the hard-coded 0.001 instead, ignoring the server's default).
    """
    if isinstance(payload, PerOperationStrategy):
        return payload
    if not isinstance(payload, abc.Mapping):
        raise ValueError(f"operationSampling must be an object, got {payload!r}")
    default_rate = check_probability(
        _field(payload, "defaultSamplingProbability", DEFAULT_SAMPLING_PROBABILITY),
        "defaultSamplingProbability",
    )
    lower_bound = check_rate(
        _field(payload, "defaultLowerBoundTracesPerSecond", DEFAULT_LOWER_BOUND),
        "defaultLowerBoundTracesPerSecond",
        MAX_REMOTE_TRACES_PER_SECOND,
    )
    entries = _field(payload, "perOperationStrategies", [])
    if not isinstance(entries, list):
        raise ValueError(f"perOperationStrategies must be a list, got {entries!r}")
    by_name: Dict[str, OperationStrategy] = {}
    for index, entry in enumerate(entries):
        where = f"perOperationStrategies[{index}]"
        if not isinstance(entry, abc.Mapping):
            raise ValueError(f"{where} must be an object, got {entry!r}")
        operation = entry.get("operation")
        if not isinstance(operation, str):
            raise ValueError(f"{where}.operation must be a string, got {operation!r}")
        # A repeated operation: the last entry wins, as it would in a map.
        by_name[operation] = OperationStrategy(
            operation, _rate_of(entry, default_rate, where + ".")
        )
    return PerOperationStrategy(default_rate, lower_bound, tuple(by_name.values()))


def parse_strategy(payload: Any) -> SamplingStrategy:
    """Validate a decoded ``SamplingStrategyResponse``; ``ValueError`` if it is unusable.

    ``operationSampling`` wins over ``strategyType`` when present. Missing fields take the
    jaeger-client defaults: sampling rate 0.001, and 1/600 traces per second for a missing
    ``maxTracesPerSecond``.
    """
    if not isinstance(payload, abc.Mapping):
        raise ValueError(f"sampling strategy must be a JSON object, got {payload!r}")
    operation_sampling = payload.get("operationSampling")
    if operation_sampling:
        return parse_per_operation(operation_sampling)
    if _strategy_type(payload) == RATE_LIMITING:
        rate_limiting = _sub_object(payload, "rateLimitingSampling")
        mtps = check_rate(
            _field(rate_limiting, "maxTracesPerSecond", DEFAULT_LOWER_BOUND),
            "rateLimitingSampling.maxTracesPerSecond",
            MAX_REMOTE_TRACES_PER_SECOND,
        )
        return RateLimitingStrategy(mtps)
    return ProbabilisticStrategy(_rate_of(payload, DEFAULT_SAMPLING_PROBABILITY))
