"""Rate limiters: exponential per-item backoff, token bucket, max-of."""

from __future__ import annotations

import itertools

import pytest
from support import FakeClock

from aim_controller.machinery.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_doubles_from_base_and_caps_at_max() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=0.005, max=1000.0)
    delays = [limiter.when("a") for _ in range(25)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[-1] == 1000.0
    assert max(delays) == 1000.0
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert limiter.num_requeues("a") == 25


def test_exponential_survives_huge_failure_counts() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=0.005, max=1000.0)
    for _ in range(5000):  # 2**5000 would overflow a float
        delay = limiter.when("broken")
    assert delay == 1000.0


def test_exponential_items_are_independent_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=1.0, max=100.0)
    limiter.when("a")
    limiter.when("a")
    assert limiter.when("b") == 1.0
    assert limiter.when("a") == 4.0
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.num_requeues("b") == 1


def test_exponential_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ItemExponentialFailureRateLimiter(base=0.0)
    with pytest.raises(ValueError):
        ItemExponentialFailureRateLimiter(base=2.0, max=1.0)


def test_bucket_burst_then_spaced_by_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=3, clock=clock)
    assert [limiter.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert limiter.num_requeues(0) == 0


def test_bucket_refills_with_time_but_not_beyond_burst() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=2, clock=clock)
    limiter.when("x")
    limiter.when("x")
    assert limiter.when("x") == pytest.approx(0.1)
    clock.advance(0.2)  # pays back the reservation, plus one token
    assert limiter.when("x") == 0.0
    assert limiter.when("x") == pytest.approx(0.1)
    clock.advance(3600)  # refill caps at burst=2
    assert [limiter.when("x") for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_bucket_ignores_a_clock_going_backwards() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=1.0, burst=1, clock=clock)
    limiter.when("x")
    clock.advance(-10)
    assert limiter.when("x") == pytest.approx(1.0)


def test_max_of_takes_slowest_and_forgets_everywhere() -> None:
    clock = FakeClock()
    per_item = ItemExponentialFailureRateLimiter(base=1.0, max=8.0)
    bucket = BucketRateLimiter(qps=1.0, burst=1, clock=clock)
    limiter = MaxOfRateLimiter(per_item, bucket)
    assert limiter.when("a") == 1.0  # bucket free, item 1s
    assert limiter.when("b") == 1.0  # bucket 1s, item 1s
    assert limiter.when("a") == 2.0  # bucket 2s, item 2s
    clock.advance(100)
    assert limiter.when("a") == 4.0  # item dominates a refilled bucket
    assert limiter.num_requeues("a") == 3
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    with pytest.raises(ValueError):
        MaxOfRateLimiter()


def test_default_controller_rate_limiter_is_5ms_doubling_with_a_100_burst() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock=clock)
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("a") == pytest.approx(0.01)
    for i in range(98):
        limiter.when(f"other-{i}")
    # The bucket (burst 100) is now empty: the overall 10 qps limit dominates.
    assert limiter.when("fresh") == pytest.approx(0.1)
