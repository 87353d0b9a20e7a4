"""The built-in recipe catalog: AIMRecipe manifests shipped in ``catalog/*.yaml``.

Read once per process through :mod:`importlib.resources` (works from a
wheel or a zip). Every document must be an ``aim.engine.amd.com/v1alpha1``
``AIMRecipe``; a malformed packaged file is a build bug and raises.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

from aim_controller.api.v1alpha1 import API_VERSION
from aim_controller.api.v1alpha1 import KIND_AIM_RECIPE as KIND

from .recipe import SOURCE_BUILTIN, RecipeIndex

__all__ = ["CATALOG_LABEL", "builtin_index", "load_builtin_catalog"]

CATALOG_LABEL = "aim.engine.amd.com/catalog"


@cache
def _load() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    folder = resources.files(__package__).joinpath("catalog")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(entry.read_text(encoding="utf-8")):
            if doc is None:
                continue
            if (
                not isinstance(doc, dict)
                or doc.get("apiVersion") != API_VERSION
                or doc.get("kind") != KIND
            ):
                raise ValueError(
                    f"catalog/{entry.name}: every document must be an {API_VERSION} {KIND}"
                )
            docs.append(doc)
    names = [d["metadata"]["name"] for d in docs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate catalog recipe names: {', '.join(dupes)}")
    return tuple(docs)


def load_builtin_catalog() -> list[dict[str, Any]]:
    """The catalog's AIMRecipe objects (fresh copies; the cache stays pristine)."""
    return copy.deepcopy(list(_load()))


@cache
def builtin_index() -> RecipeIndex:
    """The catalog indexed by model id, shared by all selections."""
    return RecipeIndex.build(_load(), SOURCE_BUILTIN)
