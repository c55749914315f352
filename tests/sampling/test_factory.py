"""sampler_from_config: type/param pairs as they come from config dicts and the environment."""

from __future__ import annotations

import pytest

from opentracing_sls.metrics import Metrics
from opentracing_sls.sampling import (
    ConstSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    RemoteControlledSampler,
    sampler_from_config,
)


@pytest.mark.parametrize(
    "param, decision",
    [
        (1, True),
        (0, False),
        (1.0, True),
        (True, True),
        ("true", True),
        (" FALSE ", False),
        ("1", True),
    ],
)
def test_const(param, decision):
    assert sampler_from_config("const", param) == ConstSampler(decision)


@pytest.mark.parametrize("param", [2, "yes", -1, 0.5])
def test_const_rejects_other_values(param):
    with pytest.raises(ValueError, match=r"'const' must be one of 0, 1, true, false; got"):
        sampler_from_config("const", param)


def test_probabilistic_and_rate_limiting():
    assert sampler_from_config("probabilistic", 0.5) == ProbabilisticSampler(0.5)
    assert sampler_from_config("probabilistic", "0.25") == ProbabilisticSampler(0.25)
    assert sampler_from_config("ratelimiting", 5) == RateLimitingSampler(5)
    assert sampler_from_config("rate_limiting", "2.5") == RateLimitingSampler(2.5)
    assert sampler_from_config(" Probabilistic ", 1) == ProbabilisticSampler(1.0)


@pytest.mark.parametrize(
    "sampler_type, param, message",
    [
        (
            "probabilistic",
            1.5,
            r"sampler param for type 'probabilistic' must be between 0.0 and 1.0",
        ),
        ("probabilistic", "half", r"sampler param for type 'probabilistic' must be a number"),
        ("probabilistic", "nan", "NaN"),
        ("ratelimiting", -1, r"sampler param for type 'ratelimiting' must be a finite number >= 0"),
        ("ratelimiting", None, "is required"),
        ("remote", 2, r"sampler param for type 'remote' must be between 0.0 and 1.0"),
    ],
)
def test_bad_params_name_the_value(sampler_type, param, message):
    with pytest.raises(ValueError, match=message):
        sampler_from_config(sampler_type, param, service_name="svc")


@pytest.mark.parametrize("sampler_type", ["adaptive", "", None, 3])
def test_unknown_type_lists_the_allowed_ones(sampler_type):
    with pytest.raises(ValueError) as info:
        sampler_from_config(sampler_type, 1)
    message = str(info.value)
    assert repr(sampler_type) in message
    assert "const, probabilistic, ratelimiting, rate_limiting, remote" in message


def test_remote(closed_port):
    metrics = Metrics()
    sampler = sampler_from_config(
        "remote",
        0.2,
        service_name="svc",
        sampling_endpoint=f"http://127.0.0.1:{closed_port}/sampling",
        refresh_interval=30,
        max_operations=7,
        metrics=metrics,
        timeout=1.0,
    )
    try:
        assert isinstance(sampler, RemoteControlledSampler)
        assert sampler.sampler == ProbabilisticSampler(0.2)
        assert (sampler.refresh_interval, sampler.max_operations, sampler.timeout) == (30, 7, 1.0)
        assert sampler.metrics is metrics
    finally:
        sampler.close()
    default = sampler_from_config("remote", service_name="svc")
    default.close()
    assert default.sampler == ProbabilisticSampler(0.001)


def test_remote_needs_a_service_name():
    with pytest.raises(ValueError, match="service_name"):
        sampler_from_config("remote", None)
