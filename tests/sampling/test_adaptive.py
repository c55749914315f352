"""Per-operation (adaptive) sampling."""

from __future__ import annotations

import threading

import pytest

from opentracing_sls.constants import MASK_64
from opentracing_sls.sampling import (
    AdaptiveSampler,
    GuaranteedThroughputProbabilisticSampler,
    PerOperationStrategy,
    ProbabilisticSampler,
)


def strategies(default=0.0, lower_bound=0.0, **rates):
    return {
        "defaultSamplingProbability": default,
        "defaultLowerBoundTracesPerSecond": lower_bound,
        "defaultUpperBoundTracesPerSecond": 0,  # accepted and ignored
        "perOperationStrategies": [
            {"operation": op, "probabilisticSampling": {"samplingRate": rate}}
            for op, rate in rates.items()
        ],
    }


def test_each_operation_uses_its_own_rate():
    sampler = AdaptiveSampler(strategies(default=0.0, always=1.0, never=0.0))
    assert sampler.is_sampled(MASK_64, "always") == (
        True,
        {"sampler.type": "probabilistic", "sampler.param": 1.0},
    )
    # Lower bound 0: the limiter never rescues an unsampled trace.
    assert sampler.is_sampled(0, "never") == (
        False,
        {"sampler.type": "lowerbound", "sampler.param": 0.0},
    )
    assert isinstance(sampler.samplers["always"], GuaranteedThroughputProbabilisticSampler)


def test_unknown_operation_gets_a_sampler_with_the_defaults():
    sampler = AdaptiveSampler(strategies(default=1.0, lower_bound=0.5))
    assert sampler.is_sampled(MASK_64, "new-op")[0] is True
    created = sampler.samplers["new-op"]
    assert (created.rate, created.lower_bound) == (1.0, 0.5)


def test_lower_bound_applies_per_operation(clock):
    sampler = AdaptiveSampler(strategies(default=0.0, lower_bound=1.0, a=0.0), clock=clock)
    clock.advance(10)
    assert sampler.is_sampled(MASK_64, "a") == (
        True,
        {"sampler.type": "lowerbound", "sampler.param": 0.0},
    )
    assert sampler.is_sampled(MASK_64, "a")[0] is False
    assert sampler.is_sampled(MASK_64, "b")[0] is False  # new: its bucket starts partly empty
    clock.advance(10)
    assert sampler.is_sampled(MASK_64, "b")[0] is True


def test_beyond_max_operations_the_default_probabilistic_sampler_decides():
    sampler = AdaptiveSampler(strategies(default=0.5, a=1.0), max_operations=2)
    sampler.is_sampled(0, "b")  # second operation: still tracked
    reference = ProbabilisticSampler(0.5)
    for trace_id in (0, (1 << 63) - 1, 1 << 63, MASK_64):
        assert sampler.is_sampled(trace_id, "c") == reference.is_sampled(trace_id)
    assert set(sampler.samplers) == {"a", "b"}


def test_update_in_place():
    sampler = AdaptiveSampler(strategies(default=0.1, lower_bound=0.5, a=0.2, b=0.3))
    sampler.is_sampled(0, "lazy")
    a_sampler = sampler.samplers["a"]
    changed = sampler.update(strategies(default=0.4, lower_bound=2.0, a=0.9, c=0.7))
    assert changed is True
    after = sampler.samplers
    assert after["a"] is a_sampler and a_sampler.rate == 0.9  # same object, new rate
    assert after["c"].rate == 0.7
    # No longer listed: fall back to the new defaults.
    assert (after["b"].rate, after["lazy"].rate) == (0.4, 0.4)
    assert all(s.lower_bound == 2.0 for s in after.values())
    assert sampler.default_sampling_probability == 0.4 and sampler.lower_bound == 2.0
    assert sampler.update(strategies(default=0.4, lower_bound=2.0, a=0.9, c=0.7)) is False


def test_invalid_update_changes_nothing():
    sampler = AdaptiveSampler(strategies(default=0.1, a=0.2))
    with pytest.raises(ValueError, match="samplingRate"):
        sampler.update(strategies(default=0.1, a=2.0))
    assert sampler.samplers["a"].rate == 0.2


def test_defaults_and_parsed_strategy_accepted():
    sampler = AdaptiveSampler({})
    assert sampler.default_sampling_probability == 0.001
    assert sampler.lower_bound == pytest.approx(1 / 600)
    assert sampler.max_operations == 2000
    parsed = PerOperationStrategy(0.5, 1.0, ())
    assert AdaptiveSampler(parsed).strategy is parsed


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_rejects_bad_max_operations(bad):
    with pytest.raises(ValueError, match="max_operations"):
        AdaptiveSampler({}, max_operations=bad)


def test_equality_and_repr():
    one = AdaptiveSampler(strategies(default=0.1, a=0.2))
    assert one == AdaptiveSampler(strategies(default=0.1, a=0.2))
    assert one != AdaptiveSampler(strategies(default=0.1, a=0.3))
    assert "operations=1" in repr(one)


def test_concurrent_new_operations_respect_max_operations():
    sampler = AdaptiveSampler(strategies(default=0.5), max_operations=50)
    barrier = threading.Barrier(8)

    def worker(offset):
        barrier.wait()
        for i in range(200):
            sampler.is_sampled(i, f"op-{(i * 7 + offset) % 120}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sampler.samplers) == 50
