"""Controller workers on a real queue with fake reconcile functions; event handler factories."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs
from support import FakeClock, eventually

from aim_controller.machinery.controller import (
    Controller,
    Result,
    TerminalError,
    wait_for_cache_sync,
)
from aim_controller.machinery.handlers import (
    ResourceEventHandlerFuncs,
    api_group,
    enqueue_mapped,
    enqueue_object,
    enqueue_owner,
    key_of,
    split_key,
)
from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.ratelimiter import ItemExponentialFailureRateLimiter
from aim_controller.machinery.workqueue import RateLimitingQueue

Reconcile = Callable[[str], Awaitable[Result | None]]


async def settle() -> None:
    """Let every ready callback and task step run (event ordering, not time)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Harness:
    """A controller with its own registry, queue and fake clock, running in a task."""

    def __init__(
        self,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        name: str = "test",
        cache_sync_timeout: float | None = 120.0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.clock = FakeClock()
        self.metrics = MachineryMetrics(self.registry, clock=self.clock)
        # base=1s keeps the real timer quiet while the fake clock stands still.
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            name,
            rate_limiter=ItemExponentialFailureRateLimiter(1.0, 60.0),
            metrics=self.metrics,
            clock=self.clock,
        )
        self.controller = Controller(
            name,
            reconcile,
            self.queue,
            max_concurrent_reconciles=workers,
            metrics=self.metrics,
            cache_sync_timeout=cache_sync_timeout,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self, wait_for: list[Any] | None = None) -> None:
        self.task = asyncio.create_task(self.controller.run(wait_for or []))

    def advance(self, seconds: float) -> int:
        self.clock.advance(seconds)
        return self.queue.flush_due()

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"controller": "test", **labels})

    async def stop(self) -> None:
        await asyncio.wait_for(self.controller.stop(), timeout=10)
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=10)


async def test_concurrency_limit_is_respected() -> None:
    gate = asyncio.Event()
    active: set[str] = set()
    peak = 0
    finished: list[str] = []

    async def reconcile(key: str) -> None:
        nonlocal peak
        active.add(key)
        peak = max(peak, len(active))
        await gate.wait()
        active.discard(key)
        finished.append(key)

    h = Harness(reconcile, workers=3)
    for i in range(10):
        h.queue.add(f"ns/obj-{i}")
    h.start()
    await eventually(lambda: len(active) == 3, what="three reconciles running")
    await settle()
    assert len(active) == 3
    assert h.sample("controller_runtime_active_workers") == 3
    assert h.sample("controller_runtime_max_concurrent_reconciles") == 3
    gate.set()
    await eventually(lambda: len(finished) == 10, what="all keys reconciled")
    assert peak == 3
    assert sorted(finished) == sorted(f"ns/obj-{i}" for i in range(10))
    assert h.sample("controller_runtime_reconcile_total", result="success") == 10
    assert h.sample("controller_runtime_reconcile_time_seconds_count") == 10
    await h.stop()
    assert h.sample("controller_runtime_active_workers") == 0


async def test_same_key_is_never_reconciled_concurrently() -> None:
    release = asyncio.Event()
    running = 0
    calls = 0
    overlapped = False

    async def reconcile(key: str) -> None:
        nonlocal running, calls, overlapped
        calls += 1
        running += 1
        overlapped = overlapped or running > 1
        if calls == 1:
            await release.wait()
        running -= 1

    h = Harness(reconcile, workers=4)
    h.queue.add("ns/a")
    h.start()
    await eventually(lambda: calls == 1, what="first reconcile started")
    h.queue.add("ns/a")  # changes while it is being reconciled
    h.queue.add("ns/a")
    await settle()
    assert calls == 1  # three idle workers, yet none takes the busy key
    release.set()
    await eventually(lambda: calls == 2 and running == 0, what="exactly one follow-up reconcile")
    await settle()
    assert calls == 2
    assert not overlapped
    await h.stop()


