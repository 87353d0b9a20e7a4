"""Estimated configurations for models that have no recipe.

Model size comes from ``spec.model.sizeHint`` when set, else from the model
id: the largest ``<number>B`` (or ``M``/``T``) token that is not an MoE
active-parameter token (``Qwen2.5-7B`` -> 7e9, ``Llama-3.1-70B`` -> 70e9,
``Qwen3-30B-A3B`` -> 30e9 total with 3e9 active, ``Mixtral-8x7B`` -> 56e9,
an over-estimate on purpose).

Precision: the manual ``recipe.precision`` if given, else what the id says
(``-AWQ``, ``-GPTQ``, ``-FP8``, ``-Int8``/``W8A8``, ``-Int4``; such
checkpoints are pre-quantized and vLLM reads the scheme from their config),
else ``bfloat16``. Online quantization is only offered for fp8 (vLLM
``--quantization fp8``); awq/gptq/int4 need a pre-quantized checkpoint.

Memory rule: the weights (``params x bytes/param``) must be at most 60% of
the VRAM of the tensor-parallel group. With ``--gpu-memory-utilization 0.9``
and ~20% of the weights for activations and runtime overhead, that leaves at
least 18% of the group's VRAM for the KV cache. The GPU count is the
smallest of 1, 2, 4, 8 that satisfies the rule on each usable hardware, and
at most the largest node's allocatable GPUs.

``--max-model-len`` is left to vLLM: it defaults to the model's own limit, a
value we cannot know, and a larger explicit value makes vLLM refuse to start.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from aim_controller.api.v1alpha1 import DEFAULT_BACKEND, GPU_RESOURCE

from . import gpus
from .inventory import GpuInventory
from .perfmodel import estimate_performance
from .recipe import BYTES_PER_PARAM, SOURCE_ESTIMATED, Performance, RecipeConfig

__all__ = [
    "WEIGHTS_FRACTION",
    "EstimateOption",
    "ModelSize",
    "estimate_options",
    "estimate_precision",
    "model_size",
    "parse_size",
]

WEIGHTS_FRACTION = 0.6
GPU_COUNTS = (1, 2, 4, 8)
GIB = 1024**3

_UNITS = {"M": 1e6, "B": 1e9, "T": 1e12}
_SIZE_RE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([BMT])(?![A-Za-z0-9])", re.IGNORECASE)
_EXPERTS_RE = re.compile(r"(?<![A-Za-z0-9.])(\d+)x(\d+(?:\.\d+)?)B(?![A-Za-z0-9])", re.IGNORECASE)
_ACTIVE_RE = re.compile(r"(?<![A-Za-z0-9.])A(\d+(?:\.\d+)?)B(?![A-Za-z0-9])", re.IGNORECASE)
_HINT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([BMT])?\s*$", re.IGNORECASE)
_PREQUANTIZED = (
    (re.compile(r"(?<![a-z0-9])awq(?![a-z0-9])", re.I), "awq"),
    (re.compile(r"(?<![a-z0-9])gptq(?![a-z0-9])", re.I), "gptq"),
    (re.compile(r"(?<![a-z0-9])fp8(?![a-z0-9])", re.I), "fp8"),
    (re.compile(r"(?<![a-z0-9])(int8|w8a8)(?![a-z0-9])", re.I), "int8"),
    (re.compile(r"(?<![a-z0-9])(int4|w4a16)(?![a-z0-9])", re.I), "int4"),
)
_NEEDS_CHECKPOINT = frozenset({"awq", "gptq", "int4", "int8", "mxfp4"})


@dataclass(frozen=True, slots=True)
class ModelSize:
    params: float
    active_params: float | None
    source: str  # "sizeHint" | "model id"


def parse_size(text: str) -> float | None:
    """``"7B"`` -> 7e9, ``"1.5b"`` -> 1.5e9, ``"125M"`` -> 1.25e8; ``"7e9"`` works too."""
    m = _HINT_RE.match(text)
    if m:
        value = float(m.group(1))
        unit = (m.group(2) or "").upper()
        if unit:
            return value * _UNITS[unit]
        return value if value >= 1e6 else value * 1e9  # a bare "70" means 70B
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 1e6 and math.isfinite(value) else None


def model_size(model_id: str, size_hint: str | None) -> ModelSize | None:
    name = model_id.rsplit("/", 1)[-1]
    active_m = _ACTIVE_RE.search(name)
    active = float(active_m.group(1)) * 1e9 if active_m else None
    if size_hint:
        hinted = parse_size(size_hint)
        if hinted:
            return ModelSize(hinted, active if active and active < hinted else None, "sizeHint")
    sizes = [int(m.group(1)) * float(m.group(2)) * 1e9 for m in _EXPERTS_RE.finditer(name)]
    stripped = _EXPERTS_RE.sub(" ", name)
    stripped = _ACTIVE_RE.sub(" ", stripped)
    sizes += [float(m.group(1)) * _UNITS[m.group(2).upper()] for m in _SIZE_RE.finditer(stripped)]
    if not sizes:
        return None
    total = max(sizes)
    return ModelSize(total, active if active and active < total else None, "model id")


def estimate_precision(model_id: str, requested: str | None) -> tuple[str, bool]:
    """(precision, pre-quantized checkpoint?)"""
    named = next((p for rx, p in _PREQUANTIZED if rx.search(model_id)), None)
    if requested:
        return requested, named == requested
    return (named, True) if named else ("bfloat16", False)


@dataclass(frozen=True, slots=True)
class EstimateOption:
    """An estimated configuration, or why one hardware cannot host the model."""

    config: RecipeConfig
    problem: str = ""  # non-empty: the model does not fit (reason InsufficientGpuMemory)
    # Hardware that cannot run the precision is marked in ``config.invalid`` instead.


def _args(model_id: str, gpu_n: int, precision: str, prequantized: bool) -> tuple[str, ...]:
    dtype = "float16" if precision in ("float16", "awq", "gptq", "int4") else "bfloat16"
    if precision == "float32":
        dtype = "float32"
    args = ["--model", model_id, "--tensor-parallel-size", str(gpu_n), "--dtype", dtype]
    if precision == "fp8" and not prequantized:
        args += ["--quantization", "fp8", "--kv-cache-dtype", "fp8"]
    args += ["--gpu-memory-utilization", "0.9", "--port", "8000"]
    return tuple(args)


def _resources(gpu_n: int, weights_gib: float) -> MappingProxyType[str, MappingProxyType[str, str]]:
    mem = max(32, math.ceil((weights_gib + 16) / 16) * 16)
    cpu = max(4, 4 * gpu_n)
    return MappingProxyType(
        {
            "requests": MappingProxyType(
                {GPU_RESOURCE: str(gpu_n), "cpu": str(cpu), "memory": f"{mem}Gi"}
            ),
            "limits": MappingProxyType(
                {GPU_RESOURCE: str(gpu_n), "cpu": str(2 * cpu), "memory": f"{2 * mem}Gi"}
            ),
        }
    )


def estimate_options(
    model_id: str,
    size: ModelSize,
    inventory: GpuInventory,
    *,
    precision: str | None = None,
    gpu_count: int | None = None,
    also: Iterable[str] = (),
) -> list[EstimateOption] | str:
    """One option per usable hardware (MI250/MI250X pools sharing nodes count once).

    ``also`` names hardware to estimate for even without usable nodes (the
    previous choice, so that it can stay sticky while its nodes are away).
    Returns a message instead when the precision cannot be served from this
    checkpoint.
    """
    prec, prequantized = estimate_precision(model_id, precision)
    if prec in _NEEDS_CHECKPOINT and not prequantized:
        return (
            f"precision {prec} needs a pre-quantized checkpoint; {model_id} does not look like one"
        )
    bpp = BYTES_PER_PARAM.get(prec)
    if bpp is None:
        return f"cannot estimate memory for precision {prec!r}"
    weights = size.params * bpp
    out: list[EstimateOption] = []
    seen_node_sets: set[tuple[frozenset[str], frozenset[str]]] = set()
    extra = sorted({h for h in also if h in gpus.MODELS})
    # Newest first, so MI250X wins over MI250 on shared nodes.
    for hw in [*inventory.hardware, *(h for h in extra if h not in inventory.pools)]:
        pool = inventory.pools.get(hw)
        if pool is not None and hw not in extra:
            # One option per set of nodes for interchangeable models (MI250/MI250X);
            # different models on the same (mixed) nodes are each an option.
            nodes = (frozenset(n for n, _ in (*pool.free_by_node, *pool.mixed_free_by_node)),
                     gpus.INTERCHANGEABLE.get(hw, frozenset({hw})))
            if nodes in seen_node_sets:
                continue
            seen_node_sets.add(nodes)
        model = gpus.MODELS[hw]
        vram = model.vram_gib * GIB
        needed = next((g for g in GPU_COUNTS if weights <= WEIGHTS_FRACTION * g * vram), None)
        unsupported = ""
        if prec in ("fp8", "mxfp4") and not model.fp8:
            unsupported = f"{hw} ({model.generation}) has no {prec} support"
        problem = ""
        chosen = gpu_count or needed or GPU_COUNTS[-1]
        if needed is None or chosen < needed:
            need = f"at least {needed}" if needed else "more than 8"
            problem = (
                f"{weights / 1e9:.0f} GB of {prec} weights need {need} {hw} GPUs "
                f"(weights <= {WEIGHTS_FRACTION:.0%} of {model.vram_gib} GiB per GPU)"
            )
        perf: Performance = estimate_performance(hw, size.params, prec, chosen, size.active_params)
        config = RecipeConfig(
            source=SOURCE_ESTIMATED,
            namespace=None,
            name=f"estimated-{hw.lower()}-{prec}",
            model_id=model_id,
            hardware=hw,
            precision=prec,
            backend=DEFAULT_BACKEND,
            gpu_count=chosen,
            enabled=True,
            args=_args(model_id, chosen, prec, prequantized),
            resources=_resources(chosen, weights / GIB),
            performance=perf,
            reference_gpu_count=chosen,
            invalid=unsupported,
        )
        out.append(EstimateOption(config, problem))
    return out
