"""The AIMRecipe ``status``: is the recipe valid, and where does each configuration fit now.

Pure and deterministic: the same recipe object and inventory give the same
dict, with no timestamps. Conditions come without ``lastTransitionTime`` and
``observedGeneration``; the caller merges them with the observed ones (so a
re-computation that changes nothing yields nothing to write).

Per configuration (in ``spec.configurations`` order) the fit of
:func:`~aim_controller.recipes.fit.config_fit`; ``message`` says why nothing
fits, as ``<reason code>: <message>`` with the selector's reason codes and words.
Disabled configurations are reported like the others (how they *would* fit)
but do not count in ``summary`` or the ``Fits`` condition.

Conditions: ``Valid`` (the checks the schema cannot make: engine args vs
gpuCount, ``--dtype`` vs precision, fp8 on CDNA2, ...), ``Ready`` (valid and
with at least one enabled configuration: selection can use it) and ``Fits``
(some enabled configuration fits at least one replica now).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aim_controller.api.v1alpha1 import MAX_SUMMARY
from aim_controller.recipes import GpuInventory
from aim_controller.recipes.fit import ConfigFit, config_fit, invalid_summary
from aim_controller.recipes.reasons import CLOSEST, Reason
from aim_controller.recipes.recipe import SOURCE_NAMESPACE, RecipeConfig, parse_recipe
from aim_controller.recipes.text import clip, plural

__all__ = ["CONDITION_FITS", "CONDITION_READY", "CONDITION_VALID", "recipe_fit_status"]

CONDITION_VALID: Final = "Valid"
CONDITION_READY: Final = "Ready"
CONDITION_FITS: Final = "Fits"


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": clip(message)}  # fmt: skip


def _invalid_object(generation: int | None, message: str) -> dict[str, Any]:
    bad = str(Reason.INVALID_RECIPE)
    status: dict[str, Any] = {
        "valid": False,
        "summary": clip(f"invalid: {message}", MAX_SUMMARY),
        "configurations": [],
        "conditions": [
            _cond(CONDITION_VALID, False, bad, message),
            _cond(CONDITION_READY, False, bad, message),
            _cond(CONDITION_FITS, False, bad, message),
        ],
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def _row(cfg: RecipeConfig, fit: ConfigFit) -> dict[str, Any]:
    why = f"{fit.rejection[0]}: {fit.rejection[1]}" if fit.rejection else ""
    return {
        "gpuCount": cfg.gpu_count,
        "enabled": cfg.enabled,
        "fittingReplicas": fit.replicas,
        "nodes": list(fit.nodes),
        "gpuModels": list(fit.gpu_models),
        "message": clip(why),
    }


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
    invalid = invalid_summary(configs)
    by_name = {n.name: n for n in inventory.nodes}

    rows: list[dict[str, Any]] = []
    enabled_fits: list[tuple[RecipeConfig, ConfigFit]] = []
    for cfg in configs:
        fit = config_fit(cfg, inventory, by_name)
        if cfg.enabled:
            enabled_fits.append((cfg, fit))
        if cfg.gpu_count >= 1:  # an unparseable gpuCount is reported in Valid only
            rows.append(_row(cfg, fit))

    fitting = [(c, f) for c, f in enabled_fits if f.replicas > 0]
    usable = [c for c, _ in enabled_fits if not c.invalid]
    reasons = {f.rejection[0] for _, f in enabled_fits if f.rejection}
    closest = next((r for r in CLOSEST if r in reasons), Reason.DISABLED)
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

    bad = str(Reason.INVALID_RECIPE)
    conditions = [_cond(CONDITION_VALID, not invalid, bad if invalid else "Valid", invalid)]
    if usable:
        ready = _cond(CONDITION_READY, True, "Ready",
                      plural(len(usable), "enabled valid configuration"))  # fmt: skip
    elif enabled_fits:
        ready = _cond(CONDITION_READY, False, bad,
                      "every enabled configuration is invalid: " + invalid)  # fmt: skip
    else:
        ready = _cond(CONDITION_READY, False, str(Reason.DISABLED),
                      "every configuration is disabled")  # fmt: skip
    conditions.append(ready)
    if fitting or not enabled_fits:
        reason = Reason.FITS if fitting else Reason.DISABLED
        fits = _cond(CONDITION_FITS, bool(fitting), str(reason), fit_text)
    else:
        messages = [f"gpuCount {c.gpu_count}: {f.rejection[1]}" for c, f in enabled_fits
                    if f.rejection and f.rejection[0] == closest]  # fmt: skip
        fits = _cond(CONDITION_FITS, False, str(closest), "; ".join(messages))
    conditions.append(fits)

    status: dict[str, Any] = {
        "valid": not invalid,
        "summary": clip(summary, MAX_SUMMARY),
        "configurations": rows,
        "conditions": conditions,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status
