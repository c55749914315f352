"""Samplers: decide at the root of a trace whether it is recorded.

Every sampler returns ``(sampled, tags)`` from ``is_sampled(trace_id, operation)``; the tags
(``sampler.type`` / ``sampler.param``) go on sampled root spans. Module map:

- ``base``: the :class:`Sampler` contract and shared parameter checks;
- ``samplers``: const, probabilistic, rate limiting, guaranteed throughput;
- ``rate_limiter``: the leaky bucket behind the rate-based samplers;
- ``adaptive``: per-operation sampling;
- ``strategy``: parsing the sampling endpoint's JSON;
- ``remote``: the sampler polled from jaeger-agent;
- ``factory``: building one from ``type`` / ``param`` configuration.
"""

from .adaptive import AdaptiveSampler
from .base import Sampler, SamplingDecision
from .factory import SAMPLER_TYPES, sampler_from_config
from .rate_limiter import RateLimiter
from .remote import DEFAULT_SAMPLING_ENDPOINT, RemoteControlledSampler
from .samplers import (
    ConstSampler,
    GuaranteedThroughputProbabilisticSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
)
from .strategy import (
    OperationStrategy,
    PerOperationStrategy,
    ProbabilisticStrategy,
    RateLimitingStrategy,
    SamplingStrategy,
    parse_strategy,
)

__all__ = [
    "AdaptiveSampler",
    "ConstSampler",
    "DEFAULT_SAMPLING_ENDPOINT",
    "GuaranteedThroughputProbabilisticSampler",
    "OperationStrategy",
    "PerOperationStrategy",
    "ProbabilisticSampler",
    "ProbabilisticStrategy",
    "RateLimiter",
    "RateLimitingSampler",
    "RateLimitingStrategy",
    "RemoteControlledSampler",
    "SAMPLER_TYPES",
    "Sampler",
    "SamplingDecision",
    "SamplingStrategy",
    "parse_strategy",
    "sampler_from_config",
]
