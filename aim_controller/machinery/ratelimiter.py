"""Rate limiters deciding how long a key waits before it is retried.

Semantics follow client-go ``util/workqueue/default_rate_limiters.go``: a
limiter answers ``when(item)`` (and records the attempt), ``forget(item)``
(the item succeeded: reset its history) and ``num_requeues(item)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Protocol

Clock = Callable[[], float]
"""Returns monotonic seconds; injectable so tests never depend on wall time."""


class RateLimiter(Protocol):
    """What a rate-limiting queue needs from a limiter."""

    def when(self, item: Hashable) -> float:
        """Record a failed attempt of ``item`` and return the delay (s) before the next."""
        ...

    def forget(self, item: Hashable) -> None:
        """Drop the failure history of ``item`` (it succeeded or was deleted)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """Failures recorded for ``item`` since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """Per-item exponential backoff: ``base * 2**failures``, capped at ``max``.

    Invariants:
    - the n-th ``when(item)`` since the last ``forget(item)`` (n from 0) returns
      ``min(base * 2**n, max)``; the sequence never decreases and never exceeds ``max``;
    - items are independent; ``num_requeues(item)`` equals the number of
      ``when(item)`` calls since the last ``forget(item)``;
    - memory is bounded by the number of items not yet forgotten.
    """

    def __init__(self, base: float = 0.005, max: float = 1000.0) -> None:
        if base <= 0 or max < base:
            raise ValueError(f"need 0 < base <= max, got base={base} max={max}")
        self._base = base
        self._max = max
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # Compare exponents rather than computing 2**exp, which overflows a float
        # after ~1000 failures of a permanently broken object.
        if exp >= math.log2(self._max / self._base):
            return self._max
        return min(self._base * 2.0**exp, self._max)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """Overall token bucket (``golang.org/x/time/rate`` reservation semantics).

    Tokens refill at ``qps`` per second up to ``burst``. ``when(item)``
    reserves one token whatever the item and returns how long the caller must
    wait for it; the token count may go negative, which is how reservations
    queue up behind each other.

    Invariants:
    - the first ``burst`` reservations on a full bucket return 0;
    - with no time passing, consecutive delays grow by exactly ``1/qps``;
    - tokens never exceed ``burst``; the bucket has no per-item state, so
      ``forget`` is a no-op and ``num_requeues`` is always 0.
    """

    def __init__(
        self, qps: float = 10.0, burst: int = 100, *, clock: Clock = time.monotonic
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"need qps > 0 and burst >= 1, got qps={qps} burst={burst}")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._qps)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The slowest of several limiters wins.

    Invariants: ``when`` consults (and so records the attempt in) every
    limiter and returns the largest delay; ``forget`` forgets in all;
    ``num_requeues`` is the largest count any limiter reports.
    """

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        # A list, not a generator: every limiter must see the attempt.
        return max([limiter.when(item) for limiter in self._limiters])

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(*, clock: Clock = time.monotonic) -> MaxOfRateLimiter:
    """client-go's ``DefaultControllerRateLimiter``.

    Per item 5 ms doubling up to 1000 s, and 10 qps with a burst of 100 overall.
    """
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
