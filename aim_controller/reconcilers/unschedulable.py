"""Whether another recipe could fix why an endpoint's pods are unschedulable, read from
the scheduler's ``PodScheduled`` message.

Another recipe means other GPUs (another hardware pool, another GPU count), so only
GPU-placement reasons count: ``Insufficient amd.com/gpu``, untolerated taints,
cordoned nodes, and a node affinity that no node matches any more (the chosen
hardware's nodes are gone). An unbound PersistentVolumeClaim, or CPU, memory, pod or
port shortage, follow the endpoint to any recipe: moving would only flip-flop, so the
endpoint stays and reports the scheduler's words.

The default scheduler's message has the form ``0/N nodes are available: <count>
<reason>, <count> <reason>. preemption: ...``; non-GPU nodes always add
"didn't match Pod's node affinity/selector", so affinity alone only counts when
nothing else is said.
"""

from __future__ import annotations

__all__ = ["gpu_fixable"]

_NOT_FIXABLE = ("persistentvolumeclaim", "volume node affinity", "insufficient cpu",
                "insufficient memory", "insufficient ephemeral-storage", "too many pods",
                "free ports")
_GPU_REASONS = ("amd.com/gpu", "untolerated taint", "were unschedulable")


def gpu_fixable(message: str) -> bool:
    m = message.lower()
    if "persistentvolumeclaim" in m:
        return False  # the pod is not even matched against nodes until the claim binds
    if any(r in m for r in _GPU_REASONS):
        return True
    if any(r in m for r in _NOT_FIXABLE):
        return False
    return "affinity" in m
