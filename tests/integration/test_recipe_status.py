"""The AIMRecipe status controller on the real local control plane.

The controller runs in-process on its own informers. Its recipes live on a
private simulated MI355X node (no other test uses that model, and a taint
keeps stray pods off it), so the expected fit is exact: 8 free GPUs, then 4
once a pod takes 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, inventory_nodes  # type: ignore[import-not-found]
from prometheus_client import CollectorRegistry
from support import eventually

from aim_controller.builders.settings import OperatorSettings
from aim_controller.machinery.controller import Controller
from aim_controller.machinery.events import EventRecorder
from aim_controller.machinery.informer import InformerFactory
from aim_controller.machinery.kubeclient import KubeClient, load_kubeconfig
from aim_controller.machinery.metrics import MachineryMetrics, instrument_api_client
from aim_controller.machinery.resource import EVENTS, Obj, request_json
from aim_controller.machinery.writer import ObjectWriter, RESTMapper
from aim_controller.recipes.catalog_manifest import main as catalog_manifest
from aim_controller.reconcilers.context import AIM_RECIPES, ControllerContext
from aim_controller.reconcilers.recipe_status import register

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

ROOT = Path(__file__).resolve().parents[2]
MI355X = {"deviceId": "75a3", "productName": "AMD_Instinct_MI355X_OAM", "family": "AI",
          "vram": "288G", "cuCount": "256"}  # fmt: skip
TAINT_KEY = "amd.com/aim-test-private"


class SpyWriter(ObjectWriter):
    """Records which objects got a status apply."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.status_writes: list[str] = []

    async def apply_status(self, obj: Obj, *, force: bool = True) -> Obj:
        self.status_writes.append(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
        return await super().apply_status(obj, force=force)


@dataclass
class Harness:
    api: KubeClient
    metrics: MachineryMetrics
    writer: SpyWriter
    controller: Controller

    def sample(self, name: str, match: Callable[[dict[str, str]], bool]) -> float:
        return sum(
            s.value
            for m in self.metrics.registry.collect()
            for s in m.samples
            if s.name == name and match(s.labels)
        )

    def patches(self) -> float:
        return self.sample("rest_client_requests_total", lambda lb: lb["method"] == "PATCH")

    def reconciles(self) -> float:
        return self.sample(
            "controller_runtime_reconcile_total", lambda lb: lb["controller"] == "aimrecipe"
        )

    def idle(self) -> bool:
        q = self.controller.queue
        return len(q) == 0 and not any(q.is_processing(k) for k in self.keys)

    keys: tuple[str, ...] = ()
    controller_store: Any = None  # the AIMRecipe informer's store


@contextlib.asynccontextmanager
async def status_controller(cluster: LocalCluster, namespace: str) -> AsyncIterator[Harness]:
    api = KubeClient(load_kubeconfig(cluster.kubeconfig))
    metrics = MachineryMetrics(registry=CollectorRegistry())
    instrument_api_client(api, metrics)
    # AIMRecipes of this namespace only, so every PATCH counted is about our recipes.
    factory = InformerFactory(api, namespaces=[namespace])
    writer = SpyWriter(api, RESTMapper([AIM_RECIPES, EVENTS]), "aim-controller")
    ctx = ControllerContext(
        informers=factory,
        writer=writer,
        recorder=EventRecorder(writer, "aim-controller", "test"),
        metrics=metrics,
        settings=OperatorSettings(),
        operator_namespace=namespace,
        max_concurrent_reconciles=2,
    )
    controller = register(ctx, refresh_delay=1.0, refresh_max_delay=4.0)
    factory.start()
    task = asyncio.create_task(controller.run())  # waits for its own caches
    try:
        yield Harness(api, metrics, writer, controller,
                      controller_store=factory.for_resource(AIM_RECIPES).store)
    finally:
        await controller.stop()
        await task
        await factory.stop()
        await api.close()


async def kubectl(cluster: LocalCluster, *args: str, input: str | None = None,
                  check: bool = True) -> Any:  # fmt: skip
    return await asyncio.to_thread(cluster.kubectl, *args, input=input, check=check)


def fits(status: dict[str, Any]) -> dict[int, int]:
    return {c["gpuCount"]: c["fittingReplicas"] for c in status.get("configurations", [])}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def config(n: int, tp: int | None = None) -> dict[str, Any]:
    return {"gpuCount": n, "args": ["--model", "org/Model-7B", "--tensor-parallel-size",
                                    str(tp or n), "--dtype", "bfloat16"],
            "resources": {"requests": {"amd.com/gpu": str(n)}}}  # fmt: skip


def recipe(name: str, namespace: str, configs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMRecipe",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"modelId": "org/Model-7B", "hardware": "MI355X", "precision": "bfloat16",
                     "configurations": configs}}  # fmt: skip


