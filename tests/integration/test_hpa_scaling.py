"""The HPA end to end on CPU, on a private control plane with the resource metrics
pipeline (``LocalCluster(metrics=True)``): kwok simulates each pod's CPU usage from its
``aim.engine.amd.com/kwok-cpu-usage`` annotation, metrics-server scrapes kwok's
kubelet-style ``/metrics/resource`` and serves metrics.k8s.io behind the aggregation
layer, kube-controller-manager's own HPA controller scales the AIMEndpoint through its
scale subresource, and the in-process operator makes the Deployment follow.

The delays are checked on what the HPA itself reports (its AbleToScale condition while
it holds a recommendation back, its lastScaleTime and its Events), never on the test's
clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import localcluster  # type: ignore[import-not-found]
import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    endpoint,
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually
from support.kube import install_crds

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

CPU_USAGE = "aim.engine.amd.com/kwok-cpu-usage"
MEMORY_USAGE = "aim.engine.amd.com/kwok-memory-usage"
UP_DELAY, DOWN_DELAY = 15, 30  # seconds: scaling.scaleUpDelay / scaleDownDelay
TARGET = 50  # scaling.targetCPUUtilization, of a 1-CPU request
IDLE, BUSY = "100m", "2100m"  # 10% and 210% of the request: 1 and 3 replicas wanted


@pytest.fixture(scope="module")
def metrics_cluster() -> Iterator[LocalCluster]:
    """A private full control plane in metrics mode with the default GPU inventory and
    our CRDs, shared by this module's tests (each in a namespace of its own)."""
    c = localcluster.temp_cluster(full=True, metrics=True)
    try:
        c.start()
        c.apply_inventory()
        install_crds(c)
        yield c
    finally:
        c.stop()


def millicores(q: str) -> int:
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def top_pods(c: LocalCluster, ns: str) -> dict[str, tuple[int, str]]:
    """``kubectl top pods``: name -> (CPU millicores, memory as printed)."""
    res = c.kubectl("top", "pods", "-n", ns, "--no-headers", check=False)
    if res.returncode != 0:
        return {}
    rows = [line.split() for line in res.stdout.splitlines() if line.strip()]
    return {name: (millicores(cpu), mem) for name, cpu, mem, *_ in rows}


async def test_kubectl_top_pods_shows_each_pods_simulated_usage(
    metrics_cluster: LocalCluster,
) -> None:
    c, ns = metrics_cluster, "top"
    c.kubectl("create", "namespace", ns)
    for name, notes in (("busy", {CPU_USAGE: "900m", MEMORY_USAGE: "64Mi"}),
                              ("idle", {})):
        apply(c, {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "annotations": notes},
                  "spec": {"containers": [{"name": "main", "image": "example.invalid/app",
                                           "resources": {"requests": {"cpu": "1"}}}]}}, ns)

    top = await eventually(lambda: (t := top_pods(c, ns)) and len(t) == 2 and t, 120,
                           what="kubectl top pods lists both pods", blocking=True)
    busy_cpu, busy_mem = top["busy"]
    assert 850 <= busy_cpu <= 950, top  # a rate over metrics-server's 10 s windows
    assert busy_mem == "64Mi", top
    assert top["idle"][0] <= 5, top  # kwok's default: 1m, 1Mi
    # The node's usage is its pods': kubectl top node agrees.
    node = get_json(c, "-n", ns, "pod/busy")["spec"]["nodeName"]
    out = c.kubectl("top", "node", node, "--no-headers").stdout.split()
    assert out[0] == node and millicores(out[1]) >= 850, out


# --- the HPA ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One look at the HPA, the AIMEndpoint and its Deployment (one kubectl call)."""

    endpoint_replicas: int | None  # spec.replicas: the scale subresource the HPA writes
    deployment_replicas: int | None
    ready_replicas: int
    desired: int | None  # the HPA's status.desiredReplicas
    able_to_scale: str | None  # the reason of its AbleToScale condition
    cpu_utilization: int | None  # its status.currentMetrics, percent of the request
    last_scale_time: str | None


