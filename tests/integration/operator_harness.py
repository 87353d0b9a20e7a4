"""Runs the real operator (``build_app`` from the entry point) in-process against a
local control plane, with a private metrics registry, and small helpers to wait for
what it writes and for it to be done with a namespace."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import yaml
from localcluster import LocalCluster  # type: ignore[import-not-found]
from prometheus_client import CollectorRegistry
from support import eventually
from support.kube import api_client

from aim_controller.machinery.resource import list_objects
from aim_controller.machinery.store import NAMESPACE_INDEX
from aim_controller.main import App, build_app
from aim_controller.options import parse

GROUP = "aim.engine.amd.com"


@contextlib.asynccontextmanager
async def running_operator(
    cluster: LocalCluster, *args: str, only: tuple[str, ...] | None = None
) -> AsyncIterator[App]:
    """``only``: the controllers to run (by name), e.g. the endpoint controller alone
    while a test plays the AIMCache controller by writing AIMCache status itself."""
    opts = parse([
        "--kubeconfig", str(cluster.kubeconfig),
        "--metrics-bind-address", "127.0.0.1:0",
        "--health-probe-bind-address", "127.0.0.1:0",
        "--operator-namespace", "aim-system",
        *args,
    ])
    # Strict: a field the API server does not know fails a create or merge patch (and the
    # test), where the operator's default (Ignore) would drop it without a word; an apply
    # with one is refused either way.
    app = await build_app(opts, registry=CollectorRegistry(), only=only,
                          field_validation="Strict")
    task = asyncio.create_task(app.manager.run())

    def synced() -> bool:
        if task.done():
            task.result()  # it failed: say why
        return app.manager.caches_synced()

    try:
        await eventually(synced, 60, what="the operator's caches synced")
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


def condition(obj: Any, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return dict(c)
    return None


class ReconcileLog:
    """Every finished reconcile of one controller, as (key, outcome), in order.

    Fed by the controller's reconcile observer hook; ``log[key]`` counts a key's.
    """

    def __init__(self, app: App, index: int = 0) -> None:
        self.controller = app.controllers[index]
        self.entries: list[tuple[str, str]] = []
        self.controller.add_reconcile_observer(
            lambda key, outcome: self.entries.append((key, outcome)))

    def __getitem__(self, key: str) -> int:
        return sum(k == key for k, _ in self.entries)

    def outcomes(self, key: str) -> list[str]:
        return [o for k, o in self.entries if k == key]

    async def reconcile(self, key: str) -> str:
        """Enqueues ``key`` and waits for a reconcile of it that started after that;
        returns its outcome."""
        queue = self.controller.queue
        # One that is running now started before: wait for the next one too.
        want = self[key] + 1 + queue.is_processing(key)
        queue.add(key)
        await eventually(lambda: self[key] >= want, 30, what=f"a reconcile of {key}")
        return self.outcomes(key)[want - 1]


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


def idle(app: App) -> bool:
    """As the operator reports it: no key queued and no reconcile running."""
    registry = app.metrics.registry
    return all(
        len(c.queue) == 0
        and not registry.get_sample_value("controller_runtime_active_workers",
                                          {"controller": c.name})
        for c in app.controllers
    )


async def settled(app: App, cluster: LocalCluster, namespace: str) -> None:
    """Waits until the operator has nothing left to do in ``namespace``.

    One check, repeated until it holds: the operator is idle, and stays so with
    no write sent (its Events flushed) while the test lists every namespaced
    resource it watches, twice: both lists agree (nothing changed meanwhile) and
    equal the operator's cache. So every change, its own writes included, has
    been delivered, every key it enqueued has been reconciled, and the last
    reconciles wrote nothing that would start another round.
    """
    informers = [i for i in app.manager.informers.informers()
                 if i.resource.namespaced and i.namespace in (None, namespace)]

    async def server(api: Any) -> list[dict[str, str]]:
        return [{o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                 for o in (await list_objects(
                     api, i.resource, namespace=namespace, label_selector=i.label_selector,
                     field_selector=i.field_selector)).items}
                for i in informers]

    def cached() -> list[dict[str, str]]:
        return [{o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                 for o in i.store.by_index(NAMESPACE_INDEX, namespace)}
                for i in informers]

    async with await api_client(cluster) as api:

        async def quiet() -> bool:
            if not idle(app):
                return False
            await app.recorder.flush()
            writes = write_requests(app)
            first = await server(api)
            caches = cached()
            again = await server(api)
            await app.recorder.flush()
            return (first == caches == again and idle(app)
                    and write_requests(app) == writes)

        await eventually(quiet, 120, what=f"the operator settled in {namespace}",
                         interval=0.2)


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
                            what=f"{ns}/{name} Ready", blocking=True)