@pytest.fixture
def private_node(cluster: LocalCluster, namespace: str) -> Any:
    inv = {"nodeGroups": [{"name": "mi355x", "prefix": f"{namespace}-mi355x", "count": 1,
                           "gpus": 8, "gpu": MI355X,
                           "taints": [{"key": TAINT_KEY, "value": namespace,
                                       "effect": "NoSchedule"}]}]}  # fmt: skip
    nodes = list(inventory_nodes(inv))
    cluster.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", "-",
                    input=yaml.safe_dump_all(nodes))  # fmt: skip
    yield nodes[0]["metadata"]["name"]
    cluster.kubectl("delete", "node", nodes[0]["metadata"]["name"], "--wait=false", check=False)


async def test_status_shows_the_fit_and_follows_gpu_usage_without_idle_writes(
    crds: LocalCluster, namespace: str, private_node: str
) -> None:
    cluster = crds
    good, bad = "model-mi355x", "model-mi355x-bad"
    async with status_controller(cluster, namespace) as h:
        h.keys = (f"{namespace}/{good}", f"{namespace}/{bad}")

        async def status(name: str) -> dict[str, Any]:
            obj = await request_json(h.api, "GET", AIM_RECIPES.object_path(name, namespace))
            return dict(obj.get("status") or {})

        docs = [recipe(good, namespace, [config(1), config(4), config(8)]),
                recipe(bad, namespace, [config(4, tp=2)])]  # fmt: skip
        await kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump_all(docs))

        # 1. The fit of the free private node: 8 GPUs.
        async def initial() -> dict[str, Any] | None:
            s = await status(good)
            return s if fits(s) == {1: 8, 4: 2, 8: 1} else None

        s = await eventually(initial, what="the initial fit")
        assert s["valid"] is True
        assert s["summary"] == "3/3 configs fit (8x1 GPU, 2x4 GPU, 1x8 GPU)"
        assert all(c["nodes"] == [private_node] and c["gpuModels"] == ["MI355X"]
                   for c in s["configurations"])  # fmt: skip
        assert condition(s, "Fits")["status"] == "True"
        assert s["observedGeneration"] == 1

        # A recipe the schema accepts but whose args contradict gpuCount.
        async def invalid() -> dict[str, Any] | None:
            s = await status(bad)
            return s if s.get("valid") is False else None

        s = await eventually(invalid, what="the invalid recipe's status")
        valid = condition(s, "Valid")
        assert (valid["status"], valid["reason"]) == ("False", "InvalidRecipe")
        assert "args use 2 GPUs (--tensor-parallel-size 2) but gpuCount is 4" in valid["message"]
        assert fits(s) == {4: 0}

        async def warning_event() -> bool:
            out = (await kubectl(cluster, "get", "events", "-n", namespace, "-o", "json",
                                 f"--field-selector=involvedObject.name={bad}")).stdout  # fmt: skip
            return any(e["reason"] == "InvalidRecipe" and e["type"] == "Warning"
                       for e in json.loads(out)["items"])  # fmt: skip

        await eventually(warning_event, what="the InvalidRecipe Warning event")

        table = (await kubectl(cluster, "get", "aimrecipe", good, "-n", namespace)).stdout
        assert "3/3 configs fit (8x1 GPU, 2x4 GPU, 1x8 GPU)" in table and "true" in table

        # 2. Steady state: reconciling unchanged recipes again writes nothing.
        await eventually(h.idle, what="an idle queue")
        writes, patches, reconciles = len(h.writer.status_writes), h.patches(), h.reconciles()
        assert writes >= 2 and patches >= 2
        for name in (good, bad):  # metadata-only changes: no reconcile (generation filter)
            await kubectl(cluster, "label", "aimrecipe", name, "-n", namespace, "touched=yes")
        store = h.controller_store

        def labelled() -> bool:
            return all(((store.get(k) or {}).get("metadata") or {}).get("labels", {})
                       .get("touched") == "yes" for k in h.keys)

        # (No reconcile is due to them, but a GPU refresh caused by other tests on the
        # shared cluster may run one: only the writes are asserted.)
        await eventually(labelled, what="the label changes in the cache")
        for key in h.keys:  # a plain resync
            h.controller.queue.add(key)
        await eventually(lambda: h.reconciles() >= reconciles + 2 and h.idle(),
                         what="the resync reconciles")  # fmt: skip
        assert h.writer.status_writes[writes:] == []
        assert h.patches() == patches

        # 3. A pod takes 4 of the node's GPUs: fewer replicas fit.
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "gpu-user", "namespace": namespace},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": private_node},
                        "tolerations": [{"key": TAINT_KEY, "operator": "Exists",
                                         "effect": "NoSchedule"}],
                        "containers": [{"name": "c", "image": "x", "resources": {
                            "limits": {"amd.com/gpu": "4"}}}]}}  # fmt: skip
        # The namespace's default ServiceAccount arrives asynchronously.
        async def created() -> bool:
            res = await kubectl(cluster, "apply", "-f", "-", input=json.dumps(pod), check=False)
            return bool(res.returncode == 0)

        await eventually(created, what="the pod to be created")

        async def fewer() -> dict[str, Any] | None:
            s = await status(good)
            return s if fits(s) == {1: 4, 4: 1, 8: 0} else None

        s = await eventually(fewer, what="the fit after the pod took 4 GPUs")
        bound = json.loads((await kubectl(cluster, "get", "pod", "gpu-user", "-n", namespace,
                                          "-o", "json")).stdout)  # fmt: skip
        assert bound["spec"]["nodeName"] == private_node
        eight = next(c for c in s["configurations"] if c["gpuCount"] == 8)
        assert eight["nodes"] == []
        assert eight["message"].startswith(
            "InsufficientFreeGPUs: needs 1x8=8 free MI355X GPUs (8 per node)")
        assert s["summary"] == "2/3 configs fit (4x1 GPU, 1x4 GPU)"

        # 4. The pod goes away: the fit comes back.
        await kubectl(cluster, "delete", "pod", "gpu-user", "-n", namespace, "--wait=false")

        async def back() -> dict[str, Any] | None:
            s = await status(good)
            return s if fits(s) == {1: 8, 4: 2, 8: 1} else None

        await eventually(back, what="the fit after the pod left")


