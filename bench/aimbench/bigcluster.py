"""The big-cluster scenario: the operator on a cluster mostly made of what is not ours.

``--big-cluster``: a fresh local control plane with ``nodes`` simulated kwok nodes
(``gpu_nodes`` of them 8-GPU MI300X, the rest CPU-only) and ``pods`` pods of other
tenants, created already bound (``spec.nodeName`` set, so the scheduler never sees
them) and marked Running at once by the bench itself, with the status kwok's
``pod-ready`` stage writes (:func:`running_status`): kwok, heartbeating 2,000 nodes,
marks pods at about 50 a second (over 8 minutes for 30,000), and the endpoints' pods
would queue behind them. Each carries ``aim.engine.amd.com/kwok-simulate: none``, so no
stage of ``hack/kwok/stages.yaml`` ever picks it (``pod-ready`` takes only pods without
that annotation; the simulations only named values): without it kwok queues a
``pod-ready`` for each pod it sees created, before the bench's status arrives.
One in ``pods / gpu_nodes`` of them holds one GPU (one per GPU node), so the GPU
inventory has usage to account for.
Then the operator starts (its informers list all of it), and N endpoints are applied.

Measured: the operator's RSS idle (caches synced, before any endpoint) and its peak
(VmHWM), its CPU seconds (``/proc`` via psutil: user + system) to start and sync and
per endpoint until all are Ready, convergence and Ready times, the end state; and,
in-process, what one GPU inventory update costs after one pod changes
(:func:`inventory_update_cost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from aim_controller.machinery.handlers import EventHandler
from aim_controller.machinery.store import DEFAULT_INDEXERS, Indexer
from aim_controller.reconcilers.endpoint_observe import INDEX_ENDPOINT_PODS, index_pod_by_endpoint
from aim_controller.reconcilers.gpu_view import GpuView
from aim_controller.reconcilers.pod_slim import slim_pod

from . import workload as wl
from .benchmark import NAMESPACE, BenchOptions
from .cluster import GPUS_PER_NODE, MI300X, BenchCluster, dispose, new_cluster
from .kube import Credentials, Kube, KubeError, collection_path, gather_limited
from .observer import Observer
from .operator import OperatorProcess
from .verify import check_namespace

TENANT_NAMESPACES = 50
GPU_PREFIX = "big-gpu"
KWOK_SKIP = "aim.engine.amd.com/kwok-simulate"  # any value but the simulations': kwok skips it
CPU_PREFIX = "big-cpu"


def _mb(b: int) -> float:
    return round(b / 2**20, 1)


def inventory(nodes: int, gpu_nodes: int) -> dict[str, Any]:
    return {"nodeGroups": [
        {"name": "mi300x", "prefix": GPU_PREFIX, "count": gpu_nodes, "gpus": GPUS_PER_NODE,
         "cpu": "192", "memory": "2Ti", "gpu": dict(MI300X)},
        {"name": "cpu", "prefix": CPU_PREFIX, "count": nodes - gpu_nodes, "cpu": "64",
         "memory": "256Gi"},
    ]}


def foreign_pod(i: int, nodes: int, gpu_nodes: int, pods: int) -> dict[str, Any]:
    """Pod ``i`` of another tenant, bound to a node; every ``pods // gpu_nodes``-th one
    holds a GPU on a GPU node (one per GPU node), the rest run on CPU nodes."""
    stride = max(1, pods // max(gpu_nodes, 1))
    gpu = gpu_nodes > 0 and i % stride == 0 and i // stride < gpu_nodes
    cpu_nodes = max(1, nodes - gpu_nodes)
    node = f"{GPU_PREFIX}-{i // stride}" if gpu else f"{CPU_PREFIX}-{i % cpu_nodes}"
    app = f"app-{i // 3}"
    resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    if gpu:
        resources = {"requests": {**resources["requests"], "amd.com/gpu": "1"},
                     "limits": {"amd.com/gpu": "1"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{app}-{i:06d}", "namespace": f"tenant-{i % TENANT_NAMESPACES}",
                     "labels": {"app": app, "tier": "gpu" if gpu else "web"},
                     "annotations": {KWOK_SKIP: "none"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "registry.example/tenant/app:1.0",
                            "ports": [{"containerPort": 8080}], "resources": resources}],
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                             "effect": "NoSchedule"}],
        },
    }


def running_status(pod: dict[str, Any], i: int) -> dict[str, Any]:
    """The status kwok's ``pod-ready`` stage writes (hack/kwok/stages.yaml), pod IP ``i``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "phase": "Running", "hostIP": "10.1.0.1", "startTime": now,
        "podIP": f"10.{128 + i // 65536}.{i // 256 % 256}.{i % 256}",
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [
            {"image": c["image"], "name": c["name"], "ready": True, "started": True,
             "restartCount": 0, "state": {"running": {"startedAt": now}}}
            for c in pod["spec"]["containers"]],
    }


