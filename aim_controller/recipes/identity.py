"""Which recipe configuration: one identity from selection to status to builders.

A configuration is named by its recipe (source, namespace, name) and its GPU
count, which is unique within a recipe. The same value keys the selector's
candidates, is written to ``status.recipe`` (``source``, ``recipeNamespace``,
``recipeName``, ``gpuCount``), is read back as the previous choice, and tells the
builders what they build for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SOURCE_BUILTIN",
    "SOURCE_ESTIMATED",
    "SOURCE_NAMESPACE",
    "SOURCE_RANK",
    "ConfigId",
]

SOURCE_NAMESPACE: Final = "namespace"
SOURCE_BUILTIN: Final = "builtin"
SOURCE_ESTIMATED: Final = "estimated"
# Precedence of sources when everything else ties (and in listings).
SOURCE_RANK: Mapping[str, int] = {SOURCE_NAMESPACE: 0, SOURCE_BUILTIN: 1, SOURCE_ESTIMATED: 2}


@dataclass(frozen=True, slots=True, order=True)
class ConfigId:
    """One configuration of one recipe.

    Invariant: ``namespace`` is non-empty exactly for namespace recipes (builtin and
    estimated configurations have none); ``gpu_count`` is the configuration's GPUs
    per replica (0 only for an unparseable configuration, which is never chosen).
    """

    source: str
    namespace: str
    name: str
    gpu_count: int

    @property
    def ref(self) -> str:
        """``<namespace>/<name>`` for namespace recipes, ``<source>/<name>`` otherwise."""
        return f"{self.namespace or self.source}/{self.name}"

    @property
    def recipe_namespace(self) -> str | None:
        return self.namespace or None

    def to_record(self) -> dict[str, Any]:
        """The identity's keys of a ``status.recipe`` record (no nulls)."""
        out: dict[str, Any] = {"recipeName": self.name}
        if self.namespace:
            out["recipeNamespace"] = self.namespace
        out["source"] = self.source
        out["gpuCount"] = self.gpu_count
        return out

    @classmethod
    def from_record(cls, record: object) -> ConfigId | None:
        """The identity a ``status.recipe`` record names; None when it chose nothing."""
        if not isinstance(record, Mapping) or not record.get("recipeName"):
            return None
        n = record.get("gpuCount")
        if isinstance(n, bool) or not isinstance(n, int):
            return None
        return cls(
            source=str(record.get("source") or ""),
            namespace=str(record.get("recipeNamespace") or ""),
            name=str(record["recipeName"]),
            gpu_count=n,
        )
