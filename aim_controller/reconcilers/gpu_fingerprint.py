"""What of a Node or Pod the GPU inventory depends on, so a watcher can ignore changes
(node heartbeats, pod status churn) that cannot change any fit or selection."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from aim_controller.recipes.inventory import pod_device_requests

__all__ = ["node_gpu_fingerprint", "pod_gpu_fingerprint"]


def _amd(key: str) -> bool:
    return key.startswith(("amd.com/", "beta.amd.com/"))


def node_gpu_fingerprint(node: Mapping[str, Any]) -> Hashable:
    """What of ``node`` the inventory reads; equal fingerprints give equal inventories.

    Heartbeats and other status churn leave it unchanged. ``None`` for nodes
    without AMD labels or devices (they never enter the inventory).
    """
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels = tuple(sorted((k, str(v)) for k, v in (meta.get("labels") or {}).items() if _amd(k)))
    devices = tuple(
        (part, tuple(sorted((k, str(v)) for k, v in (status.get(part) or {}).items() if _amd(k))))
        for part in ("allocatable", "capacity")
    )
    if not labels and not any(d for _, d in devices):
        return None
    ready = next(
        (str(c.get("status")) for c in status.get("conditions") or () if c.get("type") == "Ready"),
        "",
    )
    taints = tuple(
        sorted((str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
               for t in spec.get("taints") or ())
    )  # fmt: skip
    return (
        str(meta.get("name", "")),
        labels,
        devices,
        bool(spec.get("unschedulable")),
        ready,
        taints,
    )


def pod_gpu_fingerprint(pod: Mapping[str, Any]) -> Hashable:
    """The AMD devices ``pod`` holds, and where; ``None`` when it holds none
    (unbound, terminated, or no AMD device requests)."""
    held = pod_device_requests(pod)
    if held is None:
        return None
    node, requests = held
    return (node, tuple(sorted(requests.items())))
