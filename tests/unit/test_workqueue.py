"""WorkQueue / DelayingQueue / RateLimitingQueue: client-go semantics, example by example."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from support import FakeClock

from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.ratelimiter import ItemExponentialFailureRateLimiter
from aim_controller.machinery.workqueue import (
    DeadlineHeap,
    DelayingQueue,
    QueueEmpty,
    QueueShutDown,
    RateLimitingQueue,
    WorkQueue,
)


async def settle() -> None:
    """Let every ready callback and task step run (event ordering, not time)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_add_deduplicates_queued_keys_and_keeps_fifo_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == q.len() == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_being_processed_is_requeued_once_on_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0  # dirty, but not handed to a second worker
    with pytest.raises(QueueEmpty):
        q.get_nowait()
    q.done("a")
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_get_is_an_error() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    with pytest.raises(ValueError):
        q.done("a")


async def test_waiting_getters_are_woken_in_order_with_distinct_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    assert not first.done() and not second.done()
    q.add("a")
    q.add("b")
    assert await first == "a"
    assert await second == "b"


async def test_cancelled_getter_passes_its_wakeup_on() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    q.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it can take the key
    assert await asyncio.wait_for(second, timeout=5) == "a"
    assert first.cancelled()


async def test_shutdown_wakes_getters_drops_adds_and_hands_out_what_is_queued() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await settle()
    q.shutdown()
    with pytest.raises(QueueShutDown):
        await waiter

    q2: WorkQueue[str] = WorkQueue()
    q2.add("a")
    q2.shutdown()
    q2.add("b")
    assert q2.shutting_down
    assert await q2.get() == "a"
    with pytest.raises(QueueShutDown):
        await q2.get()
    with pytest.raises(QueueShutDown):
        q2.get_nowait()


async def test_shutdown_with_drain_waits_for_in_flight_work() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    a = await q.get()
    b = await q.get()
    drain = asyncio.create_task(q.shutdown_with_drain())
    await settle()
    assert not drain.done()
    q.done(a)
    await settle()
    assert not drain.done()
    q.done(b)
    await asyncio.wait_for(drain, timeout=5)


async def test_shutdown_with_drain_on_idle_queue_returns() -> None:
    q: WorkQueue[str] = WorkQueue()
    await asyncio.wait_for(q.shutdown_with_drain(), timeout=5)
    assert q.shutting_down


async def test_drain_completes_when_a_dirty_key_is_requeued_on_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # dirty while processing
    drain = asyncio.create_task(q.shutdown_with_drain())
    await settle()
    q.done(key)  # requeues "a" but nothing is processing any more
    await asyncio.wait_for(drain, timeout=5)
    assert len(q) == 1


def test_deadline_heap_keeps_the_earliest_deadline_per_key() -> None:
    heap: DeadlineHeap[str] = DeadlineHeap()
    assert heap.push("a", 10.0)
    assert heap.push("b", 5.0)
    assert not heap.push("a", 20.0)
    assert heap.push("a", 1.0)
    assert len(heap) == 2 and "a" in heap
    assert heap.deadline("a") == 1.0
    assert heap.next_deadline() == 1.0
    assert heap.pop_due(4.0) == ["a"]
    assert heap.next_deadline() == 5.0  # the superseded a@10 entry is ignored
    assert heap.pop_due(100.0) == ["b"]
    assert heap.next_deadline() is None
    assert len(heap) == 0


async def test_add_after_fires_in_deadline_order_on_the_real_loop() -> None:
    q: DelayingQueue[str] = DelayingQueue()
    q.add_after("late", 0.03)
    q.add_after("early", 0.01)
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), timeout=5) == "early"
    assert await asyncio.wait_for(q.get(), timeout=5) == "late"
    q.shutdown()


async def test_add_after_with_injected_clock() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("b", 3)
    q.add_after("a", 5)  # earlier deadline wins
    q.add_after("b", 7)  # later deadline ignored
    q.add_after("now", 0)  # no delay: added immediately
    assert [q.get_nowait()] == ["now"]
    assert q.waiting_len() == 2
    clock.advance(3)
    assert q.flush_due() == 1
    clock.advance(2)
    assert q.flush_due() == 1
    assert [q.get_nowait(), q.get_nowait()] == ["b", "a"]
    clock.advance(100)
    assert q.flush_due() == 0
    q.shutdown()


async def test_add_after_of_a_queued_key_is_deduplicated_when_it_fires() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add("a")
    q.add_after("a", 1)
    clock.advance(1)
    q.flush_due()
    assert len(q) == 1
    q.shutdown()


async def test_shutdown_drops_waiting_keys() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 1)
    q.shutdown()
    q.add_after("b", 1)
    clock.advance(10)
    assert q.flush_due() == 0
    assert q.waiting_len() == 0
    with pytest.raises(QueueShutDown):
        q.get_nowait()


async def test_rate_limited_add_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    limiter = ItemExponentialFailureRateLimiter(base=1.0, max=4.0)
    q: RateLimitingQueue[str] = RateLimitingQueue(rate_limiter=limiter, clock=clock)
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 1
    clock.advance(0.5)
    assert q.flush_due() == 0
    clock.advance(0.5)
    assert q.flush_due() == 1
    key = q.get_nowait()
    q.done(key)
    q.add_rate_limited("a")  # 2 s this time
    clock.advance(1)
    assert q.flush_due() == 0
    clock.advance(1)
    assert q.flush_due() == 1
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.shutdown()


async def test_queue_metrics_follow_client_go() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    metrics = MachineryMetrics(registry, clock=clock)
    q: RateLimitingQueue[str] = RateLimitingQueue("things", metrics=metrics, clock=clock)

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"name": "things"})

    q.add("a")
    q.add("a")
    assert sample("workqueue_adds_total") == 1
    assert sample("workqueue_depth") == 1
    clock.advance(2)
    key = await q.get()
    assert sample("workqueue_depth") == 0
    assert sample("workqueue_queue_duration_seconds_count") == 1
    assert sample("workqueue_queue_duration_seconds_sum") == 2
    clock.advance(3)
    assert sample("workqueue_unfinished_work_seconds") == 3
    assert sample("workqueue_longest_running_processor_seconds") == 3
    q.done(key)
    assert sample("workqueue_work_duration_seconds_sum") == 3
    assert sample("workqueue_unfinished_work_seconds") == 0
    q.add_rate_limited("a")
    assert sample("workqueue_retries_total") == 1
    q.shutdown()

    unnamed: WorkQueue[str] = WorkQueue(metrics=metrics)
    unnamed.add("x")
    assert registry.get_sample_value("workqueue_adds_total", {"name": ""}) is None
