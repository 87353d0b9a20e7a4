"""The cluster's GPU inventory, shared by every controller of the process and rebuilt
from the Node and Pod caches only when something the inventory reads changed.

Every reconcile asks for the inventory; at a thousand endpoints rebuilding it
from thousands of pods each time would dominate the reconcile, so handlers on
the two informers compare fingerprints (what the inventory reads: GPU labels,
allocatable devices, taints, readiness; the devices a bound pod holds) and bump
a version only when one changed. Heartbeats and pod status churn cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from aim_controller.machinery.handlers import ResourceEventHandlerFuncs
from aim_controller.machinery.informer import InformerLike
from aim_controller.recipes import GpuInventory, InventoryCache

from .gpu_fingerprint import node_gpu_fingerprint, pod_gpu_fingerprint

Listener = Callable[[], None]
Fingerprint = Callable[[Mapping[str, Any]], Hashable]


class GpuView:
    """Inventory of the GPU nodes, plus notifications when GPU capacity or usage changes.

    Invariant: ``inventory()`` equals ``build_inventory(nodes, pods)`` over the
    caches as of the last fingerprint change; it is complete once both have
    synced (a controller reading it waits for that: ``builder.uses(view)``).
    Single event loop.
    """

    def __init__(self, nodes: InformerLike, pods: InformerLike) -> None:
        self._nodes = nodes
        self._pods = pods
        self._version = 0
        self._built: tuple[int, GpuInventory] | None = None
        self._cache = InventoryCache()
        self._listeners: list[Listener] = []
        nodes.add_event_handler(self._handler(node_gpu_fingerprint))
        pods.add_event_handler(self._handler(pod_gpu_fingerprint))

    def on_capacity_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def has_synced(self) -> bool:
        return self._nodes.has_synced() and self._pods.has_synced()

    async def wait_for_cache_sync(self) -> bool:
        await asyncio.gather(self._nodes.wait_synced(), self._pods.wait_synced())
        return True

    @property
    def version(self) -> int:
        return self._version

    def inventory(self) -> GpuInventory:
        if self._built is None or self._built[0] != self._version:
            inv = self._cache.build(self._nodes.store.list(), self._pods.store.list())
            self._built = (self._version, inv)
        return self._built[1]

    def _changed(self) -> None:
        self._version += 1
        for listener in self._listeners:
            listener()

    def _handler(self, fingerprint: Fingerprint) -> ResourceEventHandlerFuncs:
        def on_add_or_delete(obj: Mapping[str, Any]) -> None:
            if fingerprint(obj) is not None:
                self._changed()

        def on_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
            if fingerprint(old) != fingerprint(new):
                self._changed()

        return ResourceEventHandlerFuncs(on_add_or_delete, on_update, on_add_or_delete)
