"""The built-in catalog: loads, every recipe is valid and consistent, covers the spec models."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pytest

from aim_controller.api.v1alpha1 import API_VERSION
from aim_controller.recipes import gpus
from aim_controller.recipes.catalog import builtin_index, load_builtin_catalog
from aim_controller.recipes.estimate import WEIGHTS_FRACTION
from aim_controller.recipes.perfmodel import scale_latency, scale_tokens_per_second
from aim_controller.recipes.quantity import parse_quantity
from aim_controller.recipes.recipe import BYTES_PER_PARAM, arg_value, parse_recipe

SPEC_MODELS = [
    "Qwen/Qwen3-32B",
    "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "Qwen/Qwen3-30B-A3B",
]
# Parameter counts and context lengths from the models' configs.
PARAMS = {
    "Qwen/Qwen3-32B": (32.8e9, 40960),
    "Qwen/Qwen2.5-7B-Instruct": (7.62e9, 32768),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 131072),
    "meta-llama/Llama-3.1-70B-Instruct": (70.6e9, 131072),
    "meta-llama/Llama-3.3-70B-Instruct": (70.6e9, 131072),
    "mistralai/Mistral-7B-Instruct-v0.3": (7.25e9, 32768),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (70.6e9, 131072),
    "Qwen/Qwen3-30B-A3B": (30.5e9, 40960),
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CATALOG = load_builtin_catalog()


def configs() -> list[Any]:
    return [
        pytest.param(doc, c, id=f"{doc['metadata']['name']}-{c['gpuCount']}")
        for doc in CATALOG
        for c in doc["spec"]["configurations"]
    ]


def test_catalog_loads_as_aimrecipe_manifests() -> None:
    assert len(CATALOG) >= 24
    names = [d["metadata"]["name"] for d in CATALOG]
    assert len(names) == len(set(names))
    for doc in CATALOG:
        assert doc["apiVersion"] == API_VERSION and doc["kind"] == "AIMRecipe"
        assert doc["metadata"]["labels"]["aim.engine.amd.com/catalog"] == "builtin"
        assert DNS_SUBDOMAIN.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
        spec = doc["spec"]
        assert spec["backend"] == "vllm"
        assert spec["hardware"] in gpus.MODELS
        hw_slug, prec = (
            spec["hardware"].lower(),
            {"bfloat16": "bf16", "fp8": "fp8"}[spec["precision"]],
        )
        assert doc["metadata"]["name"].endswith(f"-{hw_slug}-{prec}")


def test_load_returns_copies() -> None:
    first = load_builtin_catalog()
    first[0]["spec"]["modelId"] = "mutated"
    assert load_builtin_catalog()[0]["spec"]["modelId"] != "mutated"


def test_every_configuration_parses_valid() -> None:
    for doc in CATALOG:
        r = parse_recipe(doc, "builtin")
        assert r is not None
        for c in r.configs:
            assert c.invalid == "", (doc["metadata"]["name"], c.gpu_count, c.invalid)
            assert c.enabled


@pytest.mark.parametrize(("doc", "cfg"), configs())
def test_args_agree_with_gpu_count_dtype_and_model(
    doc: dict[str, Any], cfg: dict[str, Any]
) -> None:
    spec, args, g = doc["spec"], cfg["args"], cfg["gpuCount"]
    assert arg_value(args, "--model") == spec["modelId"]
    assert arg_value(args, "--tensor-parallel-size") == str(g)
    assert arg_value(args, "--dtype") == "bfloat16"
    assert arg_value(args, "--port") == "8000"
    assert float(arg_value(args, "--gpu-memory-utilization") or 0) == 0.9
    max_len = int(arg_value(args, "--max-model-len") or 0)
    assert 8192 <= max_len <= PARAMS[spec["modelId"]][1]
    if spec["precision"] == "fp8":
        assert "fp8" in (arg_value(args, "--quantization"), arg_value(args, "--kv-cache-dtype"))
    else:
        assert arg_value(args, "--quantization") is None
    for part in ("requests", "limits"):
        assert cfg["resources"][part]["amd.com/gpu"] == str(g)
    req, lim = cfg["resources"]["requests"], cfg["resources"]["limits"]
    for key in ("cpu", "memory"):
        assert parse_quantity(lim[key]) >= parse_quantity(req[key]) > 0


@pytest.mark.parametrize(("doc", "cfg"), configs())
def test_weights_leave_kv_headroom(doc: dict[str, Any], cfg: dict[str, Any]) -> None:
    spec = doc["spec"]
    weights = PARAMS[spec["modelId"]][0] * BYTES_PER_PARAM[spec["precision"]]
    vram = gpus.MODELS[spec["hardware"]].vram_gib * 1024**3
    assert weights <= WEIGHTS_FRACTION * cfg["gpuCount"] * vram
    host_memory = parse_quantity(cfg["resources"]["requests"]["memory"])
    assert host_memory >= weights  # room to load the checkpoint


def test_no_fp8_on_cdna2() -> None:
    for doc in CATALOG:
        if not gpus.MODELS[doc["spec"]["hardware"]].fp8:
            assert doc["spec"]["precision"] != "fp8", doc["metadata"]["name"]


@pytest.mark.parametrize("model", SPEC_MODELS)
def test_every_spec_model_has_recipes_on_mi300x_mi325x_and_mi250x(model: str) -> None:
    recipes = builtin_index().lookup(model)
    hardware = {r.hardware for r in recipes}
    assert {"MI300X", "MI325X", "MI250X"} <= hardware
    mi300x = [c for r in recipes if r.hardware == "MI300X" for c in r.configs if c.enabled]
    assert mi300x
    counts = {c.gpu_count for c in mi300x if c.precision == "bfloat16"}
    params = PARAMS[model][0]
    if params < 10e9:
        assert counts == {1}
    elif params < 40e9:
        assert 1 in counts
    else:  # 70B in bf16 is 141 GB: not on one 192 GB MI300X with KV headroom
        assert counts == {2, 4, 8}


def _per_gpu(doc: dict[str, Any], gpu_count: int) -> float:
    spec = doc["spec"]
    ref = min(c["gpuCount"] for c in spec["configurations"])
    tps = spec["performance"]["expectedTokensPerSecond"]
    return scale_tokens_per_second(tps, ref, gpu_count) / gpu_count


def _latency(doc: dict[str, Any], gpu_count: int) -> float:
    spec = doc["spec"]
    ref = min(c["gpuCount"] for c in spec["configurations"])
    return scale_latency(spec["performance"]["expectedLatencyMs"], ref, gpu_count)


def test_performance_is_plausible_and_consistent() -> None:
    by_model: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for doc in CATALOG:
        perf = doc["spec"]["performance"]
        assert 100 <= perf["expectedTokensPerSecond"] <= 50_000
        assert 5 <= perf["expectedLatencyMs"] <= 5_000
        assert 8 <= perf["maxBatchSize"] <= 512
        by_model[doc["spec"]["modelId"]][(doc["spec"]["hardware"], doc["spec"]["precision"])] = doc
    for model, docs in by_model.items():
        for g in (1, 2, 4, 8):
            # Newer hardware is faster at the same precision and GPU count.
            for older, newer in (("MI250X", "MI300X"), ("MI300X", "MI325X")):
                a, b = docs.get((older, "bfloat16")), docs.get((newer, "bfloat16"))
                if a and b:
                    assert _per_gpu(b, g) > _per_gpu(a, g), (model, older, newer)
            # fp8 beats bfloat16 on the same hardware.
            for hw in ("MI300X", "MI325X"):
                bf16, fp8 = docs.get((hw, "bfloat16")), docs.get((hw, "fp8"))
                if bf16 and fp8:
                    assert _per_gpu(fp8, g) > _per_gpu(bf16, g), (model, hw)
                    assert _latency(fp8, g) < _latency(bf16, g), (model, hw)
