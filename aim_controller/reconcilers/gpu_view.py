"""The cluster's GPU inventory, rebuilt from the Node and Pod caches only when they changed.

Every reconcile asks for the inventory; at a thousand endpoints rebuilding it
from thousands of pods each time would dominate the reconcile, so handlers on
the two informers bump a version and :meth:`GpuView.inventory` rebuilds only
when the version moved (with :class:`InventoryCache` reusing per-object parses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aim_controller.machinery.handlers import ResourceEventHandlerFuncs
from aim_controller.machinery.informer import InformerLike
from aim_controller.recipes import GpuInventory, InventoryCache
from aim_controller.recipes.inventory import pod_device_requests

Listener = Callable[[], None]


def _pod_gpu_relevant(pod: Mapping[str, Any]) -> bool:
    return pod_device_requests(pod) is not None


def _node_capacity_key(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a Node matters to GPU capacity (not heartbeats)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or ()
                  if c.get("type") == "Ready"), None)
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        repr(spec.get("taints")),
        bool(spec.get("unschedulable")),
        tuple(sorted((status.get("allocatable") or {}).items())),
        ready,
    )


def _pod_usage_key(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return (spec.get("nodeName"), status.get("phase"),
            bool((pod.get("metadata") or {}).get("deletionTimestamp")))


class GpuView:
    """Inventory of the GPU nodes, plus change notifications for capacity changes.

    Invariant: ``inventory()`` equals ``build_inventory(nodes, pods)`` of the
    caches at the time of the last capacity-relevant event.
    """

    def __init__(self, nodes: InformerLike, pods: InformerLike) -> None:
        self._nodes = nodes
        self._pods = pods
        self._version = 0
        self._built_version = -1
        self._inventory: GpuInventory | None = None
        self._cache = InventoryCache()
        self._listeners: list[Listener] = []
        nodes.add_event_handler(ResourceEventHandlerFuncs(
            lambda o: self._changed(), self._node_updated, lambda o: self._changed()))
        pods.add_event_handler(ResourceEventHandlerFuncs(
            self._pod_added, self._pod_updated, self._pod_added))

    def on_capacity_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def version(self) -> int:
        return self._version

    def inventory(self) -> GpuInventory:
        if self._inventory is None or self._built_version != self._version:
            version = self._version
            self._inventory = self._cache.build(self._nodes.store.list(), self._pods.store.list())
            self._built_version = version
        return self._inventory

    def _changed(self) -> None:
        self._version += 1
        for listener in self._listeners:
            listener()

    def _node_updated(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if _node_capacity_key(old) != _node_capacity_key(new):
            self._changed()

    def _pod_added(self, pod: Mapping[str, Any]) -> None:
        if _pod_gpu_relevant(pod):
            self._changed()

    def _pod_updated(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if ((_pod_gpu_relevant(new) or _pod_gpu_relevant(old))
                and _pod_usage_key(old) != _pod_usage_key(new)):
            self._changed()
