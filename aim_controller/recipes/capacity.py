"""The one capacity verdict: do ``replicas`` replicas of ``gpu_count`` GPUs of one
hardware fit in the free GPUs right now, and if not, why.

Used by endpoint selection (per candidate) and by the AIMRecipe fit status (per
configuration, one replica), so both say the same thing in the same words.
Checks, in order: a usable node serves the hardware (``HardwareNotPresent``);
one node has ``gpu_count`` allocatable GPUs, since tensor parallelism does not span
nodes (``DoesNotFitOnOneNode``); the free GPUs hold ``replicas`` replicas, each on
one node (``InsufficientFreeGPUs``).

Mixed-GPU nodes (several GPU models on one node; see :mod:`.inventory`) take
1-GPU replicas only. A pod asks for ``amd.com/gpu``, which does not say which
of the node's GPUs it gets: the AMD device plugin exposes no per-model resource
names and allocates by topology, not model. So a multi-GPU replica goes only on
a node whose GPUs are all of the chosen hardware, and its rejection says so
when mixed nodes hold that hardware; a 1-GPU replica may use a mixed node's
GPUs of the type (at most the node's free GPUs), and its verdict carries a
``note`` that the GPU type there is not guaranteed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .inventory import GpuInventory, HardwarePool
from .reasons import Reason
from .text import plural

__all__ = ["MAX_NODES_NAMED", "CapacityVerdict", "capacity_verdict"]

# Unusable nodes named in a HardwareNotPresent message before "N more".
MAX_NODES_NAMED = 4


@dataclass(frozen=True, slots=True)
class CapacityVerdict:
    """Invariant: ``rejection`` is None exactly when ``fitting_replicas`` >= the
    replicas asked for; ``pool`` is None exactly for HardwareNotPresent. ``note``
    is non-empty exactly when the replicas fit and the count includes GPUs on
    mixed nodes (where the GPU type is not guaranteed); it says which nodes."""

    fitting_replicas: int
    rejection: tuple[Reason, str] | None
    pool: HardwarePool | None
    note: str = ""


def _named(nodes: tuple[str, ...]) -> str:
    more = len(nodes) - MAX_NODES_NAMED
    return ", ".join(nodes[:MAX_NODES_NAMED]) + (f" and {more} more" if more > 0 else "")


def _mixed_refusal(hardware: str, g: int, pool: HardwarePool) -> str:
    """Why the mixed nodes holding ``hardware`` do not take a replica of ``g`` > 1 GPUs."""
    several = len(pool.mixed_nodes) > 1
    return (
        f"mixed GPU node{'s' if several else ''} {_named(pool.mixed_nodes)} "
        f"take{'' if several else 's'} 1-GPU replicas only: amd.com/gpu does not say "
        "which GPUs a pod gets and the AMD device plugin has no per-model resource names, "
        f"so a {g}-GPU replica goes only on a node whose GPUs are all {hardware}"
    )


def _mixed_note(hardware: str, pool: HardwarePool) -> str:
    used = tuple(sorted(n for n, f in pool.mixed_free_by_node if f > 0))
    if not used:
        return ""
    return (
        f"GPU type not guaranteed on mixed GPU node{'s' if len(used) > 1 else ''} "
        f"{_named(used)}: amd.com/gpu does not say which of a node's GPU models a pod "
        f"gets (the pods prefer nodes whose GPUs are all {hardware})"
    )


def _not_present(hardware: str, inventory: GpuInventory) -> str:
    msg = f"no usable {hardware} node"
    blocked = inventory.unusable_with(hardware)
    if not blocked:
        return msg + f" in the cluster ({inventory.summary()})"
    shown = "; ".join(f"{n.name}: {n.reason or 'not usable'}" for n in blocked[:MAX_NODES_NAMED])
    more = len(blocked) - MAX_NODES_NAMED
    return msg + f" ({shown}{f'; {more} more' if more > 0 else ''})"


def capacity_verdict(
    hardware: str, gpu_count: int, replicas: int, inventory: GpuInventory
) -> CapacityVerdict:
    pool = inventory.pool(hardware)
    g = gpu_count
    if pool is None:
        return CapacityVerdict(
            0, (Reason.HARDWARE_NOT_PRESENT, _not_present(hardware, inventory)), None
        )
    refusal = _mixed_refusal(hardware, g, pool) if g > 1 and pool.mixed_free_by_node else ""
    if pool.largest_node(g) < g:
        largest = (
            f"the largest {hardware} node has {pool.largest_node(g)} allocatable"
            if pool.free_by_node or g == 1
            else f"no node has only {hardware} GPUs"
        )
        msg = f"a replica needs {g} {hardware} GPUs on one node; {largest}"
        return CapacityVerdict(
            0, (Reason.DOES_NOT_FIT_ON_ONE_NODE, msg + (f"; {refusal}" if refusal else "")), pool
        )
    fit = pool.replicas_that_fit(g)
    if fit < replicas:
        msg = (
            f"needs {replicas}x{g}={replicas * g} free {hardware} GPUs ({g} per node); "
            f"free per node: {pool.free_summary(gpus_per_replica=g)}; "
            f"{plural(fit, 'replica')} fit"
        )
        return CapacityVerdict(
            fit, (Reason.INSUFFICIENT_FREE_GPUS, msg + (f"; {refusal}" if refusal else "")), pool
        )
    return CapacityVerdict(fit, None, pool, _mixed_note(hardware, pool) if g == 1 else "")