async def _create(kube: Kube, obj: dict[str, Any], i: int) -> None:
    path = collection_path("v1", "Pod", obj["metadata"]["namespace"])
    try:
        await kube.request("POST", path, body=obj)
    except KubeError as e:
        if e.status != 409:  # a retried create that had gone through
            raise
    await kube.request("PATCH", f"{path}/{obj['metadata']['name']}/status",
                       body={"status": running_status(obj, i)},
                       content_type="application/merge-patch+json")


async def populate(kube: Kube, nodes: int, gpu_nodes: int, pods: int, *,
                   concurrency: int = 40, log: Callable[[str], None] = print) -> float:
    """Creates the tenants' pods, each then marked Running (bounded concurrency); returns
    the seconds it took."""
    for k in range(TENANT_NAMESPACES):
        await wl.create_namespace(kube, f"tenant-{k}")
    t0 = time.monotonic()
    batch = 2000
    for start in range(0, pods, batch):
        await gather_limited((_create(kube, foreign_pod(i, nodes, gpu_nodes, pods), i)
                              for i in range(start, min(pods, start + batch))), concurrency)
        log(f"[big] {min(pods, start + batch):,}/{pods:,} pods created "
            f"({time.monotonic() - t0:.0f}s)")
    return time.monotonic() - t0


async def not_running(kube: Kube) -> int:
    """Pods not Running yet (exact below 1,000)."""
    out = await kube.request("GET", "/api/v1/pods", params={
        "fieldSelector": "status.phase!=Running", "limit": "1000"}, request_timeout=120)
    return len(out.get("items") or []) + (1000 if (out.get("metadata") or {}).get("continue")
                                          else 0)


async def wait_running(kube: Kube, limit: float, log: Callable[[str], None] = print) -> float:
    t0 = time.monotonic()
    while True:
        left = await not_running(kube)
        if left == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{left} pods still not Running after {limit:.0f}s")
        log(f"[big] pods not Running yet: {left if left < 1000 else '>= 1000'}")
        await asyncio.sleep(10)


