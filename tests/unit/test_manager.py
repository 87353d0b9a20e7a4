"""The manager starts each controller on its own sources: an informer nobody of that
controller needs, stuck listing, holds up no one (it only keeps the replica unready)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry

from aim_controller.machinery.controller import Controller, Result
from aim_controller.machinery.httpserver import ServingEndpoints
from aim_controller.machinery.informer import InformerFactory
from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.manager import Manager
from aim_controller.machinery.resource import CONFIGMAPS
from aim_controller.machinery.workqueue import RateLimitingQueue


class NeverAnswers:
    """An API client whose requests never complete: its informers never sync."""

    async def call_api(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Future()


async def test_a_controller_runs_while_an_informer_it_does_not_use_never_syncs() -> None:
    api = cast(KubeClient, NeverAnswers())
    informers = InformerFactory(api)
    informers.informer(CONFIGMAPS)  # another controller's, stuck listing
    reconciled = asyncio.Event()

    async def reconcile(key: str) -> Result | None:
        reconciled.set()
        return None

    queue: RateLimitingQueue[str] = RateLimitingQueue("own")
    queue.add("ns/a")
    own_caches_synced = lambda: True  # noqa: E731
    manager = Manager(api, informers, ServingEndpoints(
        metrics_bind_address="0", health_probe_bind_address="0", registry=CollectorRegistry()))
    manager.add_controller(Controller("own", reconcile, queue, sources=[own_caches_synced]))
    task = asyncio.create_task(manager.run())
    try:
        # The bound only guards liveness: without per-controller sources this never happens.
        async with asyncio.timeout(10):
            await reconciled.wait()
        assert not manager.caches_synced()  # readiness still covers every informer
    finally:
        manager.stop()
        await task
