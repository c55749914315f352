"""Build a sampler from the ``sampler.type`` / ``sampler.param`` configuration pair.

Parameters may arrive as strings (environment variables such as ``JAEGER_SAMPLER_PARAM``),
so numeric and boolean strings are converted here; anything else is a ``ValueError`` that
names the bad value and the accepted ones.
"""

from __future__ import annotations

from typing import Any, Optional

from ..constants import (
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_SAMPLING_INTERVAL,
    DEFAULT_SAMPLING_PROBABILITY,
    SAMPLER_TYPE_CONST,
    SAMPLER_TYPE_PROBABILISTIC,
    SAMPLER_TYPE_RATE_LIMITING,
    SAMPLER_TYPE_REMOTE,
)
from ..metrics import Metrics
from .base import Sampler, check_probability, check_rate
from .remote import DEFAULT_SAMPLING_ENDPOINT, DEFAULT_TIMEOUT, RemoteControlledSampler
from .samplers import ConstSampler, ProbabilisticSampler, RateLimitingSampler

#: Accepted ``type`` values; ``rate_limiting`` is jaeger-client's alternate spelling.
SAMPLER_TYPES = (
    SAMPLER_TYPE_CONST,
    SAMPLER_TYPE_PROBABILISTIC,
    SAMPLER_TYPE_RATE_LIMITING,
    "rate_limiting",
    SAMPLER_TYPE_REMOTE,
)

_CONST_PARAMS = {"1": True, "true": True, "0": False, "false": False}


def _const_decision(param: Any) -> bool:
    if isinstance(param, bool):
        return param
    if isinstance(param, (int, float)) and param in (0, 1):
        return bool(param)
    if isinstance(param, str) and param.strip().lower() in _CONST_PARAMS:
        return _CONST_PARAMS[param.strip().lower()]
    raise ValueError(
        f"sampler param for type 'const' must be one of 0, 1, true, false; got {param!r}"
    )


def _number(param: Any, name: str) -> Any:
    # Strings come from the environment; non-numeric ones are reported with the key's name.
    if isinstance(param, str):
        try:
            return float(param.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got {param!r}") from None
    return param


def sampler_from_config(
    type: str,
    param: Any = None,
    *,
    service_name: Optional[str] = None,
    sampling_endpoint: str = DEFAULT_SAMPLING_ENDPOINT,
    refresh_interval: float = DEFAULT_SAMPLING_INTERVAL,
    max_operations: int = DEFAULT_MAX_OPERATIONS,
    metrics: Optional[Metrics] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Sampler:
    """The sampler for ``type`` and ``param``.

    - ``const``: param 0/1/true/false (bool, number or string);
    - ``probabilistic``: param is the rate in [0, 1];
    - ``ratelimiting`` / ``rate_limiting``: param is the max traces per second (>= 0);
    - ``remote``: param is the initial probability (default 0.001) until the first poll;
      needs ``service_name``; the remaining keyword arguments configure the poller, which
      starts in the background without blocking.
    """
    kind = type.strip().lower() if isinstance(type, str) else type
    if kind not in SAMPLER_TYPES:
        raise ValueError(f"sampler type must be one of {', '.join(SAMPLER_TYPES)}; got {type!r}")
    name = f"sampler param for type {kind!r}"
    if param is None and kind != SAMPLER_TYPE_REMOTE:
        raise ValueError(f"{name} is required")
    if kind == SAMPLER_TYPE_CONST:
        return ConstSampler(_const_decision(param))
    if kind == SAMPLER_TYPE_PROBABILISTIC:
        return ProbabilisticSampler(check_probability(_number(param, name), name))
    if kind in (SAMPLER_TYPE_RATE_LIMITING, "rate_limiting"):
        return RateLimitingSampler(check_rate(_number(param, name), name))
    initial_rate = DEFAULT_SAMPLING_PROBABILITY
    if param is not None:
        initial_rate = check_probability(_number(param, name), name)
    if not service_name:
        raise ValueError("service_name is required for sampler type 'remote'")
    return RemoteControlledSampler(
        service_name,
        sampling_endpoint=sampling_endpoint,
        initial_sampler=ProbabilisticSampler(initial_rate),
        refresh_interval=refresh_interval,
        max_operations=max_operations,
        metrics=metrics,
        timeout=timeout,
    )
