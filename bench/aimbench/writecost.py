"""What one write of each kind costs the API server: CPU seconds of kube-apiserver
and etcd per write, on a fresh API-server-only cluster with our CRDs.

Why: at N = 1,000 the convergence ratio is bounded by the API server (both runs
keep 2 cores busy), and the operator's run makes writes the raw loop does not:
the AIMEndpoints themselves (the input), one status write each before it counts
as converged, an Event, a share of AIMRecipe status writes. This measures what
each of those costs next to the children the raw loop writes, so the README can
say where the floor of the ratio is.

Each kind is written ``n`` times by 10 concurrent writers through the bench's own
client; CPU is that of the cluster's own kube-apiserver and etcd processes.
The AIMEndpoint status is a real one (the operator's, for the bench's model:
selection, 6 candidates, 5 conditions); the AIMRecipe status lists 100 nodes per
configuration (its cap), as on a cluster with that many GPU nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aim_controller.machinery.writer import DEFAULT_FIELD_VALIDATION

from .cluster import OPERATOR_NAMESPACE, BenchCluster, ensure_binaries
from .kube import Credentials, Kube, object_path
from .workload import endpoint

SAMPLE_STATUS = Path(__file__).with_name("endpoint_status_sample.json")
# The operator's writes carry its writer's directive; the input (a user's create) does not.
OPERATOR_VALIDATION = DEFAULT_FIELD_VALIDATION
NS = "writecost"


def _status_for(name: str, ready: bool) -> dict[str, Any]:
    st: dict[str, Any] = json.loads(SAMPLE_STATUS.read_text().replace("ep-0000", name))
    if not ready:
        st["conditions"][-1].update(status="False", reason="Progressing")
        st["readyReplicas"] = 0
    return st


async def _phase(c: BenchCluster, n: int, write: Callable[[int], Awaitable[Any]],
                 concurrency: int = 10) -> dict[str, float]:
    todo = list(range(n))
    cpu0, t0 = c.cpu_by_component(), time.monotonic()

    async def worker() -> None:
        while todo:
            await write(todo.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.monotonic() - t0
    await asyncio.sleep(0.5)
    cpu = c.cpu_by_component()
    return {"apiserverMsPerWrite": round((cpu["apiserver"] - cpu0["apiserver"]) * 1000 / n, 2),
            "etcdMsPerWrite": round((cpu["etcd"] - cpu0["etcd"]) * 1000 / n, 2),
            "seconds": round(seconds, 2)}


async def _measure(c: BenchCluster, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with Kube(Credentials.from_kubeconfig(c.kubeconfig), connections=20) as k:
        await k.request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        names = [f"ep-{i:04d}" for i in range(n)]
        eps = [endpoint(name, NS) for name in names]
        items, _ = await k.list(f"/apis/aim.engine.amd.com/v1alpha1/namespaces/"
                                f"{OPERATOR_NAMESPACE}/aimrecipes")
        recipes = [r for r in items if len(r["spec"]["configurations"]) >= 3][:10]

        async def create(i: int) -> None:
            await k.request("POST", object_path(eps[i]).rsplit("/", 1)[0], body=eps[i])

        async def status(i: int, ready: bool) -> None:
            body = {"apiVersion": eps[i]["apiVersion"], "kind": "AIMEndpoint",
                    "metadata": {"name": names[i], "namespace": NS},
                    "status": _status_for(names[i], ready)}
            await k.apply(body, "aim-controller", subresource="status",
                          field_validation=OPERATOR_VALIDATION)

        async def tiny(i: int) -> None:
            await k.merge_patch(object_path(eps[i]) + "/status",
                                {"status": {"readyReplicas": 2}}, manager="another")

        async def event(i: int) -> None:
            await k.request("POST", f"/api/v1/namespaces/{NS}/events",
                            params={"fieldValidation": OPERATOR_VALIDATION}, body={
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{names[i]}."},
                "involvedObject": {"apiVersion": eps[i]["apiVersion"], "kind": "AIMEndpoint",
                                   "name": names[i], "namespace": NS},
                "reason": "RecipeSelected", "type": "Normal", "count": 1,
                "message": _status_for(names[i], False)["recipe"]["message"],
                "source": {"component": "aim-controller"},
                "firstTimestamp": "2026-12-04T05:53:56Z", "lastTimestamp": "2026-12-04T05:53:56Z"})

        async def config_map(i: int) -> None:
            await k.apply({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": names[i], "namespace": NS},
                           "data": {"engine-args.json": "x" * 600}}, "aim-controller",
                          field_validation=OPERATOR_VALIDATION)

        async def recipe_status(i: int) -> None:
            r = recipes[i % len(recipes)]
            st = {"valid": True, "summary": f"{i} fit", "configurations": [
                {"gpuCount": cf["gpuCount"], "enabled": True, "fittingReplicas": i,
                 "nodes": [f"aim-gpu-node-{j:04d}" for j in range(100)],
                 "gpuModels": ["MI300X"], "message": ""}
                for cf in r["spec"]["configurations"]]}
            await k.apply({"apiVersion": r["apiVersion"], "kind": "AIMRecipe",
                           "metadata": {"name": r["metadata"]["name"],
                                        "namespace": r["metadata"]["namespace"]},
                           "status": st}, "aim-controller", subresource="status",
                          field_validation=OPERATOR_VALIDATION)

        size = len(json.dumps(eps[0]))
        full = len(json.dumps({"status": _status_for(names[0], True)}))
        phases: list[tuple[str, Callable[[int], Awaitable[Any]], str]] = [
            ("AIMEndpoint create (the input)", create, f"{size} B"),
            ("AIMEndpoint status, SSA (selection)", lambda i: status(i, False), f"{full} B"),
            ("AIMEndpoint status, SSA (Ready)", lambda i: status(i, True), f"{full} B"),
            ("AIMEndpoint status, 1-field merge patch", tiny, f"{full} B"),
            ("Event create", event, ""),
            ("ConfigMap SSA create (a child)", config_map, ""),
        ]
        if recipes:
            phases.append(("AIMRecipe status, SSA (100 nodes/config)", recipe_status, ""))
        for label, fn, obj in phases:
            row = {"write": label, "body": obj, **await _phase(c, n, fn)}
            out.append(row)
    return out


def write_cost(n: int = 1000, *, log: Any = print) -> list[dict[str, Any]]:
    """The table: one row per kind of write."""
    d = Path(tempfile.mkdtemp(prefix="aim-writecost-"))
    c = BenchCluster(state_dir=d, bin_dir=ensure_binaries(), full=False, audit=False)
    try:
        c.start()
        c.install()  # the CRDs and the catalog's AIMRecipes
        log(f"write cost: {n} writes of each kind on an API-server-only cluster")
        return asyncio.run(_measure(c, n))
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


def write_cost_table(rows: list[dict[str, Any]]) -> str:
    lines = ["write                                       apiserver ms  etcd ms  body",
             "------------------------------------------  ------------  -------  ----"]
    for r in rows:
        lines.append(f"{r['write']:42s}  {r['apiserverMsPerWrite']:12.2f}  "
                     f"{r['etcdMsPerWrite']:7.2f}  {r['body']}")
    return "\n".join(lines)


__all__ = ["write_cost", "write_cost_table"]


if __name__ == "__main__":
    print(write_cost_table(write_cost(int(os.environ.get("N", "1000")))))
