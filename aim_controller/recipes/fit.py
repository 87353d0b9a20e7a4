"""Where one AIMRecipe configuration fits right now: pure, from a GPU inventory.

* ``replicas`` is the number of replicas of ``gpuCount`` GPUs that the free whole
  GPUs of usable nodes serving the recipe's hardware hold, each replica on one
  node (tensor parallelism does not span nodes):
  :meth:`HardwarePool.replicas_that_fit`. Invalid configurations fit nowhere.
* ``nodes`` are the usable nodes with at least ``gpuCount`` free GPUs, by name
  (not by free count, so usage changes that keep the set do not reorder it).
* ``rejection`` says why not even one replica fits: the capacity verdict
  (:mod:`.capacity`) shared with endpoint selection, or ``InvalidRecipe``.

The AIMRecipe status built from these lives with its controller
(``aim_controller.reconcilers.recipe_fit``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aim_controller.api.v1alpha1 import MAX_STATUS_GPU_MODELS, MAX_STATUS_NODES

from .capacity import capacity_verdict
from .inventory import GpuInventory, NodeGpus
from .reasons import Reason
from .recipe import RecipeConfig

__all__ = ["ConfigFit", "config_fit", "invalid_summary"]


@dataclass(frozen=True, slots=True)
class ConfigFit:
    """Invariant: ``rejection`` is None exactly when ``replicas`` > 0."""

    replicas: int
    nodes: tuple[str, ...]
    gpu_models: tuple[str, ...]
    rejection: tuple[Reason, str] | None


def _node_models(node: NodeGpus) -> tuple[str, ...]:
    if node.model:
        return (node.model,)
    return tuple(m for m, _ in node.models) or tuple(sorted(node.serves))


def config_fit(
    cfg: RecipeConfig, inventory: GpuInventory, by_name: Mapping[str, NodeGpus] | None = None
) -> ConfigFit:
    """``by_name``: the inventory's nodes by name, when the caller already has them."""
    if cfg.invalid:
        return ConfigFit(0, (), (), (Reason.INVALID_RECIPE, cfg.invalid))
    verdict = capacity_verdict(cfg.hardware, cfg.gpu_count, 1, inventory)
    if verdict.rejection is not None or verdict.pool is None:
        return ConfigFit(0, (), (), verdict.rejection)
    n = cfg.gpu_count
    nodes = list(verdict.pool.nodes_with_room(n))
    if by_name is None:
        by_name = {node.name: node for node in inventory.nodes}
    models = sorted({m for name in nodes for m in _node_models(by_name[name])})
    return ConfigFit(
        verdict.fitting_replicas,
        tuple(nodes[:MAX_STATUS_NODES]),
        tuple(models[:MAX_STATUS_GPU_MODELS]),
        None,
    )


def invalid_summary(configs: Sequence[RecipeConfig]) -> str:
    """Distinct problems, each with the gpuCounts it applies to unless it applies to all."""
    problems: dict[str, list[str]] = {}
    for c in configs:
        if c.invalid:
            at = f"gpuCount {c.gpu_count}" if c.gpu_count else f"configurations[{c.index}]"
            problems.setdefault(c.invalid, []).append(at)
    parts = []
    for problem, where in problems.items():
        parts.append(problem if len(where) == len(configs) else f"{', '.join(where)}: {problem}")
    return "; ".join(parts)
