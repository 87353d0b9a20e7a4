"""Stalled watches: a watch that delivers nothing, not even a bookmark, for the stall
timeout is dropped and resumed from the last resourceVersion (no relist), counted in
``reflector_stalled_watches_total``; a watch that keeps delivering is never dropped.

The API server here is a fake one (list and watch replaced): these tests are about
the reflector's loop, not about Kubernetes; tests/integration/test_informer.py has
the stall on the real control plane, through a relay that stops forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from support import eventually

from aim_controller.machinery import reflector as reflector_module
from aim_controller.machinery.handlers import KubeObject, ResourceEventHandlerFuncs
from aim_controller.machinery.informer import InformerFactory
from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.reflector import BackoffManager, Reflector, strip_managed_fields
from aim_controller.machinery.resource import CONFIGMAPS, PODS, ObjectList, WatchEvent
from aim_controller.machinery.store import Indexer

Step = WatchEvent | float  # an event to send, or seconds to wait before the next step


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "d", "resourceVersion": rv}}


def bookmark(rv: str) -> WatchEvent:
    return WatchEvent("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": rv}})


class FakeServer:
    """Lists one object at resourceVersion 10; each watch plays the next script, then
    keeps its stream open and silent (as a connection that stopped forwarding)."""

    def __init__(self, *scripts: list[Step], fail_with: BaseException | None = None) -> None:
        self.scripts = list(scripts)
        self.fail_with = fail_with
        self.lists = 0
        self.watches: list[str] = []  # the resourceVersion each watch started from
        self.closed = 0

    async def list_objects(self, *args: Any, **kwargs: Any) -> ObjectList:
        self.lists += 1
        return ObjectList([cm("a", "10")], "10")

    async def watch_objects(
        self, *args: Any, resource_version: str, **kwargs: Any
    ) -> AsyncIterator[WatchEvent]:
        self.watches.append(resource_version)
        script = self.scripts.pop(0) if self.scripts else []
        try:
            if self.fail_with is not None:
                raise self.fail_with
            for step in script:
                if isinstance(step, WatchEvent):
                    yield step
                else:
                    await asyncio.sleep(step)
            await asyncio.Future()  # open, and silent
        finally:
            self.closed += 1


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeServer], FakeServer]:
    def install(server: FakeServer) -> FakeServer:
        monkeypatch.setattr(reflector_module, "list_page", server.list_objects)
        monkeypatch.setattr(reflector_module, "watch_objects", server.watch_objects)
        return server

    return install


@contextlib.asynccontextmanager
async def running(r: Reflector) -> AsyncIterator[Reflector]:
    task = asyncio.create_task(r.run())
    try:
        yield r
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def reflector(stall_timeout: float | None, metrics: MachineryMetrics | None = None,
              on_update: Callable[[KubeObject, KubeObject], None] | None = None) -> Reflector:
    return Reflector(
        cast(KubeClient, None), CONFIGMAPS, Indexer(),
        [ResourceEventHandlerFuncs(update_func=on_update)],
        stall_timeout=stall_timeout, backoff=BackoffManager(initial=0.01, cap=0.05),
        metrics=metrics.reflector("d/configmaps") if metrics else None,
    )


def rv_of(r: Reflector, key: str) -> str | None:
    obj = r.store.get(key)
    return None if obj is None else str(obj["metadata"]["resourceVersion"])


async def test_stalled_watch_is_dropped_and_resumed_from_the_last_resource_version(
    serve: Callable[[FakeServer], FakeServer],
) -> None:
    server = serve(FakeServer(
        [WatchEvent("ADDED", cm("b", "11")), bookmark("12")],  # then silent
        [WatchEvent("MODIFIED", cm("b", "13"))],  # delivered by the resumed watch
        # and every later watch is silent from the start (a server that never answers)
    ))
    metrics = MachineryMetrics(CollectorRegistry())
    r = reflector(0.05, metrics)
    async with running(r):
        await eventually(lambda: rv_of(r, "d/b") == "13", what="the resumed watch's change")
        await eventually(lambda: len(server.watches) >= 3, what="a third watch")
    # Each resumed from the last RV seen (the bookmark's, then the event's): no relist.
    assert server.watches[:3] == ["10", "12", "13"]
    assert server.lists == 1 and r.stats.lists == 1 and r.stats.expired == 0
    assert r.stats.errors == 0  # a stall is not an error: no backoff
    assert r.stats.stalls >= 2 and server.closed >= 2  # each dropped stream was closed
    stalled = metrics.registry.get_sample_value(
        "reflector_stalled_watches_total", {"name": "d/configmaps"})
    assert stalled == r.stats.stalls


async def test_a_watch_that_keeps_delivering_is_not_dropped(
    serve: Callable[[FakeServer], FakeServer],
) -> None:
    # 100 events 0.02 s apart: the watch lives twice the stall timeout, yet no gap
    # between two events comes near it.
    events: list[Step] = []
    for i in range(100):
        events += [0.02, WatchEvent("MODIFIED", cm("a", str(11 + i)))]
    serve(FakeServer(events))
    stalls_at_delivery: list[int] = []
    r: Reflector

    def on_update(old: KubeObject, new: KubeObject) -> None:
        stalls_at_delivery.append(r.stats.stalls)

    r = reflector(1.0, on_update=on_update)
    async with running(r):
        await eventually(lambda: rv_of(r, "d/a") == "110", what="the last event")
    assert len(stalls_at_delivery) == 100 and set(stalls_at_delivery) == {0}
    assert r.stats.watch_attempts == 1


async def test_the_clients_own_timeout_is_a_transport_error_not_a_stall(
    serve: Callable[[FakeServer], FakeServer],
) -> None:
    server = serve(FakeServer(fail_with=TimeoutError("aiohttp: total timeout")))
    r = reflector(30.0)
    async with running(r):
        await eventually(lambda: r.stats.errors >= 2, what="retried after a backoff")
    assert r.stats.stalls == 0 and server.watches[:2] == ["10", "10"]


def test_factory_informers_share_the_stall_timeout_and_metrics() -> None:
    metrics = MachineryMetrics(CollectorRegistry())
    f = InformerFactory(cast(KubeClient, None), stall_timeout=7.0, metrics=metrics)
    inf = f.informer(CONFIGMAPS, "d")
    assert inf.reflector.stall_timeout == 7.0
    assert metrics.registry.get_sample_value(
        "reflector_stalled_watches_total", {"name": "d/configmaps"}) == 0
    assert f.informer(PODS).name == "pods"


def test_factory_refuses_a_second_ask_with_another_transform() -> None:
    f = InformerFactory(cast(KubeClient, None))

    def slim(obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    inf = f.informer(PODS, transform=slim)
    assert f.informer(PODS, transform=slim) is inf
    with pytest.raises(ValueError, match="another transform"):
        f.informer(PODS)  # the factory's default: not what the cache holds
    assert f.informer(CONFIGMAPS, "d").reflector.transform is strip_managed_fields
    with pytest.raises(ValueError, match="another transform"):
        f.informer(CONFIGMAPS, "d", transform=slim)
