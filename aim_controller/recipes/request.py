"""What an AIMEndpoint asks of the selector, and the previous decision it carries.

``inputs_hash`` covers exactly what may change the choice of recipe: the
model id (case-insensitive, as matching is), the ``recipe`` section with its
defaults applied, and ``resources.gpuCount``. A previous decision is only
sticky while the hash is unchanged. ``scaling.minReplicas`` is deliberately
not part of it: scaling out must not move a running endpoint to another
recipe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .recipe import normalize_precision

__all__ = ["OPTIMIZE_FOR", "EndpointRequest", "PreviousChoice", "parse_endpoint", "parse_previous"]

OPTIMIZE_FOR = ("throughput", "latency", "cost")
DEFAULT_BACKEND = "vllm"  # the API's default for spec.recipe.backend


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """Normalized selection inputs of one endpoint.

    ``gpu_count`` is the count a configuration must have (``resources.
    gpuCount``, else ``recipe.gpuCount``), None when free; ``precision`` is
    None when free; ``backend`` defaults to vllm as in the API. In both modes
    set fields narrow the candidates (the API's contract: with ``autoSelect``
    they "only narrow", without it ``gpuCount`` is required and the recipe
    must match). ``replicas`` is ``max(1, minReplicas)``: a scale-to-zero
    endpoint must still fit once.
    """

    model_id: str
    size_hint: str | None
    auto_select: bool
    gpu_count: int | None
    precision: str | None
    backend: str | None
    optimize_for: str
    replicas: int
    inputs_hash: str


def _opt_int(v: object, what: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return v


def inputs_hash(spec: Mapping[str, Any]) -> str:
    """Stable over key order and defaults; tolerates malformed specs (hashes what is there)."""
    model = spec.get("model")
    raw_recipe = spec.get("recipe")
    resources = spec.get("resources")
    recipe: Any = raw_recipe
    if raw_recipe is None or isinstance(raw_recipe, Mapping):
        # Defaults applied and unset (None) fields dropped, so a spec read raw and the
        # same spec dumped from the API model (defaults filled in) hash alike.
        set_fields = {k: v for k, v in (raw_recipe or {}).items() if v is not None}
        recipe = {"autoSelect": True, "optimizeFor": "throughput", "backend": DEFAULT_BACKEND}
        recipe |= set_fields
    payload = {
        "modelId": str(model.get("id", "") if isinstance(model, Mapping) else model)
        .strip()
        .lower(),
        "recipe": recipe,
        "gpuCount": resources.get("gpuCount") if isinstance(resources, Mapping) else None,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_endpoint(spec: Mapping[str, Any]) -> EndpointRequest:
    """Raises ValueError with a user-facing message on malformed input."""
    model = spec.get("model") or {}
    if not isinstance(model, Mapping):
        raise ValueError("spec.model must be an object")
    model_id = model.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError("spec.model.id is required")
    hint = model.get("sizeHint")
    recipe = spec.get("recipe") or {}
    resources = spec.get("resources") or {}
    scaling = spec.get("scaling") or {}
    if not all(isinstance(x, Mapping) for x in (recipe, resources, scaling)):
        raise ValueError("spec.recipe, spec.resources and spec.scaling must be objects")
    auto = recipe.get("autoSelect", True) is not False
    optimize = recipe.get("optimizeFor") or "throughput"
    if optimize not in OPTIMIZE_FOR:
        raise ValueError(f"spec.recipe.optimizeFor must be one of {', '.join(OPTIMIZE_FOR)}")
    override = _opt_int(resources.get("gpuCount"), "spec.resources.gpuCount")
    manual_count = _opt_int(recipe.get("gpuCount"), "spec.recipe.gpuCount")
    if not auto and manual_count is None:
        raise ValueError("spec.recipe.gpuCount is required when spec.recipe.autoSelect is false")
    min_replicas = scaling.get("minReplicas", 1)
    if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
        raise ValueError("spec.scaling.minReplicas must be a non-negative integer")
    precision = recipe.get("precision")
    backend = recipe.get("backend")
    return EndpointRequest(
        model_id=model_id.strip(),
        size_hint=str(hint) if hint not in (None, "") else None,
        auto_select=auto,
        gpu_count=override or manual_count,
        precision=normalize_precision(precision)
        if isinstance(precision, str) and precision
        else None,
        backend=backend.strip().lower()
        if isinstance(backend, str) and backend
        else DEFAULT_BACKEND,
        optimize_for=optimize,
        replicas=max(1, min_replicas),
        inputs_hash=inputs_hash(spec),
    )


@dataclass(frozen=True, slots=True)
class PreviousChoice:
    """The chosen candidate of the previous decision (from ``status``)."""

    source: str
    namespace: str
    name: str
    gpu_count: int
    hardware: str
    precision: str
    backend: str
    inputs_hash: str

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.source, self.namespace, self.name, self.gpu_count)

    @property
    def ref(self) -> str:
        return f"{self.namespace or self.source}/{self.name}"


def parse_previous(record: Mapping[str, Any] | None) -> PreviousChoice | None:
    """None when there is no previous record or it chose nothing."""
    if not record or not record.get("recipeName"):
        return None
    n = record.get("gpuCount")
    if isinstance(n, bool) or not isinstance(n, int):
        return None
    return PreviousChoice(
        source=str(record.get("source") or ""),
        namespace=str(record.get("recipeNamespace") or ""),
        name=str(record["recipeName"]),
        gpu_count=n,
        hardware=str(record.get("hardware") or ""),
        precision=str(record.get("precision") or ""),
        backend=str(record.get("backend") or ""),
        inputs_hash=str(record.get("inputsHash") or ""),
    )
