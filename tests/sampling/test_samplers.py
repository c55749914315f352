"""Const, probabilistic, rate-limiting and guaranteed-throughput samplers."""

from __future__ import annotations

import math
import random

import pytest

from opentracing_sls.constants import MASK_64
from opentracing_sls.sampling import (
    ConstSampler,
    GuaranteedThroughputProbabilisticSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    Sampler,
)

TAGS = ("sampler.type", "sampler.param")


def tags_of(result):
    return result[1]["sampler.type"], result[1]["sampler.param"]


def random_ids(count, bits=64, seed=7):
    rng = random.Random(seed)
    return [rng.getrandbits(bits) for _ in range(count)]


# -- ConstSampler -----------------------------------------------------------------------------


@pytest.mark.parametrize("decision", [True, False])
def test_const_sampler_decision_and_tags(decision):
    sampler = ConstSampler(decision)
    for trace_id in (0, 1, MASK_64, (1 << 128) - 1):
        sampled, tags = sampler.is_sampled(trace_id, "op")
        assert sampled is decision
        assert tags == {"sampler.type": "const", "sampler.param": decision}
        assert type(tags["sampler.param"]) is bool


def test_const_sampler_returns_the_precomputed_result():
    sampler = ConstSampler(False)
    assert sampler.is_sampled(1, "a") is sampler.is_sampled(2, "b")


def test_const_sampler_value_semantics():
    assert ConstSampler(True) == ConstSampler(1)
    assert ConstSampler(True) != ConstSampler(False)
    assert hash(ConstSampler(False)) == hash(ConstSampler(False))
    assert repr(ConstSampler(True)) == "ConstSampler(True)"
    assert isinstance(ConstSampler(True), Sampler)
    ConstSampler(True).close()  # a no-op, but part of the contract


# -- ProbabilisticSampler ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.0000001, math.nan, math.inf, True, "0.5", None])
def test_probabilistic_sampler_rejects_bad_rates_with_value_error(rate):
    with pytest.raises(ValueError, match="sampling rate"):
        ProbabilisticSampler(rate)


def test_probabilistic_boundary_is_rate_times_two_pow_64():
    sampler = ProbabilisticSampler(0.5)
    assert sampler.boundary == 1 << 63
    assert sampler.is_sampled((1 << 63) - 1)[0] is True
    assert sampler.is_sampled(1 << 63)[0] is False
    assert sampler.is_sampled(0)[0] is True
    assert sampler.is_sampled(MASK_64)[0] is False


def test_probabilistic_rate_zero_never_and_one_always():
    never, always = ProbabilisticSampler(0.0), ProbabilisticSampler(1)
    for trace_id in [0, 1, MASK_64, (1 << 127) | MASK_64, *random_ids(200, 128)]:
        assert never.is_sampled(trace_id)[0] is False
        assert always.is_sampled(trace_id)[0] is True
    assert always.rate == 1.0 and type(always.rate) is float


def test_probabilistic_uses_only_the_low_64_bits_of_128_bit_ids():
    sampler = ProbabilisticSampler(0.3)
    highs = random_ids(50, 64, seed=1)
    for low, high in zip(random_ids(50, 64, seed=2), highs):
        assert sampler.is_sampled((high << 64) | low) == sampler.is_sampled(low)
    # High half all ones, low half just above/below the boundary.
    boundary = sampler.boundary
    assert sampler.is_sampled((MASK_64 << 64) | (boundary - 1))[0] is True
    assert sampler.is_sampled((MASK_64 << 64) | boundary)[0] is False


def test_probabilistic_instances_agree_and_hit_the_rate():
    first, second = ProbabilisticSampler(0.25), ProbabilisticSampler(0.25)
    ids = random_ids(20000)
    decisions = [first.is_sampled(t)[0] for t in ids]
    assert decisions == [second.is_sampled(t)[0] for t in ids]
    assert abs(sum(decisions) / len(ids) - 0.25) < 0.02


def test_probabilistic_tags_and_value_semantics():
    sampler = ProbabilisticSampler(0.5)
    assert tags_of(sampler.is_sampled(0)) == ("probabilistic", 0.5)
    assert tags_of(sampler.is_sampled(MASK_64)) == ("probabilistic", 0.5)
    assert sampler == ProbabilisticSampler(0.5) != ProbabilisticSampler(0.25)
    assert hash(sampler) == hash(ProbabilisticSampler(0.5))
    assert repr(sampler) == "ProbabilisticSampler(0.5)"
    with pytest.raises(AttributeError):
        sampler.rate = 1.0  # read-only: the precomputed boundary and tags must not drift


@pytest.mark.parametrize("rate", [0.0, 1e-18, 1e-6, 0.001, 0.1, 0.5, 0.999, 1.0])
def test_probabilistic_decisions_match_jaeger_client(rate):
    jaeger_sampler = pytest.importorskip("jaeger_client.sampler")
    ours, theirs = ProbabilisticSampler(rate), jaeger_sampler.ProbabilisticSampler(rate)
    ids = random_ids(2000, 64) + random_ids(500, 128, seed=3)
    # The ids around the boundary are where an off-by-one would show.
    ids += [b & ((1 << 128) - 1) for b in range(ours.boundary - 3, ours.boundary + 3) if b >= 0]
    ids += [0, 1, MASK_64, 1 << 64, (1 << 128) - 1]
    for trace_id in ids:
        assert ours.is_sampled(trace_id)[0] == theirs.is_sampled(trace_id)[0], trace_id
        assert ours.is_sampled(trace_id)[1] == theirs.is_sampled(trace_id)[1]