async def test_error_requeues_rate_limited_and_counts() -> None:
    attempts: list[str] = []

    async def reconcile(key: str) -> None:
        attempts.append(key)
        if len(attempts) <= 2:
            raise RuntimeError("boom")

    h = Harness(reconcile)
    h.queue.add("ns/a")
    with capture_logs() as logs:
        h.start()
        await eventually(lambda: h.queue.waiting_len() == 1, what="requeued after error")
    assert h.queue.num_requeues("ns/a") == 1
    assert h.sample("controller_runtime_reconcile_errors_total") == 1
    assert h.sample("controller_runtime_reconcile_total", result="error") == 1
    errors = [e for e in logs if e["event"] == "reconciler error"]
    assert errors and errors[0]["log_level"] == "error" and errors[0]["exc_info"] is True

    assert h.advance(0.5) == 0  # backoff is 1 s for the first failure
    assert h.advance(0.5) == 1
    await eventually(lambda: h.queue.num_requeues("ns/a") == 2, what="second failure")
    assert h.advance(1.0) == 0  # then 2 s
    assert h.advance(1.0) == 1
    await eventually(lambda: len(attempts) == 3, what="third attempt")
    await eventually(lambda: h.queue.num_requeues("ns/a") == 0, what="success forgets the backoff")
    assert h.sample("controller_runtime_reconcile_errors_total") == 2
    assert h.sample("controller_runtime_reconcile_total", result="success") == 1
    await h.stop()


async def test_terminal_error_is_not_requeued() -> None:
    async def reconcile(key: str) -> None:
        raise TerminalError("invalid spec")

    h = Harness(reconcile)
    h.queue.add("ns/a")
    with capture_logs():
        h.start()
        await eventually(
            lambda: h.sample("controller_runtime_terminal_reconcile_errors_total") == 1,
            what="terminal error counted",
        )
    assert h.sample("controller_runtime_reconcile_errors_total") == 1
    assert h.queue.waiting_len() == 0 and len(h.queue) == 0
    assert h.queue.num_requeues("ns/a") == 0
    await h.stop()


async def test_requeue_after_is_honoured_and_resets_backoff() -> None:
    calls = 0

    async def reconcile(key: str) -> Result | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first attempt fails")
        if calls == 2:
            return Result(requeue_after=30.0)
        return None

    h = Harness(reconcile)
    h.queue.add("ns/a")
    with capture_logs():
        h.start()
        await eventually(lambda: h.queue.waiting_len() == 1, what="error backoff")
    h.advance(1.0)
    await eventually(
        lambda: h.sample("controller_runtime_reconcile_total", result="requeue_after") == 1,
        what="requeue_after recorded",
    )
    assert h.queue.num_requeues("ns/a") == 0  # forgotten: the backoff starts over
    assert h.advance(29.0) == 0
    assert h.advance(1.0) == 1
    await eventually(lambda: calls == 3, what="reconciled again after 30 s")
    await h.stop()


async def test_requeue_uses_the_rate_limiter() -> None:
    calls = 0

    async def reconcile(key: str) -> Result:
        nonlocal calls
        calls += 1
        return Result(requeue=calls == 1)

    h = Harness(reconcile)
    h.queue.add("ns/a")
    h.start()
    await eventually(lambda: h.queue.waiting_len() == 1, what="requeued")
    assert h.queue.num_requeues("ns/a") == 1
    assert h.sample("controller_runtime_reconcile_total", result="requeue") == 1
    h.advance(1.0)
    await eventually(lambda: calls == 2, what="requeued key reconciled")
    await h.stop()


async def test_reconcile_id_and_key_are_bound_on_every_line() -> None:
    log = structlog.get_logger("reconciler")

    async def reconcile(key: str) -> None:
        log.info("step one")
        await asyncio.sleep(0)
        log.info("step two")
        if key == "ns/bad":
            raise RuntimeError("nope")

    h = Harness(reconcile, workers=2)
    with capture_logs(processors=[merge_contextvars]) as logs:
        h.queue.add("ns/good")
        h.queue.add("ns/bad")
        h.start()
        await eventually(
            lambda: sum(e["event"] == "reconciler error" for e in logs) == 1, what="error logged"
        )
        log.info("outside")
        await h.stop()

    by_key: dict[str, list[Any]] = {}
    for entry in logs:
        if entry["event"] in ("step one", "step two", "reconciler error"):
            by_key.setdefault(entry["key"], []).append(entry)
    assert set(by_key) == {"ns/good", "ns/bad"}
    ids = set()
    for key, entries in by_key.items():
        assert all(e["controller"] == "test" for e in entries)
        assert all((e["namespace"], e["name"]) == tuple(key.split("/")) for e in entries)
        key_ids = {e["reconcile_id"] for e in entries}
        assert len(key_ids) == 1, f"one reconcile_id per reconcile of {key}"
        ids |= key_ids
    assert len(ids) == 2
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert len(by_key["ns/bad"]) == 3  # both steps and the error line
    outside = next(e for e in logs if e["event"] == "outside")
    assert "key" not in outside and "reconcile_id" not in outside


