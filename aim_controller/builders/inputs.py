"""What the builders are told about the recipe decision: :class:`ChosenRecipe`.

The reconciler fills one from the recipe engine's decision (``Decision.chosen``,
``Decision.tolerations`` and ``Decision.to_status()``). Of the recipe engine the
builders see only :class:`~aim_controller.recipes.identity.ConfigId`, the one
identity of a configuration; this value is the whole contract between them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aim_controller.api.v1alpha1 import RECIPE_SOURCES
from aim_controller.recipes.identity import SOURCE_NAMESPACE, ConfigId

__all__ = ["ChosenRecipe", "SharedCache"]


def _frozen_str_map(m: Mapping[str, object], what: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for k, v in sorted(m.items()):
        if not isinstance(k, str) or not k:
            raise ValueError(f"{what}: invalid key {k!r}")
        # Quantities may arrive as ints (the API allows 4 as well as "4").
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError(f"{what}[{k}]: expected a string, got {v!r}")
        out[k] = str(v)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class ChosenRecipe:
    """The selected recipe configuration, as the builders need it.

    Invariants (checked in ``__post_init__``, ValueError otherwise):

    * ``id.source`` is one of "namespace", "builtin", "estimated"; ``id.namespace``
      is set exactly for "namespace" recipes.
    * ``id.gpu_count`` >= 1. It is the tensor-parallel size the engine args are
      forced to (unless the endpoint's ``spec.resources.gpuCount`` overrides it).
    * ``device_ids`` are lowercase PCI device ids without ``0x``, sorted, unique;
      empty means "no device-id node affinity" (only the GPU request constrains
      scheduling).
    * ``requests``/``limits`` map resource names to quantity strings (ints are
      stringified), sorted by name; they are read-only views.
    * ``env`` maps variable names to values (the recipe configuration's ``env``).
    * ``tolerations`` are core/v1 Toleration dicts for the GPU nodes' taints.
    * ``selection_record`` is JSON-able (``Decision.to_status()``; datetimes are
      turned into strings) and copied; it is only
      *written* into the ConfigMap and never influences the pod template, so a
      re-selection of the same configuration (new timestamps, scores) does not
      restart GPU pods.

    Immutable (copying returns the same object) but not hashable (it holds
    mappings); compare with ``==``.
    """

    id: ConfigId
    hardware: str
    device_ids: tuple[str, ...]
    precision: str
    backend: str
    args: tuple[str, ...]
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    estimated: bool = False
    selection_record: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of the engine container (recipe configuration ``env``)."""
    image: str | None = None
    """The recipe's validated image (AIMRecipe ``spec.image``); the endpoint's
    ``spec.image`` overrides it, and it overrides the operator's per-backend default."""

    def __post_init__(self) -> None:
        cid = self.id
        if cid.source not in RECIPE_SOURCES:
            raise ValueError(f"source must be one of {RECIPE_SOURCES}, got {cid.source!r}")
        if (cid.source == SOURCE_NAMESPACE) != bool(cid.namespace):
            raise ValueError("the recipe namespace is set exactly for namespace recipes")
        if not cid.name:
            raise ValueError("the recipe name must not be empty")
        if isinstance(cid.gpu_count, bool) or cid.gpu_count < 1:
            raise ValueError(f"gpu_count must be >= 1, got {cid.gpu_count!r}")
        if not all(isinstance(a, str) for a in self.args):
            raise ValueError("args must be strings")
        ids = sorted({d.lower().removeprefix("0x") for d in self.device_ids})
        object.__setattr__(self, "device_ids", tuple(ids))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "requests", _frozen_str_map(self.requests, "requests"))
        object.__setattr__(self, "limits", _frozen_str_map(self.limits, "limits"))
        object.__setattr__(self, "env", _frozen_str_map(self.env, "env"))
        object.__setattr__(
            self, "tolerations", tuple(MappingProxyType(dict(t)) for t in self.tolerations)
        )
        # An owned, JSON-normalized copy (datetimes become strings), so later edits of
        # the caller's dict cannot change what gets written.
        record = json.loads(json.dumps(dict(self.selection_record), default=str))
        object.__setattr__(self, "selection_record", MappingProxyType(record))

    def __copy__(self) -> ChosenRecipe:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> ChosenRecipe:
        return self

    @property
    def gpu_count(self) -> int:
        return self.id.gpu_count

    def identity(self) -> dict[str, Any]:
        """The chosen configuration as the ConfigMap records it (and the config
        checksum covers): its id with what it runs as."""
        return {
            "backend": self.backend,
            "estimated": self.estimated,
            "gpuCount": self.id.gpu_count,
            "hardware": self.hardware,
            "precision": self.precision,
            "recipeName": self.id.name,
            "recipeNamespace": self.id.recipe_namespace,
            "source": self.id.source,
        }


@dataclass(frozen=True, slots=True)
class SharedCache:
    """An AIMCache that holds the endpoint's model Ready: the pods mount its PVC
    read-only at ``mount_path`` and the engine loads the model from ``model_path``
    (the layout of :mod:`aim_controller.modelcache.layout`), offline.

    Invariants: ``claim_name`` is not empty; ``model_path`` lies under ``mount_path``.
    """

    cache_name: str
    claim_name: str
    model_path: str
    mount_path: str

    def __post_init__(self) -> None:
        if not self.claim_name:
            raise ValueError("the AIMCache's PVC name must not be empty")
        if not self.model_path.startswith(self.mount_path.rstrip("/") + "/"):
            raise ValueError(f"{self.model_path!r} is not under {self.mount_path!r}")
