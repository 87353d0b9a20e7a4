"""Cost of the recipe engine on a large synthetic cluster.

Prints the inventory build time for 500 nodes / 5,000 pods (cold, and warm
through InventoryCache) and the per-selection cost with 1,000 namespace
recipes, both with a prebuilt RecipeIndex and with the raw recipe list.

    .venv/bin/python bench/bench_selection.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from aim_controller.recipes import InventoryCache, RecipeIndex, build_inventory, select
from aim_controller.recipes.catalog import builtin_index

NODES = 500
PODS = 5_000
RECIPES = 1_000
HARDWARE = (
    ("74a1", "AMD_Instinct_MI300X_OAM", "MI300X"),
    ("74a5", "AMD_Instinct_MI325_OAM", "MI325X"),
    ("740c", "AMD_Instinct_MI250X_MI250", "MI250X"),
)


def node(i: int, rng: random.Random) -> dict[str, Any]:
    dev, product, _ = HARDWARE[i % len(HARDWARE)]
    labels = {f"example.com/label-{k}": "x" for k in range(20)}
    labels |= {
        "kubernetes.io/hostname": f"node-{i}",
        "amd.com/gpu.device-id": dev,
        "amd.com/gpu.product-name": product,
        "amd.com/gpu.family": "AI",
        "amd.com/gpu.vram": "192G",
        f"beta.amd.com/gpu.device-id.{dev}": "8",
        f"beta.amd.com/gpu.product-name.{product}": "8",
        "beta.amd.com/gpu.family.AI": "8",
    }
    return {
        "metadata": {
            "name": f"node-{i:04d}",
            "uid": f"u-{i}",
            "resourceVersion": "1",
            "labels": labels,
        },
        "spec": {"taints": [{"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"amd.com/gpu": "8", "cpu": "192", "memory": "2Ti", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(i: int, rng: random.Random) -> dict[str, Any]:
    gpus = rng.choice((0, 0, 0, 1, 2, 4))
    res = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    if gpus:
        res["limits"]["amd.com/gpu"] = str(gpus)
        res["requests"]["amd.com/gpu"] = str(gpus)
    return {
        "metadata": {
            "name": f"p-{i}",
            "namespace": "work",
            "uid": f"p-{i}",
            "resourceVersion": "1",
        },
        "spec": {
            "nodeName": f"node-{rng.randrange(NODES):04d}",
            "containers": [{"name": "main", "resources": res}, {"name": "side", "resources": {}}],
        },
        "status": {"phase": rng.choice(("Running", "Running", "Running", "Succeeded"))},
    }


def recipe(i: int) -> dict[str, Any]:
    model = "Qwen/Qwen3-32B" if i % 100 == 0 else f"org/model-{i % 400}-7B"
    hw = ("MI300X", "MI325X", "MI250X")[i % 3]
    configs = [
        {
            "gpuCount": g,
            "args": ["--model", model, "--tensor-parallel-size", str(g), "--dtype", "bfloat16"],
            "resources": {"requests": {"amd.com/gpu": str(g)}, "limits": {"amd.com/gpu": str(g)}},
        }
        for g in (2, 4)
    ]
    return {
        "apiVersion": "aim.engine.amd.com/v1alpha1",
        "kind": "AIMRecipe",
        "metadata": {"name": f"r-{i}", "namespace": "aim", "uid": f"r-{i}", "resourceVersion": "1"},
        "spec": {
            "modelId": model,
            "hardware": hw,
            "precision": "bfloat16",
            "backend": "vllm",
            "configurations": configs,
            "performance": {"expectedTokensPerSecond": 1000 + i, "expectedLatencyMs": 100},
        },
    }


def per_call(fn: Callable[[], object], iterations: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def main() -> None:
    rng = random.Random(7)
    nodes = [node(i, rng) for i in range(NODES)]
    pods = [pod(i, rng) for i in range(PODS)]
    recipes = [recipe(i) for i in range(RECIPES)]
    spec = {"model": {"id": "Qwen/Qwen3-32B"}, "scaling": {"minReplicas": 2}}

    build = per_call(lambda: build_inventory(nodes, pods), 20)
    cache = InventoryCache()
    cache.build(nodes, pods)
    warm = per_call(lambda: cache.build(nodes, pods), 20)
    inventory = build_inventory(nodes, pods)

    index = RecipeIndex.build(recipes, "namespace", "aim")
    catalog = builtin_index()
    indexed = per_call(lambda: select(spec, "aim", index, catalog, inventory), 2_000)
    raw = per_call(lambda: select(spec, "aim", recipes, catalog, inventory), 500)
    decision = select(spec, "aim", index, catalog, inventory)

    print(f"inventory build, {NODES} nodes / {PODS} pods: {build * 1e3:8.2f} ms (cold)")
    print(f"inventory build via InventoryCache (unchanged objects): {warm * 1e3:8.2f} ms")
    print(f"selection, {RECIPES} recipes, prebuilt RecipeIndex:   {indexed * 1e6:8.1f} us")
    print(f"selection, {RECIPES} recipes, raw list each call:     {raw * 1e6:8.1f} us")
    print(f"  -> {decision.reason}: {decision.message}")


if __name__ == "__main__":
    main()