async def test_workers_wait_for_caches_to_sync() -> None:
    class Informer:
        def __init__(self) -> None:
            self.synced = False
            self.polls = 0

        def has_synced(self) -> bool:
            self.polls += 1
            return self.synced

    class AsyncInformer:
        def __init__(self) -> None:
            self.event = asyncio.Event()
            self.waited = False

        async def wait_for_cache_sync(self) -> bool:
            self.waited = True
            await self.event.wait()
            return True

    polled, awaited = Informer(), AsyncInformer()
    # Each reconcile records what the sources said when it ran.
    reconciled: list[tuple[str, bool, bool]] = []

    async def reconcile(key: str) -> None:
        reconciled.append((key, polled.synced, awaited.event.is_set()))

    h = Harness(reconcile)
    h.queue.add("ns/a")
    h.start([polled, awaited, lambda: True])
    await eventually(lambda: polled.polls >= 2 and awaited.waited, what="waiting on both sources")
    assert reconciled == [] and len(h.queue) == 1
    polled.synced = True
    polls = polled.polls
    await eventually(lambda: polled.polls > polls, what="the polled source answered synced")
    await settle()
    assert reconciled == [] and len(h.queue) == 1  # the awaited one still holds the workers
    awaited.event.set()
    await eventually(lambda: reconciled, what="reconciled after sync")
    assert reconciled == [("ns/a", True, True)]
    await h.stop()


async def test_cache_sync_failure_and_timeout() -> None:
    async def reconcile(key: str) -> None:
        raise AssertionError("must not run")

    async def failed() -> bool:
        return False

    assert await wait_for_cache_sync([lambda: True, failed]) is False
    h = Harness(reconcile)
    h.queue.add("ns/a")
    with pytest.raises(RuntimeError, match="cache sync failed"):
        await h.controller.run([failed])

    never = Harness(reconcile, cache_sync_timeout=0.01)
    with pytest.raises(TimeoutError):
        await never.controller.run([lambda: False])
    assert never.queue.shutting_down


async def test_stop_while_waiting_for_sync_starts_no_workers() -> None:
    async def reconcile(key: str) -> None:
        raise AssertionError("must not run")

    h = Harness(reconcile)
    h.queue.add("ns/a")
    h.start([lambda: False])
    await asyncio.sleep(0)
    await h.stop()
    assert h.sample("controller_runtime_reconcile_total", result="error") == 0


async def test_stop_drains_in_flight_and_drops_queued_keys() -> None:
    gate = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []

    async def reconcile(key: str) -> None:
        started.append(key)
        await gate.wait()
        finished.append(key)

    h = Harness(reconcile, workers=1)
    h.queue.add("ns/a")
    h.queue.add("ns/b")
    h.start()
    await eventually(lambda: started == ["ns/a"], what="first reconcile running")
    stopping = asyncio.create_task(h.controller.stop())
    await settle()
    assert not stopping.done()  # waits for the in-flight reconcile
    gate.set()
    await asyncio.wait_for(stopping, timeout=10)
    assert h.task is not None and h.task.done()
    assert finished == ["ns/a"]  # ns/b was queued, never started
    h.queue.add("ns/c")  # adds after stop are dropped
    assert len(h.queue) == 0
    with pytest.raises(RuntimeError):
        await h.controller.run()


async def test_cancelling_run_cancels_workers_and_releases_keys() -> None:
    async def reconcile(key: str) -> None:
        await asyncio.Event().wait()

    h = Harness(reconcile, workers=2)
    observed: list[tuple[str, str]] = []
    h.controller.add_reconcile_observer(lambda key, outcome: observed.append((key, outcome)))
    h.queue.add("ns/a")
    h.start()
    await eventually(lambda: h.queue.is_processing("ns/a"), what="reconcile running")
    assert h.task is not None
    h.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h.task
    assert not h.queue.is_processing("ns/a")
    assert h.sample("controller_runtime_active_workers") == 0
    assert observed == []  # a reconcile cut short has no outcome


