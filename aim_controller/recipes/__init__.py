"""The pure recipe engine: GPU inventory, recipe catalog, estimates and selection.

No I/O and no Kubernetes client: inputs are plain dicts shaped like
Kubernetes JSON objects, outputs are immutable values. Typical use::

    inventory = build_inventory(nodes, pods)          # once per cluster snapshot
    decision = select(endpoint.spec, namespace, namespace_recipes, None, inventory,
                      quotas, endpoint.status.get("recipe"), now=now,
                      unschedulable_since=since)
    status["recipe"] = decision.to_status()
"""

from .catalog import builtin_index, load_builtin_catalog
from .inventory import (
    GpuInventory,
    HardwarePool,
    InventoryCache,
    NodeGpus,
    PartitionResource,
    Taint,
    build_inventory,
)
from .quota import GpuQuota, gpu_quota
from .recipe import RecipeConfig, RecipeIndex
from .selection import DEFAULT_RESELECT_AFTER, Candidate, Decision, Reason, Verdict, select

__all__ = [
    "DEFAULT_RESELECT_AFTER",
    "Candidate",
    "Decision",
    "GpuInventory",
    "GpuQuota",
    "HardwarePool",
    "InventoryCache",
    "NodeGpus",
    "PartitionResource",
    "Reason",
    "RecipeConfig",
    "RecipeIndex",
    "Taint",
    "Verdict",
    "build_inventory",
    "builtin_index",
    "gpu_quota",
    "load_builtin_catalog",
    "select",
]
