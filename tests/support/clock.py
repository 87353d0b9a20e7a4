"""A clock for code that takes ``clock: Callable[[], float]`` (monotonic seconds)."""

from __future__ import annotations


class FakeClock:
    """Monotonic-style seconds that move only when the test says so.

    ``clock()`` is ``now``; ``advance(seconds)`` moves it (a negative step is
    allowed, to test code that must survive a clock going backwards). Left
    alone it is frozen: code measuring an expiry by it never sees one.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