async def test_reconcile_observers_see_each_outcome_after_the_requeue_decision() -> None:
    results: dict[str, Result | None] = {
        "ns/ok": None, "ns/again": Result(requeue=True), "ns/later": Result(requeue_after=5.0),
    }

    async def reconcile(key: str) -> Result | None:
        if key == "ns/boom":
            raise RuntimeError("boom")
        return results[key]

    h = Harness(reconcile)  # one worker: keys run in the order queued
    seen: list[tuple[str, str, bool, float | None]] = []

    def observer(key: str, outcome: str) -> None:
        # Still processing, and the outcome is already counted.
        seen.append((key, outcome, h.queue.is_processing(key),
                     h.sample("controller_runtime_reconcile_total", result=outcome)))

    def failing(key: str, outcome: str) -> None:
        raise RuntimeError("observer bug")

    removed: list[str] = []
    h.controller.add_reconcile_observer(failing)
    h.controller.add_reconcile_observer(observer)
    remove = h.controller.add_reconcile_observer(lambda key, outcome: removed.append(key))
    remove()
    remove()  # removing twice is harmless
    for key in ("ns/ok", "ns/boom", "ns/again", "ns/later"):
        h.queue.add(key)
    with capture_logs() as logs:
        h.start()
        await eventually(lambda: len(seen) == 4, what="four reconciles observed")
    assert seen == [
        ("ns/ok", "success", True, 1.0),
        ("ns/boom", "error", True, 1.0),
        ("ns/again", "requeue", True, 1.0),
        ("ns/later", "requeue_after", True, 1.0),
    ]
    assert removed == []
    # A failing observer is logged; it neither stops the worker nor the other observer.
    failures = [e for e in logs if e["event"] == "reconcile observer failed"]
    assert [e["key"] for e in failures] == ["ns/ok", "ns/boom", "ns/again", "ns/later"]
    assert h.queue.waiting_len() == 3  # boom and again back off, later is scheduled
    await h.stop()


# --- event handler factories -------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def add(self, key: str) -> None:
        self.keys.append(key)


def obj(
    name: str, namespace: str | None = "ns", owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def owner_ref(name: str, *, kind: str = "Thing", controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1beta1",
        "kind": kind,
        "name": name,
        "uid": "u-" + name,
        "controller": controller,
    }


def test_keys() -> None:
    assert key_of(obj("a")) == "ns/a"
    assert key_of(obj("node-1", namespace=None)) == "node-1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node-1") == (None, "node-1")
    assert api_group("apps/v1") == "apps" and api_group("v1") == ""
    with pytest.raises(ValueError):
        key_of({"metadata": {}})


def test_enqueue_object() -> None:
    rec = Recorder()
    handler = enqueue_object(rec)
    handler.on_add(obj("a"))
    handler.on_update(obj("a"), obj("a"))
    handler.on_delete(obj("b"))
    assert rec.keys == ["ns/a", "ns/a", "ns/b"]


def test_enqueue_owner_maps_children_to_their_controller_owner() -> None:
    rec = Recorder()
    handler = enqueue_owner(rec, "example.com/v1", "Thing")  # version differs: same group/kind
    handler.on_add(obj("child", owners=[owner_ref("parent")]))
    handler.on_add(obj("x", owners=[owner_ref("not-controller", controller=False)]))
    handler.on_add(obj("y", owners=[owner_ref("other-kind", kind="Other")]))
    handler.on_add(obj("orphan"))
    handler.on_delete(obj("child", owners=[owner_ref("parent")]))
    assert rec.keys == ["ns/parent", "ns/parent"]

    rec.keys.clear()
    handler.on_update(obj("c", owners=[owner_ref("old")]), obj("c", owners=[owner_ref("new")]))
    assert rec.keys == ["ns/old", "ns/new"]

    rec.keys.clear()
    any_owner = enqueue_owner(rec, "example.com/v1", "Thing", only_controller=False)
    any_owner.on_add(obj("x", owners=[owner_ref("not-controller", controller=False)]))
    cluster_owner = enqueue_owner(rec, "example.com/v1", "Thing", cluster_scoped_owner=True)
    cluster_owner.on_add(obj("child", owners=[owner_ref("global")]))
    assert rec.keys == ["ns/not-controller", "global"]


def test_enqueue_mapped_and_funcs() -> None:
    rec = Recorder()
    handler = enqueue_mapped(rec, lambda o: [f"ns/{o['metadata']['name']}-a", "ns/shared"])
    handler.on_update(obj("old"), obj("new"))
    assert rec.keys == ["ns/old-a", "ns/shared", "ns/new-a", "ns/shared"]

    seen: list[str] = []
    funcs = ResourceEventHandlerFuncs(add_func=lambda o: seen.append(key_of(o)))
    funcs.on_add(obj("a"))
    funcs.on_update(obj("a"), obj("a"))
    funcs.on_delete(obj("a"))
    assert seen == ["ns/a"]
