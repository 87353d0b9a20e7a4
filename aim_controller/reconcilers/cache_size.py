"""How much room a cached model is expected to take, for the AIMCache size guard. Pure.

Order: the model's ``sizeHint`` (bytes); else the built-in catalog (the model has
recipes there: parameters from its id, the catalog's default precision, i.e. that of
its first recipe, bf16 for every shipped model); else the model id alone (a size token
such as ``7B``, the precision the id names, bf16 otherwise); else unknown.
Bytes = parameters x bytes per parameter x :data:`OVERHEAD` (tokenizer, config and
the odd duplicate shard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from aim_controller.api.v1alpha1.cache import CachedModel
from aim_controller.builders.quantity import try_parse_quantity
from aim_controller.recipes import RecipeIndex
from aim_controller.recipes.estimate import estimate_precision, model_size
from aim_controller.recipes.recipe import BYTES_PER_PARAM

__all__ = ["OVERHEAD", "ExpectedSize", "expected_size", "human_bytes"]

OVERHEAD = 1.1


@dataclass(frozen=True, slots=True)
class ExpectedSize:
    """``bytes`` is None exactly when the size is unknown; ``source`` says where a known
    one comes from (for status messages)."""

    bytes: int | None
    source: str


def expected_size(model: CachedModel, catalog: RecipeIndex) -> ExpectedSize:
    if model.size_hint is not None:
        hint = try_parse_quantity(model.size_hint)
        if hint is not None:
            return ExpectedSize(math.ceil(hint), "sizeHint")
    size = model_size(model.id, None)
    recipes = catalog.lookup(model.id)
    if size is not None and recipes:
        precision = recipes[0].precision
        source = f"catalog: {size.params / 1e9:.3g}B parameters, {precision}"
    elif size is not None:
        precision = estimate_precision(model.id, None)[0]
        source = f"model id: {size.params / 1e9:.3g}B parameters, {precision}"
    else:
        return ExpectedSize(None, "unknown: no sizeHint, and no parameter count in the "
                                  "catalog or the model id")
    bpp = BYTES_PER_PARAM.get(precision, 2.0)
    return ExpectedSize(round(size.params * bpp * OVERHEAD), source)


_UNITS = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def human_bytes(n: int | Fraction) -> str:
    """``86000000000`` -> ``"80.1Gi"``; small values stay in bytes."""
    for unit, size in _UNITS:
        if n >= size:
            value = float(n) / size
            return f"{value:.1f}{unit}".replace(".0" + unit, unit)
    return f"{int(n)}B"
