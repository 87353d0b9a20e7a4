"""Configurations derived for a GPU count that no configuration of a recipe has.

An endpoint that asks for ``gpuCount: n`` (manual mode, or ``resources.gpuCount``)
of a model whose recipes only list other counts still gets the recipe's hardware,
precision and backend: the configuration with the nearest count (the smaller one on
a tie) is scaled to ``n`` GPUs, as the estimator builds its configurations. The
tensor-parallel size becomes ``n``, ``amd.com/gpu`` requests and limits become
``n``, and CPU and memory scale by ``n / k``. A configuration that uses pipeline or
data parallelism is not derived from (how to split ``n`` between them is a choice
the recipe's author has to make).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from fractions import Fraction
from types import MappingProxyType

from aim_controller.api.v1alpha1 import GPU_RESOURCE

from .quantity import parse_quantity
from .recipe import Recipe, RecipeConfig, arg_value

__all__ = ["derive_configs"]

_TP_FLAGS = ("--tensor-parallel-size", "-tp", "--tp-size")
_OTHER_PARALLEL = ("--pipeline-parallel-size", "-pp", "--pp-size",
                   "--data-parallel-size", "-dp", "--dp-size")
_GI = 2**30


def _scaled_args(args: tuple[str, ...], n: int) -> tuple[str, ...] | None:
    for flag in _OTHER_PARALLEL:
        v = arg_value(args, flag)
        if v is not None and v.strip() != "1":
            return None
    out: list[str] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        flag, eq, _ = a.partition("=")
        if flag.replace("_", "-") in _TP_FLAGS:
            skip = not eq and i + 1 < len(args)
            continue
        out.append(a)
    return (*out, "--tensor-parallel-size", str(n))


def _scaled_quantity(name: str, value: str, n: int, k: int) -> str:
    if name == GPU_RESOURCE:
        return str(n)
    q = parse_quantity(value) * Fraction(n, k)
    if name == "memory":
        return f"{math.ceil(q / _GI)}Gi"
    if name == "cpu":
        milli = math.ceil(q * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    return str(math.ceil(q))


def _scaled_resources(
    resources: Mapping[str, Mapping[str, str]], n: int, k: int
) -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({
        part: MappingProxyType({name: _scaled_quantity(name, v, n, k)
                                for name, v in values.items()})
        for part, values in resources.items()
    })


def derive_configs(recipes: Iterable[Recipe], gpu_count: int) -> list[RecipeConfig]:
    """One derived configuration with ``gpu_count`` GPUs per recipe that has none, from
    its nearest valid enabled configuration; recipes it cannot be derived for are
    skipped."""
    out: list[RecipeConfig] = []
    for r in recipes:
        if any(c.gpu_count == gpu_count for c in r.configs):
            continue
        bases = [c for c in r.configs if c.enabled and not c.invalid and c.gpu_count > 0]
        if not bases:
            continue
        base = min(bases, key=lambda c: (abs(c.gpu_count - gpu_count), c.gpu_count))
        args = _scaled_args(base.args, gpu_count)
        if args is None:
            continue
        out.append(replace(
            base, gpu_count=gpu_count, args=args, index=None, derived_from=base.gpu_count,
            resources=_scaled_resources(base.resources, gpu_count, base.gpu_count),
        ))
    return out