def _cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def measure_big(cluster: BenchCluster, n: int, opts: BenchOptions, *, nodes: int,
                      gpu_nodes: int, pods: int) -> dict[str, Any]:
    log = opts.log
    creds = Credentials.from_kubeconfig(cluster.kubeconfig)
    result: dict[str, Any] = {"n": n, "nodes": nodes, "gpuNodes": gpu_nodes, "pods": pods}
    op = OperatorProcess(cluster.operator_kubeconfig, opts.out / f"operator-big-{n}.log",
                         max_concurrent_reconciles=opts.concurrency,
                         extra_args=opts.operator_args)
    async with Kube(creds, connections=opts.apply_concurrency + 10) as kube:
        result["podCreateSeconds"] = round(await populate(kube, nodes, gpu_nodes, pods, log=log), 1)
        result["podsRunningAfterSeconds"] = round(await wait_running(kube, 1200, log), 1)
        await wl.create_namespace(kube, NAMESPACE)
        started = time.monotonic()
        op.start()
        try:
            await asyncio.to_thread(op.wait_ready, 600)
            result["operatorReadySeconds"] = round(time.monotonic() - started, 1)
            await asyncio.sleep(5)
            cpu_idle = _cpu_seconds(op.pid)
            idle_rss = op.current_rss()
            log(f"[big] operator ready in {result['operatorReadySeconds']}s, idle RSS "
                f"{_mb(idle_rss)} MB, {cpu_idle:.1f} CPU s")
            obs = Observer(kube, NAMESPACE)
            await obs.start()
            names = wl.names(n)
            want = set(names)
            log(f"[big N={n}] applying {n} endpoints")
            t0 = time.monotonic()
            result["applySeconds"] = round(await wl.apply_all(
                kube, [wl.endpoint(x, NAMESPACE, rev=0) for x in names],
                concurrency=opts.apply_concurrency), 3)
            ok = await obs.wait(lambda: obs.all_converged(want), opts.timeout)
            cpu_conv = _cpu_seconds(op.pid)
            result["convergedSeconds"] = (round(max(obs.converged_at.values()) - t0, 3)
                                          if ok else None)
            log(f"[big N={n}] converged: {ok} {obs.snapshot()}")
            ok_ready = ok and await obs.wait(lambda: obs.all_ready(want), opts.timeout)
            cpu_ready = _cpu_seconds(op.pid)
            result["readySeconds"] = (round(max(obs.ready_at.values()) - t0, 3)
                                      if ok_ready else None)
            log(f"[big N={n}] ready: {ok_ready} {obs.snapshot()}")
            result["curve"] = [[round(t - t0, 3), i + 1]
                               for i, t in enumerate(sorted(obs.converged_at.values()))]
            await asyncio.sleep(5)
            peak = op.peak_rss()
            result["rss"] = {"idleMB": _mb(idle_rss), "peakMB": _mb(peak),
                             "afterReadyMB": _mb(op.current_rss()),
                             "growthKBPerEndpoint": round((peak - idle_rss) / n / 1024, 1)}
            result["cpuSeconds"] = {
                "startAndSync": round(cpu_idle, 2),
                "toConverge": round(cpu_conv - cpu_idle, 2),
                "toReady": round(cpu_ready - cpu_idle, 2),
                "perEndpoint": round((cpu_ready - cpu_idle) / n, 4),
            }
            verdict = await check_namespace(kube, NAMESPACE, expected=dict.fromkeys(names, 0))
            result["correct"] = verdict.as_dict()
            log(f"[big N={n}] end state: {verdict.summary()}")
            await obs.stop()
        finally:
            op.stop()
    return result


def run_big(n: int, opts: BenchOptions, *, nodes: int, gpu_nodes: int,
            pods: int) -> dict[str, Any]:
    opts.log(f"[big] starting a local control plane: {nodes:,} nodes ({gpu_nodes} with GPUs), "
             f"{pods:,} pods, then N={n}")
    cluster = new_cluster(keep=opts.keep_cluster)
    try:
        t0 = time.monotonic()
        names = cluster.add_gpu_nodes(inventory(nodes, gpu_nodes), timeout=900)
        opts.log(f"[big] {len(names):,} nodes Ready after {time.monotonic() - t0:.0f}s "
                 f"({cluster.state_dir})")
        return asyncio.run(measure_big(cluster, n, opts, nodes=nodes, gpu_nodes=gpu_nodes,
                                       pods=pods))
    finally:
        with contextlib.suppress(Exception):
            dispose(cluster)


# -- in-process: one inventory update after one pod change -----------------------------
class _StaticInformer:
    """Just enough of an informer for :class:`GpuView`: a store and its handlers."""

    def __init__(self, indexers: dict[str, Any]) -> None:
        self.store = Indexer(indexers)
        self.handlers: list[EventHandler] = []

    def add_event_handler(self, handler: EventHandler) -> None:
        self.handlers.append(handler)

    def has_synced(self) -> bool:
        return True

    async def wait_synced(self) -> None:
        return None

    def add(self, obj: dict[str, Any]) -> None:
        self.store.add(obj)
        for h in self.handlers:
            h.on_add(obj)

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.store.update(new)
        for h in self.handlers:
            h.on_update(old, new)


def _as_served(obj: dict[str, Any], rv: int, uid: str) -> dict[str, Any]:
    meta = obj["metadata"]
    meta.update(resourceVersion=str(rv), uid=uid)
    return obj


