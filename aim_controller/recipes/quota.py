"""Room left for AMD GPUs under a namespace's ResourceQuotas.

Kubernetes tracks an extended resource in a ResourceQuota only under
``requests.amd.com/gpu``: admission charges pods to it and ``status.used``
says how much is taken. The bare ``amd.com/gpu`` key (the spec's examples
use it) is accepted but neither enforced nor counted, so its ``status.used``
stays empty; for it the caller counts the namespace's pods
(:func:`namespace_gpu_requests`) and the room is honoured by selection only,
which the message says. The tightest quota wins. A quota with scopes only
applies when every scope matches the endpoint's pods, which are long-running
(``NotTerminating``) and have requests (``NotBestEffort``); quotas with other
scopes or a ``scopeSelector`` are skipped, since whether they match depends on
pod fields (priority class, ...) the selector does not decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aim_controller.api.v1alpha1 import GPU_RESOURCE

from .inventory import pod_device_requests
from .quantity import parse_quantity

__all__ = [
    "TRACKED_KEY",
    "UNTRACKED_KEY",
    "GpuQuota",
    "gpu_quota",
    "namespace_gpu_requests",
    "needs_pod_count",
]

TRACKED_KEY = f"requests.{GPU_RESOURCE}"
UNTRACKED_KEY = GPU_RESOURCE
_MATCHING_SCOPES = frozenset({"NotTerminating", "NotBestEffort"})
_NOT_ENFORCED = (
    f"Kubernetes does not enforce the bare {UNTRACKED_KEY} quota key (only {TRACKED_KEY}), "
    "so the operator counts the namespace's pods against it"
)


@dataclass(frozen=True, slots=True)
class GpuQuota:
    """Hard limit and current usage of GPUs in a namespace (tightest quota).

    ``room`` never goes below zero. ``name`` names the quota object (``""``
    when the caller passed numbers). ``enforced`` is False for the bare
    ``amd.com/gpu`` key: Kubernetes neither enforces nor counts it, ``used``
    was counted from the namespace's pods and only selection honours it.
    """

    hard: int
    used: int
    name: str = ""
    enforced: bool = True

    @property
    def room(self) -> int:
        return max(0, self.hard - self.used)

    def describe(self) -> str:
        who = f"ResourceQuota {self.name}" if self.name else "the namespace quota"
        if self.enforced:
            return f"{who} leaves {self.room} amd.com/gpu (hard {self.hard}, used {self.used})"
        return (
            f"{who} leaves {self.room} {UNTRACKED_KEY} (hard {self.hard}, used {self.used} by "
            f"the namespace's pods); {_NOT_ENFORCED}"
        )

    def caveat(self) -> str:
        """Why an unenforced quota binds only the operator ("" when enforced). Free of
        usage numbers, so a message carrying it does not change as pods come and go."""
        if self.enforced:
            return ""
        who = f"ResourceQuota {self.name}" if self.name else "the namespace quota"
        return f"{who} limits {UNTRACKED_KEY}: {_NOT_ENFORCED}"


def _int(v: object) -> int | None:
    try:
        q = parse_quantity(v)
    except ValueError:
        return None
    return int(q) if q >= 0 else None


def _applicable(quotas: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for q in quotas:
        spec = q.get("spec") or {}
        if spec.get("scopeSelector") or not set(spec.get("scopes") or ()) <= _MATCHING_SCOPES:
            continue
        yield q


def _hard(q: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = q.get("spec") or {}
    return spec.get("hard") or (q.get("status") or {}).get("hard") or {}


def needs_pod_count(quotas: Iterable[Mapping[str, Any]]) -> bool:
    """Whether an applicable quota limits the bare ``amd.com/gpu`` key, whose use the
    caller must count from the namespace's pods (:func:`namespace_gpu_requests`)."""
    return any(UNTRACKED_KEY in _hard(q) for q in _applicable(quotas))


def namespace_gpu_requests(pods: Iterable[Mapping[str, Any]]) -> int:
    """The ``amd.com/gpu`` requests of the pods that are not terminated, pending ones
    included: what the bare quota key would count if Kubernetes tracked it."""
    total = 0
    for pod in pods:
        usage = pod_device_requests(pod, bound_only=False)
        if usage is not None:
            total += usage[1].get(GPU_RESOURCE, 0)
    return total


def gpu_quota(
    quotas: GpuQuota | Iterable[Mapping[str, Any]] | None,
    *,
    owned: int = 0,
    namespace_used: int | None = None,
) -> GpuQuota | None:
    """The tightest applicable GPU quota, with ``owned`` GPUs (the endpoint's own pods) given back.

    ``requests.amd.com/gpu`` is judged by the quota's ``status.used``; the bare
    ``amd.com/gpu`` key by ``namespace_used`` (the namespace's pods' GPU requests;
    None: its ``status.used``, which Kubernetes never fills). None when no quota
    limits GPUs.
    """
    if quotas is None:
        return None
    if isinstance(quotas, GpuQuota):
        candidates = [quotas]
    else:
        candidates = []
        for q in _applicable(quotas):
            hard_map = _hard(q)
            used_map = (q.get("status") or {}).get("used") or {}
            name = str((q.get("metadata") or {}).get("name", ""))
            for key in (TRACKED_KEY, UNTRACKED_KEY):
                hard = _int(hard_map[key]) if key in hard_map else None
                if hard is None:
                    continue
                tracked = key == TRACKED_KEY
                if tracked or namespace_used is None:
                    used = _int(used_map.get(key, 0)) or 0
                else:
                    used = namespace_used
                candidates.append(GpuQuota(hard, used, name, tracked))
    if not candidates:
        return None
    adjusted = [GpuQuota(c.hard, max(0, c.used - owned), c.name, c.enforced) for c in candidates]
    # On a tie the enforced quota is the one to name.
    return min(adjusted, key=lambda c: (c.room, not c.enforced, c.name))
