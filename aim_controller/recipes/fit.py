"""Where an AIMRecipe fits right now: the AIMRecipe status, computed from a GPU inventory.

Pure and deterministic: the same recipe object and inventory give the same
dict, with no timestamps. Conditions come without ``lastTransitionTime`` and
``observedGeneration``; the caller merges them with the observed ones (so a
re-computation that changes nothing yields nothing to write).

Per configuration (in ``spec.configurations`` order):

* ``fittingReplicas`` is the number of replicas of ``gpuCount`` GPUs that the
  free whole GPUs of usable nodes serving the recipe's hardware hold, each
  replica on one node (tensor parallelism does not span nodes):
  :meth:`HardwarePool.replicas_that_fit`. Invalid configurations fit nowhere.
* ``nodes`` are the usable nodes with at least ``gpuCount`` free GPUs, by
  name (not by free count, so usage changes that keep the set do not reorder it).
* ``message`` says why nothing fits, with a reason code of the selector
  (``HardwareNotPresent``, ``DoesNotFitOnOneNode``, ``InsufficientFreeGPUs``,
  ``InvalidRecipe``).

Disabled configurations are reported like the others (how they *would*
fit) but do not count in ``summary`` or the ``Fits`` condition.

Conditions: ``Valid`` (the checks the schema cannot make: engine args vs
gpuCount, ``--dtype`` vs precision, fp8 on CDNA2, ...), ``Ready`` (valid and
with at least one enabled configuration: selection can use it) and ``Fits``
(some enabled configuration fits at least one replica now).

Also here: :func:`node_gpu_fingerprint` and :func:`pod_gpu_fingerprint`, what
of a Node or Pod the inventory depends on, so a watcher can ignore changes
(node heartbeats, pod status churn) that cannot change any fit.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .inventory import GpuInventory, HardwarePool, NodeGpus, pod_device_requests
from .recipe import SOURCE_NAMESPACE, RecipeConfig, parse_recipe

__all__ = [
    "CONDITION_FITS",
    "CONDITION_READY",
    "CONDITION_VALID",
    "MAX_NODES",
    "node_gpu_fingerprint",
    "pod_gpu_fingerprint",
    "recipe_fit_status",
]

CONDITION_VALID: Final = "Valid"
CONDITION_READY: Final = "Ready"
CONDITION_FITS: Final = "Fits"

# Limits of the AIMRecipeStatus schema.
MAX_NODES: Final = 100
MAX_GPU_MODELS: Final = 16
MAX_CONFIG_MESSAGE: Final = 1024
MAX_SUMMARY: Final = 256

_FITS = "Fits"
_HARDWARE_NOT_PRESENT = "HardwareNotPresent"
_DOES_NOT_FIT_ON_ONE_NODE = "DoesNotFitOnOneNode"
_INSUFFICIENT_FREE_GPUS = "InsufficientFreeGPUs"
_INVALID_RECIPE = "InvalidRecipe"
_DISABLED = "Disabled"
# Which reason best explains "no enabled configuration fits" (most actionable first).
_CLOSEST = (_INSUFFICIENT_FREE_GPUS, _DOES_NOT_FIT_ON_ONE_NODE, _HARDWARE_NOT_PRESENT,
            _INVALID_RECIPE)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Fit:
    replicas: int
    nodes: tuple[str, ...]
    gpu_models: tuple[str, ...]
    reason: str  # _FITS or why not
    message: str  # why not, without the reason code


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _node_models(node: NodeGpus) -> tuple[str, ...]:
    if node.model:
        return (node.model,)
    return tuple(m for m, _ in node.models) or tuple(sorted(node.serves))


def _unusable_note(inventory: GpuInventory, hardware: str) -> str:
    nodes = inventory.unusable_with(hardware)
    if not nodes:
        return ""
    shown = "; ".join(f"{n.name}: {n.reason or 'not usable'}" for n in nodes[:5])
    more = len(nodes) - 5
    return f" ({shown}{f'; {more} more' if more > 0 else ''})"


def _fit(cfg: RecipeConfig, inventory: GpuInventory, by_name: Mapping[str, NodeGpus]) -> _Fit:
    if cfg.invalid:
        return _Fit(0, (), (), _INVALID_RECIPE, cfg.invalid)
    hw, n = cfg.hardware, cfg.gpu_count
    pool: HardwarePool | None = inventory.pool(hw)
    if pool is None:
        msg = f"no usable {hw} node" + _unusable_note(inventory, hw)
        return _Fit(0, (), (), _HARDWARE_NOT_PRESENT, msg)
    if n > pool.max_allocatable:
        msg = (
            f"a replica needs {_plural(n, 'GPU')} on one node;"
            f" the largest {hw} node has {pool.max_allocatable}"
        )
        return _Fit(0, (), (), _DOES_NOT_FIT_ON_ONE_NODE, msg)
    replicas = pool.replicas_that_fit(n)
    if replicas == 0:
        msg = f"no {hw} node has {_plural(n, 'free GPU')} (free: {pool.free_summary()})"
        return _Fit(0, (), (), _INSUFFICIENT_FREE_GPUS, msg)
    nodes = sorted(name for name, free in pool.free_by_node if free >= n)
    models = sorted({m for name in nodes for m in _node_models(by_name[name])})
    return _Fit(replicas, tuple(nodes[:MAX_NODES]), tuple(models[:MAX_GPU_MODELS]), _FITS, "")


def _invalid_summary(configs: Sequence[RecipeConfig]) -> str:
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


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": message}  # fmt: skip


def _invalid_object(generation: int | None, message: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "valid": False,
        "summary": _clip(f"invalid: {message}", MAX_SUMMARY),
        "configurations": [],
        "conditions": [
            _cond(CONDITION_VALID, False, _INVALID_RECIPE, message),
            _cond(CONDITION_READY, False, _INVALID_RECIPE, message),
            _cond(CONDITION_FITS, False, _INVALID_RECIPE, message),
        ],
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def recipe_fit_status(recipe_obj: Mapping[str, Any], inventory: GpuInventory) -> dict[str, Any]:
    """The AIMRecipe ``status`` (camelCase) of ``recipe_obj`` against ``inventory``.

    ``conditions`` hold ``type``, ``status``, ``reason`` and ``message`` only, in
    the order Valid, Ready, Fits. ``observedGeneration`` is the object's
    ``metadata.generation`` when it has one.
    """
    meta = recipe_obj.get("metadata") or {}
    raw_gen = meta.get("generation")
    generation = raw_gen if isinstance(raw_gen, int) and not isinstance(raw_gen, bool) else None
    recipe = parse_recipe(recipe_obj, SOURCE_NAMESPACE)
    if recipe is None:
        return _invalid_object(generation, "spec.modelId is empty: the recipe matches no model")
    configs = recipe.configs
    invalid = _invalid_summary(configs)
    by_name = {n.name: n for n in inventory.nodes}

    rows: list[dict[str, Any]] = []
    enabled_fits: list[tuple[RecipeConfig, _Fit]] = []
    for cfg in configs:
        fit = _fit(cfg, inventory, by_name)
        if cfg.enabled:
            enabled_fits.append((cfg, fit))
        if cfg.gpu_count < 1:
            continue  # unparseable gpuCount: reported in the Valid condition only
        rows.append(
            {
                "gpuCount": cfg.gpu_count,
                "enabled": cfg.enabled,
                "fittingReplicas": fit.replicas,
                "nodes": list(fit.nodes),
                "gpuModels": list(fit.gpu_models),
                "message": _clip(
                    f"{fit.reason}: {fit.message}" if fit.replicas == 0 else "", MAX_CONFIG_MESSAGE
                ),
            }
        )

    fitting = [(c, f) for c, f in enabled_fits if f.replicas > 0]
    usable = [c for c, _ in enabled_fits if not c.invalid]
    reasons = {f.reason for _, f in enabled_fits}
    closest = next((r for r in _CLOSEST if r in reasons), _DISABLED)
    if not enabled_fits:
        fit_text = "all configurations disabled"
    else:
        fit_text = f"{len(fitting)}/{len(enabled_fits)} configs fit"
        if fitting:
            fit_text += (
                " (" + ", ".join(f"{f.replicas}x{c.gpu_count} GPU" for c, f in fitting) + ")"
            )
        else:
            fit_text += f" ({closest})"
    summary = fit_text + (f"; invalid: {invalid}" if invalid else "")

    conditions = [
        _cond(CONDITION_VALID, not invalid, _INVALID_RECIPE if invalid else "Valid", invalid)
    ]
    if usable:
        ready = _cond(CONDITION_READY, True, "Ready",
                      _plural(len(usable), "enabled valid configuration"))  # fmt: skip
    elif enabled_fits:
        ready = _cond(CONDITION_READY, False, _INVALID_RECIPE,
                      "every enabled configuration is invalid: " + invalid)  # fmt: skip
    else:
        ready = _cond(CONDITION_READY, False, _DISABLED, "every configuration is disabled")
    conditions.append(ready)
    if fitting or not enabled_fits:
        fits = _cond(CONDITION_FITS, bool(fitting), _FITS if fitting else _DISABLED, fit_text)
    else:
        messages = [f"gpuCount {c.gpu_count}: {f.message}" for c, f in enabled_fits
                    if f.reason == closest]  # fmt: skip
        fits = _cond(CONDITION_FITS, False, closest, "; ".join(messages))
    conditions.append(fits)

    status: dict[str, Any] = {
        "valid": not invalid,
        "summary": _clip(summary, MAX_SUMMARY),
        "configurations": rows,
        "conditions": conditions,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


# --- what the inventory depends on -------------------------------------------------


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