def _node_objects(nodes: int, gpu_nodes: int) -> Iterator[dict[str, Any]]:
    from .cluster import localcluster

    for i, node in enumerate(localcluster.inventory_nodes(inventory(nodes, gpu_nodes))):
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        yield _as_served(node, 10 + i, f"node-{i}")


def _pod_object(i: int, nodes: int, gpu_nodes: int, pods: int, rv: int) -> dict[str, Any]:
    pod = _as_served(foreign_pod(i, nodes, gpu_nodes, pods), rv, f"pod-{i}")
    pod["status"] = {"phase": "Running", "podIP": "10.244.0.1", "hostIP": "10.1.0.1"}
    return slim_pod(pod)


def _pod_key(i: int, nodes: int, gpu_nodes: int, pods: int) -> str:
    meta = foreign_pod(i, nodes, gpu_nodes, pods)["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def inventory_update_cost(pods: int, *, nodes: int = 2000, gpu_nodes: int = 300,
                          repeats: int = 15) -> dict[str, Any]:
    """What the operator's GPU view spends after one pod change, with ``pods`` pods and
    ``nodes`` nodes cached: the view (``GpuView``, as the operator wires it) over
    stores filled with the scenario's objects (pods slimmed as the Pod informer does),
    built once, then one GPU pod at a time moves its GPU to another node (a new
    resourceVersion, as a watch event brings) and ``inventory()`` is timed; and a
    CPU-only pod's change (the fingerprint filter drops it)."""
    node_inf = _StaticInformer(dict(DEFAULT_INDEXERS))
    pod_inf = _StaticInformer({**DEFAULT_INDEXERS, INDEX_ENDPOINT_PODS: index_pod_by_endpoint})
    view = GpuView(node_inf, pod_inf)  # type: ignore[arg-type]
    for node in _node_objects(nodes, gpu_nodes):
        node_inf.add(node)
    for i in range(pods):
        pod_inf.add(_pod_object(i, nodes, gpu_nodes, pods, 100_000 + i))
    gc.collect()
    t = time.perf_counter()
    view.inventory()
    cold = time.perf_counter() - t
    stride = max(1, pods // max(gpu_nodes, 1))
    gpu_update: list[float] = []
    cpu_update: list[float] = []
    rv = 1_000_000
    for r in range(repeats):
        i = (r % gpu_nodes) * stride
        old = pod_inf.store.get(_pod_key(i, nodes, gpu_nodes, pods))
        assert old is not None
        new = _pod_object(i, nodes, gpu_nodes, pods, rv := rv + 1)
        new["spec"]["nodeName"] = f"{GPU_PREFIX}-{(i // stride + 1 + r) % gpu_nodes}"
        version = view.version
        t = time.perf_counter()
        pod_inf.update(old, new)
        inv = view.inventory()
        gpu_update.append(time.perf_counter() - t)
        assert view.version == version + 1 and inv.nodes
        j = 1 + r  # a CPU-only pod
        old = pod_inf.store.get(_pod_key(j, nodes, gpu_nodes, pods))
        assert old is not None
        new = _pod_object(j, nodes, gpu_nodes, pods, rv := rv + 1)
        new.setdefault("status", {})["podIP"] = f"10.245.0.{r}"  # status churn
        t = time.perf_counter()
        pod_inf.update(old, new)
        view.inventory()
        cpu_update.append(time.perf_counter() - t)
    return {
        "pods": pods, "nodes": nodes, "gpuNodes": gpu_nodes,
        "coldBuildMs": round(cold * 1e3, 2),
        "gpuPodChangeMs": round(statistics.median(gpu_update) * 1e3, 3),
        "cpuPodChangeUs": round(statistics.median(cpu_update) * 1e6, 1),
    }


def inventory_update_costs(pod_counts: tuple[int, ...] = (3000, 30000), *, nodes: int = 2000,
                           gpu_nodes: int = 300) -> list[dict[str, Any]]:
    return [inventory_update_cost(p, nodes=nodes, gpu_nodes=gpu_nodes) for p in pod_counts]


__all__ = ["foreign_pod", "inventory", "inventory_update_cost", "inventory_update_costs",
           "measure_big", "run_big"]


if __name__ == "__main__":
    for row in inventory_update_costs():
        print(row)
