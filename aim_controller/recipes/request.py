"""What an AIMEndpoint asks of the selector, and the previous decision it carries.

Built from the validated API model (:class:`~aim_controller.api.v1alpha1.AIMEndpointSpec`):
its defaults are the only defaults. ``inputs_hash`` covers exactly what may change
the choice of recipe: the model id (case-insensitive, as matching is), the
``recipe`` section with its defaults applied, and ``resources.gpuCount``. A
previous decision is only sticky while the hash is unchanged.
``scaling.minReplicas`` is deliberately not part of it: scaling out must not move
a running endpoint to another recipe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpointSpec

from .backoff import Abandoned, parse_abandoned, parse_time
from .identity import ConfigId

__all__ = ["EndpointRequest", "PreviousChoice", "inputs_hash"]


def inputs_hash(spec: AIMEndpointSpec) -> str:
    """Stable over key order; unset optional fields are left out, so adding a new
    optional field to the API does not move existing endpoints."""
    payload = {
        "modelId": spec.model.id.strip().lower(),
        "recipe": spec.recipe.model_dump(mode="json", exclude_none=True),
        "gpuCount": spec.resources.gpu_count if spec.resources else None,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """Normalized selection inputs of one endpoint.

    ``gpu_count`` is the count a configuration must have (``resources.
    gpuCount``, else ``recipe.gpuCount``), None when free; ``precision`` is
    None when free. In both modes set fields narrow the candidates (the API's
    contract: with ``autoSelect`` they "only narrow", without it ``gpuCount`` is
    required and the recipe must match). ``replicas`` is ``max(1, minReplicas)``:
    a scale-to-zero endpoint must still fit once.
    """

    model_id: str
    size_hint: str | None
    auto_select: bool
    gpu_count: int | None
    precision: str | None
    backend: str
    hardware: str | None
    optimize_for: str
    replicas: int
    inputs_hash: str

    @classmethod
    def from_spec(cls, spec: AIMEndpointSpec) -> EndpointRequest:
        """Raises ValueError for what the schema cannot say but CEL rejects at admission
        (the check is repeated for objects that never went through admission)."""
        recipe = spec.recipe
        override = spec.resources.gpu_count if spec.resources else None
        if not recipe.auto_select and recipe.gpu_count is None:
            raise ValueError(
                "spec.recipe.gpuCount is required when spec.recipe.autoSelect is false"
            )
        return cls(
            model_id=spec.model.id.strip(),
            size_hint=spec.model.size_hint or None,
            auto_select=recipe.auto_select,
            gpu_count=override or recipe.gpu_count,
            precision=recipe.precision,
            backend=recipe.backend,
            hardware=recipe.hardware,
            optimize_for=recipe.optimize_for,
            replicas=max(1, spec.scaling.min_replicas),
            inputs_hash=inputs_hash(spec),
        )


@dataclass(frozen=True, slots=True)
class PreviousChoice:
    """The chosen configuration of the previous decision (from ``status.recipe``), with
    what it was chosen as (hardware, precision, backend), for (``inputs_hash``) and when
    (``selected_at``), and the configurations abandoned so far."""

    id: ConfigId
    hardware: str
    precision: str
    backend: str
    inputs_hash: str
    selected_at: datetime | None = None
    abandoned: tuple[Abandoned, ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> PreviousChoice | None:
        """None when there is no previous record or it chose nothing."""
        cid = ConfigId.from_record(record)
        if cid is None or record is None:
            return None
        return cls(
            id=cid,
            hardware=str(record.get("hardware") or ""),
            precision=str(record.get("precision") or ""),
            backend=str(record.get("backend") or ""),
            inputs_hash=str(record.get("inputsHash") or ""),
            selected_at=parse_time(record.get("selectedAt")),
            abandoned=parse_abandoned(record),
        )
