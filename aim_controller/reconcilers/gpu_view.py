"""The cluster's GPU inventory, shared by every controller of the process and rebuilt
from the Node and Pod caches only when something the inventory reads changed.

Every reconcile asks for the inventory; at a thousand endpoints rebuilding it
from thousands of pods each time would dominate the reconcile, so handlers on
the two informers compare fingerprints (what the inventory reads: GPU labels,
allocatable devices, taints, readiness; the devices a bound pod holds) and bump
a version only when one changed. Heartbeats and pod status churn cost nothing.

The same handlers keep the GPU nodes by key and, from each pod's fingerprint (the
devices it holds, and where), the devices used per node. A rebuild reads only
those: it grows with the GPU nodes, not with the pods (during a burst of new
endpoints it runs after nearly every pod event), and a node whose object and usage
did not change is not finished again.
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
Keep = Callable[[str, Mapping[str, Any], Hashable], bool]
"""(key, object, its fingerprint or None) -> whether the key was kept before."""


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
        # Pod key -> what it holds (its fingerprint: node, sorted device requests), and
        # the sum of those per node: the inventory's usage without walking the pods.
        self._pod_use: dict[str, tuple[str, tuple[tuple[str, int], ...]]] = {}
        self._used: dict[str, dict[str, int]] = {}
        nodes.add_event_handler(self._handler(node_gpu_fingerprint, self._keep_node))
        pods.add_event_handler(self._handler(pod_gpu_fingerprint, self._track_use))

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
            inv = self._cache.build_from_usage(self._gpu_nodes.values(), self._used)
            self._built = (self._version, inv)
        return self._built[1]

    def _changed(self) -> None:
        self._version += 1
        for listener in self._listeners:
            listener()

    def _keep_node(self, key: str, obj: Mapping[str, Any], fp: Hashable) -> bool:
        """Node ``key`` is kept while it has GPUs (``fp``); whether it was kept before."""
        was = self._gpu_nodes.pop(key, None) is not None
        if fp is not None:
            self._gpu_nodes[key] = obj
        return was

    def _track_use(self, key: str, obj: Mapping[str, Any], fp: Hashable) -> bool:
        """Pod ``key`` now holds ``fp`` (None: nothing): the per-node sums follow.
        Whether it held something before."""
        old = self._pod_use.pop(key, None)
        if old is not None:
            node, requests = old
            acc = self._used[node]
            for name, n in requests:
                left = acc[name] - n
                if left:
                    acc[name] = left
                else:
                    del acc[name]
            if not acc:
                del self._used[node]
        if fp is not None:
            node, requests = fp  # type: ignore[misc]
            self._pod_use[key] = (node, requests)
            acc = self._used.setdefault(node, {})
            for name, n in requests:
                acc[name] = acc.get(name, 0) + n
        return old is not None

    def _handler(self, fingerprint: Fingerprint, keep: Keep) -> ResourceEventHandlerFuncs:
        def on_add(obj: Mapping[str, Any]) -> None:
            fp = fingerprint(obj)
            if fp is not None:
                keep(key_of(obj), obj, fp)
                self._changed()

        def on_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
            now = fingerprint(new)
            keep(key_of(new), new, now)
            if fingerprint(old) != now:
                self._changed()

        def on_delete(obj: Mapping[str, Any]) -> None:
            # The final state may hold nothing (terminated) while the last cached one did.
            if keep(key_of(obj), obj, None) or fingerprint(obj) is not None:
                self._changed()

        return ResourceEventHandlerFuncs(on_add, on_update, on_delete)
