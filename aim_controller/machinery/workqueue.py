"""asyncio work queues with client-go ``util/workqueue`` semantics.

Three layers, each adding one thing:

- :class:`WorkQueue`: a deduplicating priority FIFO of keys that never hands
  one key to two workers at once;
- :class:`DelayingQueue`: ``add_after(key, delay)`` via a deadline heap and a
  single event-loop timer;
- :class:`RateLimitingQueue`: ``add_rate_limited(key)`` with a pluggable
  :class:`~aim_controller.machinery.ratelimiter.RateLimiter`.

Everything runs on one event loop; methods other than ``get`` and
``shutdown_with_drain`` are synchronous so informer callbacks can enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from aim_controller.machinery.metrics import MachineryMetrics, QueueMetricsRecorder
from aim_controller.machinery.ratelimiter import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]

PRIORITY_DEFAULT = 0
# controller-runtime's LowPriority: work that may wait behind changes of intent
# (status churn of children, initial-list replays).
PRIORITY_LOW = -100


class QueueShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and empty."""


class QueueEmpty(Exception):
    """Raised by :meth:`WorkQueue.get_nowait` when no key is ready."""


class WorkQueue(Generic[K]):
    """Deduplicating priority FIFO of keys for a pool of workers.

    A key is *dirty* from ``add`` until a worker ``get``s it, and *processing*
    from ``get`` until that worker calls ``done``. Invariants:

    - a key is queued at most once, and only if it is dirty and not
      processing (so adding a queued key twice yields one ``get``);
    - a processing key is never handed out again before ``done`` (no two
      workers on one key); if it is re-added meanwhile it stays dirty and is
      queued exactly once when ``done`` is called;
    - a dirty key has the highest priority it was added with since it became
      dirty (adding it again with a higher one raises it, a lower one is a
      no-op);
    - keys are handed out highest priority first, and within one priority in
      the order they were (re)queued (a raised key keeps its queue time);
    - after ``shutdown`` adds are dropped; ``get`` still hands out keys already
      queued and raises :class:`QueueShutDown` once none are left;
    - every ``get`` must be paired with exactly one ``done``.
    """

    def __init__(self, name: str = "", *, metrics: MachineryMetrics | None = None) -> None:
        self.name = name
        self._heap: list[tuple[int, int, K]] = []  # (-priority, seq, key); stale entries skipped
        self._queued: dict[K, int] = {}  # queued key -> seq of its live heap entry
        self._seq = itertools.count()
        self._dirty: set[K] = set()
        self._priority: dict[K, int] = {}  # dirty key -> its priority
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained = asyncio.Event()
        self._drained.set()
        # Like client-go, an unnamed queue reports nothing.
        self._metrics: QueueMetricsRecorder = (
            metrics.queue(name) if metrics is not None and name else QueueMetricsRecorder()
        )

    def add(self, key: K, priority: int = PRIORITY_DEFAULT) -> None:
        """Mark ``key`` as needing processing (no-op if already pending at this priority
        or higher, or shut down)."""
        if self._shutting_down:
            return
        if key in self._dirty:
            if priority > self._priority[key]:
                self._priority[key] = priority
                seq = self._queued.get(key)
                if seq is not None:
                    self._push(key, priority, seq)  # the old entry goes stale
            return
        self._metrics.add(key)
        self._dirty.add(key)
        self._priority[key] = priority
        if key in self._processing:
            return  # queued again by done()
        self._push(key, priority, next(self._seq))
        self._wake_one_getter()

    async def get(self) -> K:
        """Wait for a key and mark it processing; raise QueueShutDown when shut down and empty."""
        while not self._queued:
            if self._shutting_down:
                raise QueueShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Same dance as asyncio.Queue.get: a cancelled getter that was
                # already woken must pass the wake-up on, or a key is stranded.
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(waiter)
                if self._queued and not waiter.cancelled():
                    self._wake_one_getter()
                raise
        return self._pop()

    def get_nowait(self) -> K:
        """Like :meth:`get` without waiting; raise QueueEmpty if no key is queued."""
        if not self._queued:
            if self._shutting_down:
                raise QueueShutDown
            raise QueueEmpty
        return self._pop()

    def done(self, key: K) -> None:
        """Finish processing ``key``; requeue it if it was re-added meanwhile."""
        if key not in self._processing:
            raise ValueError(f"done({key!r}) for a key that is not being processed")
        self._metrics.done(key)
        self._processing.discard(key)
        if key in self._dirty:
            self._push(key, self._priority[key], next(self._seq))
            self._wake_one_getter()
        if not self._processing:
            self._drained.set()

    def len(self) -> int:
        """Number of keys waiting to be handed out (not counting processing ones)."""
        return len(self._queued)

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Stop accepting keys and wake every waiting getter; does not wait."""
        self._shutting_down = True
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """Shut down, then wait until every key handed out so far is ``done``."""
        self.shutdown()
        await self._drained.wait()

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def priority(self, key: K) -> int | None:
        """The priority of a dirty key, None if it is not dirty."""
        return self._priority.get(key)

    def _push(self, key: K, priority: int, seq: int) -> None:
        self._queued[key] = seq
        heapq.heappush(self._heap, (-priority, seq, key))

    def _pop(self) -> K:
        while True:
            neg, seq, key = heapq.heappop(self._heap)
            # Live: still queued under this seq, at its current priority.
            if self._queued.get(key) == seq and self._priority.get(key) == -neg:
                break
        del self._queued[key]
        self._priority.pop(key, None)
        self._metrics.get(key)
        self._processing.add(key)
        self._dirty.discard(key)
        self._drained.clear()
        return key

    def _wake_one_getter(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class DeadlineHeap(Generic[K]):
    """Keys waiting for a deadline, at most one entry per key.

    Invariants: pushing a key that is already waiting keeps the earlier
    deadline (a later one is ignored); ``pop_due(now)`` returns every key with
    ``deadline <= now`` ordered by deadline, ties in the order their current
    deadline was set. Stale heap entries (superseded by an earlier deadline)
    are skipped lazily, so push is O(log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}  # key -> its current (deadline, seq)
        self._seq = itertools.count()

    def push(self, key: K, deadline: float) -> bool:
        """Record ``key`` for ``deadline``; True if that changed its deadline."""
        current = self._live.get(key)
        if current is not None and current[0] <= deadline:
            return False
        entry = (deadline, next(self._seq))
        self._live[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        return True

    def pop_due(self, now: float) -> list[K]:
        due: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, seq, key = heapq.heappop(self._heap)
            if self._live.get(key) == (deadline, seq):
                del self._live[key]
                due.append(key)
        return due

    def next_deadline(self) -> float | None:
        while self._heap and self._live.get(self._heap[0][2]) != self._heap[0][:2]:
            heapq.heappop(self._heap)  # superseded entry
        return self._heap[0][0] if self._heap else None

    def deadline(self, key: K) -> float | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live


class DelayingQueue(WorkQueue[K]):
    """A :class:`WorkQueue` whose keys can be added after a delay.

    Invariants: ``add_after(key, d, p)`` with ``d <= 0`` is ``add(key, p)``;
    otherwise the key is added once ``clock() >= now + d`` (the earliest
    pending deadline per key wins), with the highest priority it was delayed
    with; due keys are added in deadline order; at
    most one event-loop timer is armed, for the earliest deadline; shutdown
    drops every waiting key. ``add_after`` must run on the event loop.
    """

    def __init__(
        self,
        name: str = "",
        *,
        metrics: MachineryMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name, metrics=metrics)
        self._clock = clock
        self._waiting: DeadlineHeap[K] = DeadlineHeap()
        self._waiting_priority: dict[K, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None

    def add_after(self, key: K, delay: float, priority: int = PRIORITY_DEFAULT) -> None:
        """Add ``key`` after ``delay`` seconds (immediately if ``delay <= 0``)."""
        if self._shutting_down:
            return
        self._metrics.retry()
        if delay <= 0:
            self.add(key, priority)
            return
        deadline = self._clock() + delay
        if key not in self._waiting or priority > self._waiting_priority[key]:
            self._waiting_priority[key] = priority
        if self._waiting.push(key, deadline):
            self._arm_timer()

    def flush_due(self) -> int:
        """Add every waiting key whose deadline has passed; return how many.

        The timer calls this; it is public so tests with an injected clock can
        advance time deterministically instead of sleeping.
        """
        due = self._waiting.pop_due(self._clock())
        for key in due:
            self.add(key, self._waiting_priority.pop(key, PRIORITY_DEFAULT))
        return len(due)

    def waiting_len(self) -> int:
        """Number of keys waiting for their deadline."""
        return len(self._waiting)

    def shutdown(self) -> None:
        super().shutdown()
        self._cancel_timer()
        self._waiting.clear()
        self._waiting_priority.clear()

    def _arm_timer(self) -> None:
        deadline = self._waiting.next_deadline()
        if deadline is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_deadline == deadline:
            return
        self._cancel_timer()
        delay = max(0.0, deadline - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_deadline = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self.flush_due()
        # The loop may fire a hair early; re-arming for a deadline not yet due
        # just schedules another short timer.
        self._arm_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None


class RateLimitingQueue(DelayingQueue[K]):
    """A :class:`DelayingQueue` that asks a rate limiter how long to wait.

    Invariants: ``add_rate_limited(key)`` is ``add_after(key,
    limiter.when(key))``; ``forget`` only clears the limiter's history (it
    does not remove the key from the queue).
    """

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        metrics: MachineryMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name, metrics=metrics, clock=clock)
        self.rate_limiter: RateLimiter = (
            default_controller_rate_limiter(clock=clock) if rate_limiter is None else rate_limiter
        )

    def add_rate_limited(self, key: K, priority: int = PRIORITY_DEFAULT) -> None:
        self.add_after(key, self.rate_limiter.when(key), priority)

    def forget(self, key: K) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)
