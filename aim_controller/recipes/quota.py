"""Room left for AMD GPUs under a namespace's ResourceQuotas.

Quota keys ``requests.amd.com/gpu`` and ``amd.com/gpu`` both count (the
API only admits the ``requests.`` form for extended resources, but the
spec's examples use the bare one). The tightest quota wins. A quota with
scopes only applies when every scope matches the endpoint's pods, which are
long-running (``NotTerminating``) and have requests (``NotBestEffort``);
quotas with other scopes or a ``scopeSelector`` are skipped, since whether
they match depends on pod fields (priority class, ...) the selector does not
decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aim_controller.api.v1alpha1 import GPU_RESOURCE

from .quantity import parse_quantity

__all__ = ["GpuQuota", "gpu_quota"]

_KEYS = (f"requests.{GPU_RESOURCE}", GPU_RESOURCE)
_MATCHING_SCOPES = frozenset({"NotTerminating", "NotBestEffort"})


@dataclass(frozen=True, slots=True)
class GpuQuota:
    """Hard limit and current usage of GPUs in a namespace (tightest quota).

    ``room`` never goes below zero. ``name`` names the quota object (``""``
    when the caller passed numbers).
    """

    hard: int
    used: int
    name: str = ""

    @property
    def room(self) -> int:
        return max(0, self.hard - self.used)

    def describe(self) -> str:
        who = f"ResourceQuota {self.name}" if self.name else "the namespace quota"
        return f"{who} leaves {self.room} amd.com/gpu (hard {self.hard}, used {self.used})"


def _int(v: object) -> int | None:
    try:
        q = parse_quantity(v)
    except ValueError:
        return None
    return int(q) if q >= 0 else None


def gpu_quota(
    quotas: GpuQuota | Iterable[Mapping[str, Any]] | None, *, owned: int = 0
) -> GpuQuota | None:
    """The tightest applicable GPU quota, with ``owned`` GPUs (the endpoint's own pods) given back.

    None when no quota limits GPUs.
    """
    if quotas is None:
        return None
    if isinstance(quotas, GpuQuota):
        candidates = [quotas]
    else:
        candidates = []
        for q in quotas:
            spec = q.get("spec") or {}
            if spec.get("scopeSelector") or not set(spec.get("scopes") or ()) <= _MATCHING_SCOPES:
                continue
            status = q.get("status") or {}
            hard_map = spec.get("hard") or status.get("hard") or {}
            used_map = status.get("used") or {}
            name = str((q.get("metadata") or {}).get("name", ""))
            for key in _KEYS:
                hard = _int(hard_map[key]) if key in hard_map else None
                if hard is None:
                    continue
                used = _int(used_map.get(key, 0)) or 0
                candidates.append(GpuQuota(hard, used, name))
    if not candidates:
        return None
    adjusted = [GpuQuota(c.hard, max(0, c.used - owned), c.name) for c in candidates]
    return min(adjusted, key=lambda c: (c.room, c.name))
