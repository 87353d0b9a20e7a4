"""Property tests: the work queue against an executable model, and the rate limiters.

The state machine drives a real RateLimitingQueue on its own event loop with a
fake clock; simulated workers either take keys without waiting, block in
``get()`` (woken in FIFO order), or finish with ``done()``. After every step
the queue must agree exactly with a tiny model of client-go's semantics.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from prometheus_client import CollectorRegistry
from support import FakeClock

from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
)
from aim_controller.machinery.workqueue import (
    DeadlineHeap,
    QueueEmpty,
    QueueShutDown,
    RateLimitingQueue,
    WorkQueue,
)

T = TypeVar("T")

KEYS = st.sampled_from(["a", "b", "c", "d"])
PRIORITIES = st.sampled_from([0, 0, -100, 10])
WORKERS = st.sampled_from([0, 1, 2])
SHUT = object()  # expected outcome of a blocked get() on a drained, shut queue
BACKOFF_BASE, BACKOFF_MAX = 1.0, 8.0


class WorkQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.registry = CollectorRegistry()
        self.q: RateLimitingQueue[str] = RateLimitingQueue(
            "prop",
            rate_limiter=ItemExponentialFailureRateLimiter(BACKOFF_BASE, BACKOFF_MAX),
            metrics=MachineryMetrics(self.registry, clock=self.clock),
            clock=self.clock,
        )
        # The model.
        self.pending: set[str] = set()  # dirty keys
        self.fifo: list[str] = []  # keys ready to hand out (order: next_key)
        self.prio: dict[str, int] = {}  # pending key -> priority
        self.qseq: dict[str, int] = {}  # queued key -> when it was (re)queued
        self.wprio: dict[str, int] = {}  # add_after: key -> priority
        self.held: dict[int, str] = {}  # worker -> key it is processing
        self.waiters: list[int] = []  # workers blocked in get(), in arrival order
        self.waiting: dict[str, tuple[float, int]] = {}  # add_after: key -> (deadline, seq)
        self.seq = 0
        self.failures: Counter[str] = Counter()
        self.shut = False
        # Real tasks and what the model says they must have returned.
        self.tasks: dict[int, asyncio.Task[str]] = {}
        self.expected: dict[int, object] = {}
        self.drain: asyncio.Task[None] | None = None
        # client-go: the drain returns once nothing is processing; keys still
        # queued may be handed out afterwards.
        self.drain_due = False

    # --- helpers -----------------------------------------------------------

    def in_loop(self, fn: Callable[[], T]) -> T:
        """Run a sync queue call on the running loop (timers need one)."""

        async def call() -> T:
            return fn()

        return self.loop.run_until_complete(call())

    def idle(self, worker: int) -> bool:
        return worker not in self.held and worker not in self.waiters

    def enqueue(self, key: str) -> None:
        self.fifo.append(key)
        self.qseq[key] = self.seq
        self.seq += 1

    def next_key(self) -> str:
        """Highest priority first, then queue order."""
        key = min(self.fifo, key=lambda k: (-self.prio[k], self.qseq[k]))
        self.fifo.remove(key)
        self.pending.discard(key)
        del self.prio[key]
        return key

    def model_add(self, key: str, priority: int = 0) -> None:
        if self.shut:
            return
        if key in self.pending:
            self.prio[key] = max(self.prio[key], priority)
            return
        self.pending.add(key)
        self.prio[key] = priority
        if key not in self.held.values():
            self.enqueue(key)

    def model_add_after(self, key: str, delay: float, priority: int = 0) -> None:
        if self.shut:
            return
        if delay <= 0:
            self.model_add(key, priority)
            return
        deadline = self.clock.now + delay
        self.wprio[key] = max(self.wprio.get(key, priority), priority) \
            if key in self.waiting else priority
        current = self.waiting.get(key)
        if current is None or current[0] > deadline:
            self.waiting[key] = (deadline, self.seq)
            self.seq += 1

    def settle(self) -> None:
        """Hand keys to blocked workers as the model says, run the loop, compare."""
        while self.waiters and self.fifo:
            worker, key = self.waiters.pop(0), self.next_key()
            self.held[worker] = key
            self.expected[worker] = key
        if self.shut and not self.fifo:
            for worker in self.waiters:
                self.expected[worker] = SHUT
            self.waiters.clear()
        for _ in range(8):
            self.loop.run_until_complete(asyncio.sleep(0))
        for worker, outcome in self.expected.items():
            task = self.tasks.pop(worker)
            assert task.done(), f"worker {worker} should have been handed {outcome!r}"
            if outcome is SHUT:
                assert isinstance(task.exception(), QueueShutDown)
            else:
                assert task.result() == outcome
        self.expected.clear()
        for worker in self.waiters:
            assert not self.tasks[worker].done()

    # --- rules -------------------------------------------------------------

    @rule(key=KEYS, priority=PRIORITIES)
    def add(self, key: str, priority: int) -> None:
        self.q.add(key, priority)
        self.model_add(key, priority)
        assert self.q.priority(key) == self.prio.get(key)
        self.settle()

    @rule(worker=WORKERS)
    def get_nowait(self, worker: int) -> None:
        assume(self.idle(worker))
        if self.fifo:
            key = self.next_key()
            assert self.q.get_nowait() == key
            self.held[worker] = key
        else:
            with pytest.raises(QueueShutDown if self.shut else QueueEmpty):
                self.q.get_nowait()
        self.settle()

    @rule(worker=WORKERS)
    def blocking_get(self, worker: int) -> None:
        assume(self.idle(worker))
        self.tasks[worker] = self.loop.create_task(self.q.get())
        self.waiters.append(worker)
        self.settle()

    @rule(worker=WORKERS)
    def done(self, worker: int) -> None:
        assume(worker in self.held)
        key = self.held.pop(worker)
        self.q.done(key)
        if self.drain is not None and not self.held:
            self.drain_due = True
        if key in self.pending:
            self.enqueue(key)  # re-added while processing: queued exactly once now
        self.settle()

    @rule(key=KEYS, delay=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]),
          priority=PRIORITIES)
    def add_after(self, key: str, delay: float, priority: int) -> None:
        self.in_loop(lambda: self.q.add_after(key, delay, priority))
        self.model_add_after(key, delay, priority)
        self.settle()

    @rule(key=KEYS)
    def add_rate_limited(self, key: str) -> None:
        delay = min(BACKOFF_BASE * 2 ** self.failures[key], BACKOFF_MAX)
        self.failures[key] += 1
        self.in_loop(lambda: self.q.add_rate_limited(key))
        self.model_add_after(key, delay)
        assert self.q.num_requeues(key) == self.failures[key]
        self.settle()

    @rule(key=KEYS)
    def forget(self, key: str) -> None:
        self.q.forget(key)
        self.failures.pop(key, None)
        assert self.q.num_requeues(key) == 0

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]))
    def advance_clock(self, dt: float) -> None:
        self.clock.advance(dt)
        flushed = self.in_loop(self.q.flush_due)
        due = sorted((d, s, k) for k, (d, s) in self.waiting.items() if d <= self.clock.now)
        for _, _, key in due:  # deadline order, ties in the order they were set
            del self.waiting[key]
            self.model_add(key, self.wprio.pop(key))
        assert flushed == len(due)
        self.settle()

    @rule()
    def shutdown(self) -> None:
        self.q.shutdown()
        self.shut = True
        self.waiting.clear()
        self.wprio.clear()
        self.settle()

    @rule()
    def shutdown_with_drain(self) -> None:
        assume(self.drain is None)
        self.drain = self.loop.create_task(self.q.shutdown_with_drain())
        self.drain_due = not self.held
        self.shut = True
        self.waiting.clear()
        self.wprio.clear()
        self.settle()

    # --- invariants ----------------------------------------------------------

    @invariant()
    def queue_agrees_with_model(self) -> None:
        assert len(self.q) == len(self.fifo)
        assert self.q.waiting_len() == len(self.waiting)
        assert self.q.shutting_down == self.shut
        depth = self.registry.get_sample_value("workqueue_depth", {"name": "prop"})
        assert depth == len(self.pending)

    @invariant()
    def never_two_workers_on_one_key(self) -> None:
        assert len(set(self.held.values())) == len(self.held)
        for key in self.held.values():
            assert self.q.is_processing(key)

    @invariant()
    def drain_finishes_exactly_when_nothing_is_processing(self) -> None:
        if self.drain is not None:
            assert self.drain.done() == self.drain_due

    def teardown(self) -> None:
        self.q.shutdown()
        leftovers: list[asyncio.Future[Any]] = list(self.tasks.values())
        if self.drain is not None:
            leftovers.append(self.drain)
        for task in leftovers:
            task.cancel()

        async def reap() -> None:
            await asyncio.gather(*leftovers, return_exceptions=True)

        self.loop.run_until_complete(reap())
        self.loop.close()


TestWorkQueueModel = WorkQueueMachine.TestCase
TestWorkQueueModel.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much],
)


@settings(deadline=None, max_examples=100)
@given(
    script=st.lists(st.tuples(KEYS, st.integers(0, 3)), min_size=1, max_size=40),
    work=st.dictionaries(KEYS, st.integers(0, 4)),
    n_workers=st.integers(1, 4),
)
def test_real_workers_never_share_a_key_and_see_every_add(
    script: list[tuple[str, int]], work: dict[str, int], n_workers: int
) -> None:
    """Concurrent get()/done() loops: no key on two workers; the last add of a
    key is always followed by a processing of it."""
    events: list[tuple[str, str]] = []  # ("add"|"get", key), in event order
    active: set[str] = set()

    async def worker(q: WorkQueue[str]) -> None:
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            assert key not in active
            active.add(key)
            events.append(("get", key))
            for _ in range(work.get(key, 1)):
                await asyncio.sleep(0)
            active.discard(key)
            q.done(key)

    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        tasks = [asyncio.create_task(worker(q)) for _ in range(n_workers)]
        for key, pause in script:
            q.add(key)
            events.append(("add", key))
            for _ in range(pause):
                await asyncio.sleep(0)
        await q.shutdown_with_drain()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        assert len(q) == 0

    asyncio.run(main())
    for key in {k for k, _ in script}:
        last_add = max(i for i, e in enumerate(events) if e == ("add", key))
        assert any(e == ("get", key) for e in events[last_add + 1 :])
    # Dedup: never more gets of a key than adds of it.
    adds = Counter(k for kind, k in events if kind == "add")
    gets = Counter(k for kind, k in events if kind == "get")
    assert all(gets[k] <= adds[k] for k in gets)


@given(
    base=st.sampled_from([0.001, 0.005, 0.25, 1.0]),
    ratio=st.floats(1.0, 1e7),
    ops=st.lists(st.sampled_from(["when", "when", "when", "forget"]), max_size=80),
)
def test_backoff_doubles_caps_and_forget_resets(base: float, ratio: float, ops: list[str]) -> None:
    cap = base * ratio
    limiter = ItemExponentialFailureRateLimiter(base, cap)
    failures = 0
    previous = 0.0
    for op in ops:
        if op == "forget":
            limiter.forget("k")
            failures = 0
            previous = 0.0
            continue
        delay = limiter.when("k")
        assert delay == pytest.approx(min(base * 2**failures, cap), rel=1e-9)
        assert previous <= delay <= cap
        if previous and delay < cap:
            assert delay == pytest.approx(2 * previous, rel=1e-9)
        previous = delay
        failures += 1
        assert limiter.num_requeues("k") == failures
    assert limiter.num_requeues("other") == 0


@given(
    qps=st.sampled_from([0.5, 1.0, 10.0, 100.0]),
    burst=st.integers(1, 20),
    steps=st.lists(
        st.tuples(st.integers(1, 5), st.sampled_from([0.0, 0.01, 0.1, 1.0])), max_size=40
    ),
)
def test_bucket_never_exceeds_burst_plus_rate(
    qps: float, burst: int, steps: list[tuple[int, float]]
) -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=qps, burst=burst, clock=clock)
    ready: list[float] = []  # when each reservation may proceed
    for count, dt in steps:
        clock.advance(dt)
        for _ in range(count):
            delay = limiter.when("x")
            assert delay >= 0
            ready.append(clock.now + delay)
    # Token-bucket conformance: within any window [ready_i, ready_j] at most
    # burst + qps * window reservations proceed.
    ready.sort()
    for i in range(len(ready)):
        for j in range(i, len(ready)):
            assert j - i + 1 <= burst + qps * (ready[j] - ready[i]) + 1e-6
    # A full bucket serves `burst` reservations at once.
    fresh = BucketRateLimiter(qps=qps, burst=burst, clock=clock)
    assert [fresh.when(i) for i in range(burst)] == [0.0] * burst
    assert fresh.when("over") == pytest.approx(1 / qps)


@given(delays=st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)), min_size=1, max_size=5))
def test_max_of_is_the_slowest(delays: list[tuple[float, float]]) -> None:
    class Fixed:
        def __init__(self, values: list[float]) -> None:
            self.values = values
            self.forgotten = False

        def when(self, item: object) -> float:
            return self.values.pop(0)

        def forget(self, item: object) -> None:
            self.forgotten = True

        def num_requeues(self, item: object) -> int:
            return len(self.values)

    first, second = Fixed([a for a, _ in delays]), Fixed([b for _, b in delays])
    limiter = MaxOfRateLimiter(first, second)
    for a, b in delays:
        assert limiter.when("x") == max(a, b)
    limiter.forget("x")
    assert first.forgotten and second.forgotten


@given(
    pushes=st.lists(st.tuples(KEYS, st.integers(0, 20).map(float)), max_size=30),
    now=st.integers(0, 20).map(float),
)
def test_deadline_heap_pops_in_deadline_order(pushes: list[tuple[str, float]], now: float) -> None:
    heap: DeadlineHeap[str] = DeadlineHeap()
    model: dict[str, tuple[float, int]] = {}
    for seq, (key, deadline) in enumerate(pushes):
        changed = heap.push(key, deadline)
        assert changed == (key not in model or deadline < model[key][0])
        if changed:
            model[key] = (deadline, seq)
    due = sorted((d, s, k) for k, (d, s) in model.items() if d <= now)
    assert heap.pop_due(now) == [k for _, _, k in due]
    remaining = [d for d, _ in model.values() if d > now]
    expected_next = min(remaining) if remaining else None
    assert heap.next_deadline() == expected_next
    assert len(heap) == len(remaining)
    assert not math.isnan(now)
