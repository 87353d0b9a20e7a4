"""A deliberately simple, deterministic serving-performance model.

Used to (a) scale a recipe's recipe-level ``performance`` numbers from its
reference configuration to its other GPU counts and (b) estimate numbers
when a recipe has none or when no recipe exists. It ranks options; it does
not predict benchmarks.

* Tensor parallelism: throughput scales as ``G**0.8`` (all-reduce cost),
  latency as ``G**-0.5``.
* One-GPU decode is memory-bound: a step reads the weights once
  (``params x bytes/param``; for MoE the active experts plus a quarter of the
  rest, since a batch touches many experts) at 60% of HBM bandwidth. At the
  nominal batch of 64, throughput is half of ``64 / step`` (attention, KV reads
  and scheduling take the rest).
* Latency is time to first token for a 1,024-token prompt at 40% of peak
  matrix throughput plus four decode steps.
* Quantized weights cost dequantization: fp8/int8 keep 80% of their
  bandwidth gain, awq/gptq/int4 60%. fp8/int8 double matrix throughput only on
  hardware with native fp8 (CDNA3+).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import gpus
from .recipe import BYTES_PER_PARAM, Performance

__all__ = [
    "DEFAULT_PARAMS",
    "estimate_performance",
    "scale_latency",
    "scale_tokens_per_second",
]

TP_THROUGHPUT_EXPONENT = 0.8
TP_LATENCY_EXPONENT = 0.5
NOMINAL_BATCH = 64
PROMPT_TOKENS = 1024
DEFAULT_PARAMS = 8e9  # stands in for an unknown model size when only hardware differs
_EFFICIENCY: Mapping[str, float] = {"fp8": 0.8, "int8": 0.8, "int4": 0.6, "awq": 0.6, "gptq": 0.6}
_LOW_PRECISION_MATMUL = frozenset({"fp8", "int8"})


def scale_tokens_per_second(tps: float, from_gpus: int, to_gpus: int) -> float:
    return float(tps * (to_gpus / from_gpus) ** TP_THROUGHPUT_EXPONENT)


def scale_latency(latency_ms: float, from_gpus: int, to_gpus: int) -> float:
    return float(latency_ms * (from_gpus / to_gpus) ** TP_LATENCY_EXPONENT)


def estimate_performance(
    hardware: str,
    params: float,
    precision: str,
    gpu_count: int,
    active_params: float | None = None,
) -> Performance:
    """Estimated throughput (tokens/s, whole replica) and latency (ms) at ``gpu_count`` GPUs."""
    model = gpus.MODELS[hardware]
    bpp = BYTES_PER_PARAM.get(precision, 2.0)
    active = active_params if active_params and active_params < params else params
    bf16_step_s = (active + 0.25 * (params - active)) * 2.0 / (model.hbm_tbps * 1e12 * 0.6)
    # Quantization keeps only part of its bandwidth gain.
    ratio = bpp / 2.0
    step_s = bf16_step_s * (1.0 - (1.0 - ratio) * _EFFICIENCY.get(precision, 1.0))
    tps_1 = NOMINAL_BATCH / step_s * 0.5
    flops = model.bf16_tflops * (2.0 if precision in _LOW_PRECISION_MATMUL and model.fp8 else 1.0)
    prefill_s = 2.0 * active * PROMPT_TOKENS / (flops * 1e12 * 0.4)
    latency_1 = (prefill_s + 4 * step_s) * 1000.0
    return Performance(
        tokens_per_second=scale_tokens_per_second(tps_1, 1, gpu_count),
        latency_ms=scale_latency(latency_1, 1, gpu_count),
        max_batch_size=None,
    )
