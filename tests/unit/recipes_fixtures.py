"""Builders of Kubernetes-shaped dicts for the recipe engine tests.

Label sets follow what the AMD node labeller (ROCm/k8s-device-plugin
``cmd/k8s-node-labeller``, ``createLabels``) writes for each property: the
count-encoded ``beta.amd.com/gpu.<kind>.<value>=<count>`` always; when the
node's GPUs share one value, ``beta.amd.com/gpu.<kind>=<value>`` and the plain
``amd.com/gpu.<kind>=<value>``; when they have several values, the plain
count-encoded ``amd.com/gpu.<kind>.<value>=<count>`` instead. So a node with
MI300X and MI325X GPUs has count-encoded device-id, product-name and vram
labels but single-value family and cu-count labels (both models are ``AI``
with 304 CUs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aim_controller.recipes import GpuInventory, build_inventory

# (device id, product name as labelled, family, vram label, cu-count) per model.
LABELLER: Mapping[str, tuple[str, str, str, str, str]] = {
    "MI210": ("740f", "AMD_Instinct_MI210", "AI", "64G", "104"),
    "MI250X": ("740c", "AMD_Instinct_MI250X_MI250", "AI", "64G", "110"),
    "MI300A": ("74a0", "AMD_Instinct_MI300A", "AI", "128G", "228"),
    "MI300X": ("74a1", "AMD_Instinct_MI300X_OAM", "AI", "192G", "304"),
    "MI308X": ("74a2", "AMD_Instinct_MI308X_OAM", "AI", "192G", "80"),
    "MI325X": ("74a5", "AMD_Instinct_MI325_OAM", "AI", "256G", "304"),
    "MI350X": ("75a0", "AMD_Instinct_MI350X_OAM", "AI", "288G", "256"),
    "MI355X": ("75a3", "AMD_Instinct_MI355X_OAM", "AI", "288G", "256"),
}


def labeller_labels(
    model: str, count: int = 8, *, beta: bool = True, plain: bool = True, cu_count: bool = True
) -> dict[str, str]:
    """Labels the labeller writes on a node with ``count`` GPUs of one model."""
    dev, product, family, vram, cus = LABELLER[model]
    values = {"device-id": dev, "product-name": product, "family": family, "vram": vram}
    if cu_count:
        values["cu-count"] = cus
    labels: dict[str, str] = {"amd.com/gpu.driver-version": "6.8.5"}
    for kind, value in values.items():
        if plain:
            labels[f"amd.com/gpu.{kind}"] = value
        if beta:
            labels[f"beta.amd.com/gpu.{kind}"] = value
            labels[f"beta.amd.com/gpu.{kind}.{value}"] = str(count)
    return labels


def mixed_labels(counts: Mapping[str, int]) -> dict[str, str]:
    """Labels the labeller writes on a node with ``counts`` GPUs per model (any number
    of models; see the module docstring)."""
    labels: dict[str, str] = {"amd.com/gpu.driver-version": "6.8.5"}
    kinds = ("device-id", "product-name", "family", "vram", "cu-count")
    for i, kind in enumerate(kinds):
        per_value: dict[str, int] = {}
        for model, n in counts.items():
            value = LABELLER[model][i]
            per_value[value] = per_value.get(value, 0) + n
        for value, n in per_value.items():
            labels[f"beta.amd.com/gpu.{kind}.{value}"] = str(n)
            if len(per_value) == 1:
                labels[f"beta.amd.com/gpu.{kind}"] = value
                labels[f"amd.com/gpu.{kind}"] = value
            else:
                labels[f"amd.com/gpu.{kind}.{value}"] = str(n)
    return labels


def node(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    gpus: int | str | None = 8,
    ready: bool = True,
    unschedulable: bool = False,
    taints: Sequence[Mapping[str, str]] = (),
    allocatable: Mapping[str, str] | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    alloc: dict[str, str] = {"cpu": "192", "memory": "2Ti", "pods": "110"}
    if gpus is not None:
        alloc["amd.com/gpu"] = str(gpus)
    alloc |= dict(allocatable or {})
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "labels": dict(labels or {})}
    if resource_version:
        meta["resourceVersion"] = resource_version
    spec: dict[str, Any] = {}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = [dict(t) for t in taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": spec,
        "status": {
            "allocatable": alloc,
            "capacity": dict(alloc),
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def gpu_node(name: str, model: str, gpus: int = 8, **kw: Any) -> dict[str, Any]:
    return node(name, labeller_labels(model, gpus), gpus=gpus, **kw)


def container(
    name: str = "main",
    gpus: int | str | None = None,
    *,
    limits_only: bool = False,
    resource: str = "amd.com/gpu",
    restart_policy: str | None = None,
) -> dict[str, Any]:
    res: dict[str, dict[str, str]] = {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}
    if gpus is not None:
        res["limits"][resource] = str(gpus)
        if not limits_only:
            res["requests"][resource] = str(gpus)
    c: dict[str, Any] = {"name": name, "image": "x", "resources": res}
    if restart_policy:
        c["restartPolicy"] = restart_policy
    return c


def pod(
    name: str,
    node_name: str | None,
    gpus: int | None = None,
    *,
    phase: str = "Running",
    namespace: str = "default",
    containers: Sequence[Mapping[str, Any]] | None = None,
    init_containers: Sequence[Mapping[str, Any]] = (),
    overhead: Mapping[str, str] | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [dict(c) for c in containers]
        if containers is not None
        else [container(gpus=gpus)],
    }
    if node_name:
        spec["nodeName"] = node_name
    if init_containers:
        spec["initContainers"] = [dict(c) for c in init_containers]
    if overhead:
        spec["overhead"] = dict(overhead)
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": phase},
    }


def config(
    gpu_count: int,
    model: str = "org/Model-7B",
    *,
    dtype: str = "bfloat16",
    enabled: bool = True,
    tp: int | None = None,
    gpu_request: int | None = None,
    extra_args: Iterable[str] = (),
) -> dict[str, Any]:
    n = gpu_request if gpu_request is not None else gpu_count
    return {
        "gpuCount": gpu_count,
        "enabled": enabled,
        "args": [
            "--model",
            model,
            "--tensor-parallel-size",
            str(tp if tp is not None else gpu_count),
            "--dtype",
            dtype,
            "--port",
            "8000",
            *extra_args,
        ],
        "resources": {
            "requests": {"amd.com/gpu": str(n), "cpu": "4", "memory": "32Gi"},
            "limits": {"amd.com/gpu": str(n), "cpu": "8", "memory": "64Gi"},
        },
    }


def recipe(
    name: str,
    model: str = "org/Model-7B",
    hardware: str = "MI300X",
    precision: str = "bfloat16",
    counts: Sequence[int] = (1,),
    *,
    namespace: str | None = "aim",
    backend: str = "vllm",
    tps: float | None = 1000.0,
    latency: float | None = 100.0,
    configurations: Sequence[Mapping[str, Any]] | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    dtype = precision if precision in ("bfloat16", "float16") else "bfloat16"
    configs = (
        [dict(c) for c in configurations]
        if configurations is not None
        else [config(g, model, dtype=dtype) for g in counts]
    )
    perf: dict[str, Any] = {"maxBatchSize": 64}
    if tps is not None:
        perf["expectedTokensPerSecond"] = tps
    if latency is not None:
        perf["expectedLatencyMs"] = latency
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "apiVersion": "aim.engine.amd.com/v1alpha1",
        "kind": "AIMRecipe",
        "metadata": meta,
        "spec": {
            "modelId": model,
            "hardware": hardware,
            "precision": precision,
            "backend": backend,
            "configurations": configs,
            "performance": perf,
        },
    }


def endpoint(
    model: str = "org/Model-7B",
    *,
    auto: bool | None = None,
    gpu_count: int | None = None,
    precision: str | None = None,
    backend: str | None = None,
    optimize_for: str | None = None,
    override_gpus: int | None = None,
    min_replicas: int | None = None,
    size_hint: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"id": model}}
    if size_hint:
        spec["model"]["sizeHint"] = size_hint
    rec: dict[str, Any] = {}
    for key, value in (
        ("autoSelect", auto),
        ("gpuCount", gpu_count),
        ("precision", precision),
        ("backend", backend),
        ("optimizeFor", optimize_for),
    ):
        if value is not None:
            rec[key] = value
    if rec:
        spec["recipe"] = rec
    if override_gpus is not None:
        spec["resources"] = {"gpuCount": override_gpus, "memory": "64Gi"}
    if min_replicas is not None:
        spec["scaling"] = {"minReplicas": min_replicas, "maxReplicas": max(min_replicas, 1) + 2}
    return spec


def quota(
    hard: int,
    used: int = 0,
    *,
    name: str = "gpu-quota",
    key: str = "requests.amd.com/gpu",
    scopes: Sequence[str] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"hard": {key: str(hard), "cpu": "64"}}
    if scopes:
        spec["scopes"] = list(scopes)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": "aim"},
        "spec": spec,
        "status": {"hard": dict(spec["hard"]), "used": {key: str(used), "cpu": "10"}},
    }


def cluster(**free_by_model: list[int]) -> GpuInventory:
    """8-GPU nodes per model; each list gives the free GPUs of one node."""
    nodes, pods = [], []
    for model, frees in free_by_model.items():
        for i, free in enumerate(frees):
            name = f"{model.lower()}-{i}"
            nodes.append(gpu_node(name, model))
            if free < 8:
                pods.append(pod(f"busy-{name}", name, 8 - free, namespace="other"))
    return build_inventory(nodes, pods)
