"""The leaky-bucket limiter: arithmetic on a fake clock, real time, and thread safety."""

from __future__ import annotations

import threading
import time

import pytest

from opentracing_sls.sampling import RateLimiter, RateLimitingSampler


def test_initial_balance_is_random_below_the_maximum(clock):
    balances = {RateLimiter(10, 10, clock=clock).balance for _ in range(20)}
    assert all(0.0 <= b < 10.0 for b in balances)
    assert len(balances) > 1


def test_refill_is_proportional_to_elapsed_time_and_capped(clock):
    limiter = RateLimiter(4, 2, clock=clock, initial_balance=0)
    assert limiter.check_credit() is False
    clock.advance(0.25)  # +1 credit
    assert limiter.check_credit() is True
    assert limiter.check_credit() is False
    clock.advance(100)  # capped at 2
    assert [limiter.check_credit() for _ in range(3)] == [True, True, False]
    clock.advance(0.25)
    assert limiter.check_credit(0.5) is True
    assert limiter.check_credit(0.5) is True
    assert limiter.check_credit(0.5) is False


def test_a_clock_going_backwards_does_not_drain_the_bucket(clock):
    limiter = RateLimiter(1, 5, clock=clock, initial_balance=3)
    clock.advance(-10)
    assert limiter.check_credit(3) is True


def test_update_refills_at_the_old_rate_then_clamps(clock):
    limiter = RateLimiter(1, 10, clock=clock, initial_balance=0)
    clock.advance(4)
    limiter.update(100, 3)  # 4 credits earned at 1/s, clamped to the new max of 3
    assert limiter.balance == pytest.approx(3)
    assert (limiter.credits_per_second, limiter.max_balance) == (100, 3)


@pytest.mark.parametrize("args", [(-1, 1), (1, -1), (float("nan"), 1), ("1", 1)])
def test_rejects_bad_parameters(args):
    with pytest.raises(ValueError):
        RateLimiter(*args)


def test_real_time_rate():
    limiter = RateLimiter(20, 1, initial_balance=0)
    start = time.monotonic()
    granted = 0
    while time.monotonic() - start < 0.3:
        granted += limiter.check_credit()
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    assert granted <= 20 * elapsed + 1
    assert granted >= 3  # about 6 expected; loose for slow machines


def test_threads_never_overspend_a_frozen_bucket(clock):
    limiter = RateLimiter(10, 10, clock=clock)
    clock.advance(100)  # exactly 10 credits, and the clock stays frozen
    granted = []
    barrier = threading.Barrier(8)

    def hammer():
        barrier.wait()
        granted.append(sum(limiter.check_credit() for _ in range(2000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 10


def test_threads_hammering_a_sampler_stay_within_the_bucket_math():
    mtps = 50.0
    sampler = RateLimitingSampler(mtps)
    sampled = []
    barrier = threading.Barrier(6)

    def hammer():
        barrier.wait()
        count = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            count += sampler.is_sampled(0, "op")[0]
        sampled.append(count)

    start = time.monotonic()
    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    # At most a full initial bucket plus what the elapsed time earned.
    assert sum(sampled) <= mtps + mtps * elapsed
    assert sum(sampled) >= mtps * 0.2 * 0.5


def test_refusals_before_the_next_credit_and_after_a_rate_change(clock):
    limiter = RateLimiter(1 / 600, 1, clock=clock, initial_balance=0)
    clock.advance(599)
    assert limiter.check_credit() is False
    clock.advance(1)
    assert limiter.check_credit() is True
    clock.advance(300)
    assert limiter.check_credit() is False
    # A faster rate takes effect at once, not after the old rate's 600 s wait.
    limiter.update(10, 10)  # the half credit earned so far is kept
    clock.advance(0.06)
    assert limiter.check_credit() is True
    # An empty bucket of less than one credit never grants a whole one.
    tiny = RateLimiter(5, 0.5, clock=clock, initial_balance=0)
    clock.advance(10)
    assert tiny.check_credit() is False
    assert tiny.check_credit(0.5) is True
