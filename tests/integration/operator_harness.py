"""Runs the real operator (``build_app`` from the entry point) in-process against a
local control plane, with a private metrics registry, and small helpers to wait for
what it writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import yaml
from localcluster import LocalCluster  # type: ignore[import-not-found]
from prometheus_client import CollectorRegistry

from aim_controller.main import App, build_app
from aim_controller.options import parse

GROUP = "aim.engine.amd.com"


@contextlib.asynccontextmanager
async def running_operator(cluster: LocalCluster, *args: str) -> AsyncIterator[App]:
    opts = parse([
        "--kubeconfig", str(cluster.kubeconfig),
        "--metrics-bind-address", "127.0.0.1:0",
        "--health-probe-bind-address", "127.0.0.1:0",
        "--operator-namespace", "aim-system",
        *args,
    ])
    app = await build_app(opts, registry=CollectorRegistry())
    task = asyncio.create_task(app.manager.run())
    try:
        deadline = time.monotonic() + 60
        while not app.manager.caches_synced():
            if task.done():
                task.result()
            assert time.monotonic() < deadline, "caches did not sync"
            await asyncio.sleep(0.1)
        yield app
    finally:
        app.manager.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
        await app.close()


def get_json(cluster: LocalCluster, *args: str) -> Any:
    res = cluster.kubectl("get", "-o", "json", *args, check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)


async def eventually(
    fn: Callable[[], Any], within: float = 60.0, interval: float = 0.5, what: str = ""
) -> Any:
    """Polls ``fn`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(fn)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or fn}: last={last!r}")


def condition(obj: Any, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return dict(c)
    return None


class RequestLog:
    """Every request the operator's client sends, as (method, path), for assertions
    about one namespace (the shared cluster has other tests' objects going away)."""

    def __init__(self, app: App) -> None:
        self.requests: list[tuple[str, str]] = []
        rest = app.api_client.rest_client
        original = rest.request

        async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.requests.append((method.upper(), url))
            return await original(method, url, *args, **kwargs)

        rest.request = request

    def writes(self, namespace: str) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.requests
                if m != "GET" and f"/namespaces/{namespace}/" in u]


class KeyCounter:
    """Counts reconciles per key by wrapping the controller's reconcile function."""

    def __init__(self, app: App, index: int = 0) -> None:
        self.counts: dict[str, int] = {}
        ctl = app.controllers[index]
        inner = ctl._reconcile

        async def counted(key: str) -> Any:
            self.counts[key] = self.counts.get(key, 0) + 1
            return await inner(key)

        ctl._reconcile = counted

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)


def write_requests(app: App) -> float:
    """Non-GET requests this operator sent (rest_client_requests_total)."""
    total = 0.0
    for metric in app.metrics.registry.collect():
        if metric.name != "rest_client_requests":
            continue
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels.get("method") not in ("GET",):
                total += s.value
    return total


def reconciles(app: App, controller: str = "aimendpoint") -> float:
    total = 0.0
    for metric in app.metrics.registry.collect():
        if metric.name == "controller_runtime_reconcile":
            for s in metric.samples:
                if s.name.endswith("_total") and s.labels.get("controller") == controller:
                    total += s.value
    return total


def apply(cluster: LocalCluster, obj: dict[str, Any] | str, namespace: str) -> None:
    text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text)


def endpoint(name: str, model: str = "Qwen/Qwen2.5-7B-Instruct", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMEndpoint",
        "metadata": {"name": name},
        "spec": {"model": {"id": model}, **spec},
    }


def recipe(name: str, model: str, hardware: str, gpus: int, *extra_args: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMRecipe",
        "metadata": {"name": name},
        "spec": {
            "modelId": model, "hardware": hardware, "precision": "bfloat16", "backend": "vllm",
            "configurations": [{
                "gpuCount": gpus, "enabled": True,
                "args": ["--model", model, "--tensor-parallel-size", str(gpus), *extra_args],
                "resources": {"requests": {"amd.com/gpu": str(gpus), "cpu": "2",
                                           "memory": "8Gi"},
                              "limits": {"amd.com/gpu": str(gpus)}},
            }],
        },
    }


def ep(cluster: LocalCluster, ns: str, name: str) -> Any:
    return get_json(cluster, "-n", ns, f"aimendpoints.{GROUP}/{name}")


def cond_is(cluster: LocalCluster, ns: str, name: str, type_: str, status: str,
            reason: str | None = None) -> Any:
    obj = ep(cluster, ns, name)
    c = condition(obj, type_)
    if c and c["status"] == status and (reason is None or c["reason"] == reason):
        return obj
    return None


async def wait_ready(cluster: LocalCluster, ns: str, name: str, within: float = 90) -> Any:
    return await eventually(lambda: cond_is(cluster, ns, name, "Ready", "True"), within,
                            what=f"{ns}/{name} Ready")