async def test_catalog_manifest_applies_cleanly(
    crds: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    committed = (ROOT / "manifests" / "catalog" / "recipes.yaml").read_text()
    out = tmp_path / "recipes.yaml"
    assert catalog_manifest([str(out), "--namespace", namespace]) == 0
    # The committed manifest, in this test's namespace.
    assert out.read_text() == committed.replace("namespace: aim-system", f"namespace: {namespace}")
    want = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(committed) if d)
    res = await kubectl(crds, "apply", "--server-side", "--field-manager=aim-tests",
                        "-n", namespace, "-f", str(out))  # fmt: skip
    assert res.stdout.count("serverside-applied") == len(want)
    listed = json.loads((await kubectl(crds, "get", "aimrecipe", "-n", namespace,
                                       "-o", "json")).stdout)["items"]  # fmt: skip
    assert sorted(o["metadata"]["name"] for o in listed) == want
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aim-engine"
               for o in listed)  # fmt: skip
    # The server pruned nothing: every written field reads back (defaults may be added).
    written = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(committed) if d}
    for o in listed:
        assert contains(o["spec"], written[o["metadata"]["name"]])


def contains(read: Any, written: Any) -> bool:
    if isinstance(written, dict):
        return isinstance(read, dict) and all(
            k in read and contains(read[k], v) for k, v in written.items()
        )
    if isinstance(written, list):
        return (isinstance(read, list) and len(read) == len(written)
                and all(contains(r, w) for r, w in zip(read, written, strict=True)))  # fmt: skip
    return bool(read == written)
