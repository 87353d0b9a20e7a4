"""The one capacity verdict: do ``replicas`` replicas of ``gpu_count`` GPUs of one
hardware fit in the free GPUs right now, and if not, why.

Used by endpoint selection (per candidate) and by the AIMRecipe fit status (per
configuration, one replica), so both say the same thing in the same words.
Checks, in order: a usable node serves the hardware (``HardwareNotPresent``);
one node has ``gpu_count`` allocatable GPUs, since tensor parallelism does not span
nodes (``DoesNotFitOnOneNode``); the free GPUs hold ``replicas`` replicas, each on
one node (``InsufficientFreeGPUs``).
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
    replicas asked for; ``pool`` is None exactly for HardwareNotPresent."""

    fitting_replicas: int
    rejection: tuple[Reason, str] | None
    pool: HardwarePool | None


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
    if pool.max_allocatable < g:
        msg = (
            f"a replica needs {g} {hardware} GPUs on one node; "
            f"the largest {hardware} node has {pool.max_allocatable} allocatable"
        )
        return CapacityVerdict(0, (Reason.DOES_NOT_FIT_ON_ONE_NODE, msg), pool)
    fit = pool.replicas_that_fit(g)
    if fit < replicas:
        msg = (
            f"needs {replicas}x{g}={replicas * g} free {hardware} GPUs ({g} per node); "
            f"free per node: {pool.free_summary()}; {plural(fit, 'replica')} fit"
        )
        return CapacityVerdict(fit, (Reason.INSUFFICIENT_FREE_GPUS, msg), pool)
    return CapacityVerdict(fit, None, pool)
