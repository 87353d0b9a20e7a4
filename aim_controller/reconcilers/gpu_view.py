"""The cluster's GPU inventory, shared by every controller of the process and rebuilt
from the Node and Pod caches only when something the inventory reads changed.

Every reconcile asks for the inventory; at a thousand endpoints rebuilding it
from thousands of pods each time would dominate the reconcile, so handlers on
the two informers compare fingerprints (what the inventory reads: GPU labels,
allocatable devices, taints, readiness; the devices a bound pod holds) and bump
a version only when one changed. Heartbeats and pod status churn cost nothing.

The same handlers keep the objects with a fingerprint (GPU nodes; bound,
non-terminated pods holding AMD devices) by key, and a rebuild reads only
those: on a big cluster that is mostly not ours it grows with the GPU pods,
not with every pod cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from aim_controller.machinery.handlers import ResourceEventHandlerFuncs, key_of
from aim_controller.machinery.informer import InformerLike
from aim_controller.recipes import GpuInventory, InventoryCache

from .gpu_fingerprint import node_gpu_fingerprint, pod_gpu_fingerprint

Listener = Callable[[], None]
Fingerprint = Callable[[Mapping[str, Any]], Hashable]


class GpuView:
    """Inventory of the GPU nodes, plus notifications when GPU capacity or usage changes.

    Invariants: ``inventory()`` equals ``build_inventory(nodes, pods)`` over the
    caches as of the last fingerprint change; it is complete once both have
    synced (a controller reading it waits for that: ``builder.uses(view)``).
    The held objects are exactly the cached ones whose fingerprint is not
    ``None`` (objects the inventory ignores). Single event loop.
    """

    def __init__(self, nodes: InformerLike, pods: InformerLike) -> None:
        self._nodes = nodes
        self._pods = pods
        self._version = 0
        self._built: tuple[int, GpuInventory] | None = None
        self._cache = InventoryCache()
        self._listeners: list[Listener] = []
        self._gpu_nodes: dict[str, Mapping[str, Any]] = {}
        self._gpu_pods: dict[str, Mapping[str, Any]] = {}
        nodes.add_event_handler(self._handler(node_gpu_fingerprint, self._gpu_nodes))
        pods.add_event_handler(self._handler(pod_gpu_fingerprint, self._gpu_pods))

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
            inv = self._cache.build(self._gpu_nodes.values(), self._gpu_pods.values())
            self._built = (self._version, inv)
        return self._built[1]

    def _changed(self) -> None:
        self._version += 1
        for listener in self._listeners:
            listener()

    def _handler(
        self, fingerprint: Fingerprint, held: dict[str, Mapping[str, Any]]
    ) -> ResourceEventHandlerFuncs:
        def on_add(obj: Mapping[str, Any]) -> None:
            if fingerprint(obj) is not None:
                held[key_of(obj)] = obj
                self._changed()

        def on_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
            now = fingerprint(new)
            if now is None:
                held.pop(key_of(new), None)
            else:
                held[key_of(new)] = new
            if fingerprint(old) != now:
                self._changed()

        def on_delete(obj: Mapping[str, Any]) -> None:
            # The final state may hold nothing (terminated) while the last cached one did.
            if held.pop(key_of(obj), None) is not None or fingerprint(obj) is not None:
                self._changed()

        return ResourceEventHandlerFuncs(on_add, on_update, on_delete)