# -- RateLimitingSampler ----------------------------------------------------------------------


def test_rate_limiting_sampler_follows_the_bucket(clock):
    sampler = RateLimitingSampler(2, clock=clock)
    clock.advance(10)  # fill the bucket: max balance = max(2, 1) = 2
    results = [sampler.is_sampled(i)[0] for i in range(5)]
    assert results == [True, True, False, False, False]
    clock.advance(0.5)  # one credit at 2/s
    assert [sampler.is_sampled(i)[0] for i in range(2)] == [True, False]
    assert tags_of(sampler.is_sampled(0)) == ("ratelimiting", 2.0)


def test_rate_limiting_below_one_per_second_still_samples(clock):
    sampler = RateLimitingSampler(0.1, clock=clock)
    clock.advance(10)
    assert sampler.is_sampled(0)[0] is True
    clock.advance(5)
    assert sampler.is_sampled(0)[0] is False
    clock.advance(5)
    assert sampler.is_sampled(0)[0] is True


def test_rate_limiting_zero_never_samples_even_after_an_update(clock):
    sampler = RateLimitingSampler(0, clock=clock)
    clock.advance(3600)
    assert not any(sampler.is_sampled(i)[0] for i in range(10))
    busy = RateLimitingSampler(5, clock=clock)
    clock.advance(10)  # full bucket of 5
    assert busy.update(0) is True
    clock.advance(10)
    assert not any(busy.is_sampled(i)[0] for i in range(10))


def test_rate_limiting_update_keeps_the_balance(clock):
    sampler = RateLimitingSampler(10, clock=clock)
    clock.advance(10)
    for _ in range(3):
        assert sampler.is_sampled(0)[0]
    assert sampler.rate_limiter.balance == pytest.approx(7.0)
    assert sampler.update(20) is True
    assert sampler.rate_limiter.balance == pytest.approx(7.0)  # not rescaled to 14
    assert tags_of(sampler.is_sampled(0)) == ("ratelimiting", 20.0)
    assert sampler.update(20) is False
    assert sampler.update(5) is True
    assert sampler.rate_limiter.balance == pytest.approx(5.0)  # clamped to the new maximum
    assert sampler.max_traces_per_second == 5.0


@pytest.mark.parametrize("mtps", [-1, math.nan, math.inf, "5", True])
def test_rate_limiting_rejects_bad_rates(mtps):
    with pytest.raises(ValueError, match="max_traces_per_second"):
        RateLimitingSampler(mtps)
    with pytest.raises(ValueError, match="max_traces_per_second"):
        RateLimitingSampler(1).update(mtps)


def test_rate_limiting_value_semantics():
    assert RateLimitingSampler(3) == RateLimitingSampler(3.0) != RateLimitingSampler(4)
    assert repr(RateLimitingSampler(3)) == "RateLimitingSampler(3.0)"


# -- GuaranteedThroughputProbabilisticSampler -------------------------------------------------


def test_gtp_lower_bound_path_reports_the_rate(clock):
    sampler = GuaranteedThroughputProbabilisticSampler("op", 1.0, 0.0, clock=clock)
    clock.advance(10)  # the 1-credit bucket is full
    result = sampler.is_sampled(MASK_64, "op")
    assert result == (True, {"sampler.type": "lowerbound", "sampler.param": 0.0})
    assert sampler.is_sampled(MASK_64, "op") == (
        False,
        {"sampler.type": "lowerbound", "sampler.param": 0.0},
    )
    clock.advance(1.0)
    assert sampler.is_sampled(MASK_64, "op")[0] is True


def test_gtp_probabilistic_path_wins_and_charges_the_limiter(clock):
    sampler = GuaranteedThroughputProbabilisticSampler("op", 1.0, 0.5, clock=clock)
    clock.advance(10)
    assert sampler.is_sampled(0, "op") == (
        True,
        {"sampler.type": "probabilistic", "sampler.param": 0.5},
    )
    # The probabilistic sample used the lower bound's credit: no extra sample right after.
    assert sampler.is_sampled(MASK_64, "op") == (
        False,
        {"sampler.type": "lowerbound", "sampler.param": 0.5},
    )


def test_gtp_update_in_place(clock):
    sampler = GuaranteedThroughputProbabilisticSampler("op", 1.0, 0.0, clock=clock)
    clock.advance(10)
    assert sampler.update(1.0, 0.0) is False
    assert sampler.update(2.0, 1.0) is True
    assert (sampler.rate, sampler.lower_bound) == (1.0, 2.0)
    assert tags_of(sampler.is_sampled(MASK_64, "op")) == ("probabilistic", 1.0)
    assert sampler == GuaranteedThroughputProbabilisticSampler("op", 2.0, 1.0)
    assert "lower_bound=2.0" in repr(sampler)


@pytest.mark.parametrize(
    "args, message",
    [
        (("op", -1, 0.5), "lower_bound"),
        (("op", 1, 2.0), "sampling rate"),
        (("op", 1, None), "rate"),
    ],
)
def test_gtp_rejects_bad_params(args, message):
    with pytest.raises(ValueError, match=message):
        GuaranteedThroughputProbabilisticSampler(*args)