def sample(c: LocalCluster, ns: str, name: str) -> Sample | None:
    res = c.kubectl("get", "-n", ns, "-o", "json", f"hpa/{name}",
                    f"aimendpoints.{GROUP}/{name}", f"deployment/{name}", check=False)
    if res.returncode != 0:
        return None
    by_kind = {o["kind"]: o for o in json.loads(res.stdout)["items"]}
    hpa, ep, dep = (by_kind["HorizontalPodAutoscaler"], by_kind["AIMEndpoint"],
                    by_kind["Deployment"])
    st = hpa.get("status") or {}
    able = next((x["reason"] for x in st.get("conditions") or () if x["type"] == "AbleToScale"),
                None)
    cpu = next((m["resource"]["current"].get("averageUtilization")
                for m in st.get("currentMetrics") or ()
                if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"), None)
    return Sample(
        endpoint_replicas=ep["spec"].get("replicas"),
        deployment_replicas=dep["spec"].get("replicas"),
        ready_replicas=(dep.get("status") or {}).get("readyReplicas") or 0,
        desired=st.get("desiredReplicas"), able_to_scale=able, cpu_utilization=cpu,
        last_scale_time=st.get("lastScaleTime"),
    )


class Recorder:
    """Samples once a second in the background; ``samples`` in the order seen."""

    def __init__(self, c: LocalCluster, ns: str, name: str) -> None:
        self.c, self.ns, self.name = c, ns, name
        self.samples: list[Sample] = []

    async def run(self) -> None:
        while True:
            s = await asyncio.to_thread(sample, self.c, self.ns, self.name)
            if s is not None and (not self.samples or s != self.samples[-1]):
                self.samples.append(s)
            await asyncio.sleep(1)

    async def until(self, ok: Callable[[Sample], bool], what: str, since: int = 0,
                    within: float = 180) -> tuple[int, Sample]:
        """The first sample from index ``since`` on that is ``ok``, and its index."""
        def check() -> tuple[int, Sample] | None:
            return next(((i, s) for i, s in enumerate(self.samples)
                         if i >= since and ok(s)), None)

        result: tuple[int, Sample] = await eventually(check, within, what=what, interval=0.5)
        return result


@contextlib.asynccontextmanager
async def recording(c: LocalCluster, ns: str, name: str) -> AsyncIterator[Recorder]:
    rec = Recorder(c, ns, name)
    task = asyncio.create_task(rec.run())
    try:
        yield rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def set_usage(c: LocalCluster, ns: str, selector: str, cpu: str) -> None:
    """The simulated load of the endpoint's running pods (kwok reads it live)."""
    c.kubectl("annotate", "pods", "-n", ns, "-l", selector, f"{CPU_USAGE}={cpu}", "--overwrite")


def rescales(c: LocalCluster, ns: str, name: str) -> list[str]:
    """The HPA's SuccessfulRescale Event messages, oldest first."""
    out = get_json(c, "-n", ns, "events", f"--field-selector=involvedObject.name={name},"
                   "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale")
    items = sorted((out or {}).get("items") or (),
                   key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [str(e["message"]) for e in items]


def when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_hpa_scales_the_endpoint_on_cpu_and_honours_its_delays(
    metrics_cluster: LocalCluster,
) -> None:
    c, ns, name = metrics_cluster, "hpa", "auto"
    c.kubectl("create", "namespace", ns)
    async with running_operator(c), recording(c, ns, name) as rec:
        apply(c, endpoint(name, resources={"cpu": "1"},
                          podTemplate={"annotations": {CPU_USAGE: IDLE}},
                          scaling={"minReplicas": 1, "maxReplicas": 3,
                                   "targetCPUUtilization": TARGET,
                                   "scaleUpDelay": f"{UP_DELAY}s",
                                   "scaleDownDelay": f"{DOWN_DELAY}s"}), ns)
        obj = await wait_ready(c, ns, name)
        selector = obj["status"]["selector"]

        # Idle: the HPA reads the pod's CPU through metrics.k8s.io and keeps 1 replica.
        i, idle = await rec.until(lambda s: s.cpu_utilization is not None, "the HPA reads CPU")
        assert idle.cpu_utilization is not None and idle.cpu_utilization < TARGET, idle
        assert idle.desired == 1 and idle.endpoint_replicas == 1, idle

        # Busy: above target, held back for scaleUpDelay (the HPA says so), then 3.
        set_usage(c, ns, selector, BUSY)
        i, held_up = await rec.until(
            lambda s: s.able_to_scale == "ScaleUpStabilized" and s.cpu_utilization is not None
            and s.cpu_utilization > TARGET, "the HPA holding a scale-up back (scaleUpDelay)", i)
        assert (held_up.endpoint_replicas or 0) < 3, held_up
        i, up = await rec.until(lambda s: s.endpoint_replicas == 3 and s.deployment_replicas == 3
                                and s.ready_replicas == 3, "the HPA scaled the endpoint to 3 "
                                "and the Deployment followed", i)
        # The sample that saw 3 may have read the HPA's status just before its update.
        i, up = await rec.until(lambda s: s.endpoint_replicas == 3 and s.desired == 3
                                and s.last_scale_time is not None, "the HPA's status at 3", i)

        # Idle again right away: below target, held for scaleDownDelay, then back to 1.
        set_usage(c, ns, selector, IDLE)
        _, held_down = await rec.until(
            lambda s: s.able_to_scale == "ScaleDownStabilized" and s.cpu_utilization is not None
            and s.cpu_utilization < TARGET, "the HPA holding a scale-down back (scaleDownDelay)",
            i)
        assert held_down.endpoint_replicas == 3 and held_down.deployment_replicas == 3, held_down
        await rec.until(lambda s: s.endpoint_replicas == 1 and s.deployment_replicas == 1
                        and s.ready_replicas == 1,
                        "the HPA scaled the endpoint back to 1 and the Deployment followed", i)
        _, first_down = await rec.until(lambda s: s.last_scale_time not in
                                        (None, up.last_scale_time),
                                        "the HPA's status after its first scale-down", i)

    # The replica counts the HPA wrote, in order: up to 3, then down to 1, never back.
    seen = [s.endpoint_replicas for s in rec.samples]
    peak = seen.index(3)
    assert seen[0] == 1 and seen[-1] == 1, seen
    assert seen[:peak + 1] == sorted(seen[:peak + 1]), seen
    assert seen[peak:] == sorted(seen[peak:], reverse=True), seen
    # The Deployment followed the endpoint within its bounds, never beyond them.
    assert {s.deployment_replicas for s in rec.samples} <= {1, 2, 3}, rec.samples
    # Not before scaleDownDelay: the scale-up recorded a recommendation of 3, so the first
    # scale-down comes at least scaleDownDelay after it (the HPA's own lastScaleTime, in
    # whole seconds).
    assert first_down.last_scale_time is not None and up.last_scale_time is not None
    gap = when(first_down.last_scale_time) - when(up.last_scale_time)
    assert gap.total_seconds() >= DOWN_DELAY - 1, (up, first_down)
    # The HPA's own account: rescaled up on CPU above target, then down below it.
    messages = rescales(c, ns, name)
    sizes = [int(m.split(";")[0].removeprefix("New size: ")) for m in messages]
    assert sizes and sizes[-1] == 1 and 3 in sizes, messages
    assert all("above target" in m for m in messages[:sizes.index(3) + 1]), messages
    assert all("below target" in m for m in messages[sizes.index(3) + 1:]), messages
