"""``scaling.targetGPUUtilization`` end to end through KEDA, on a private control plane
in metrics + KEDA mode (``LocalCluster(metrics=True, keda=True)``): KEDA's operator and
metrics adapter (pinned, built by hack/build-binaries.sh) as local processes, a real
Prometheus scraping the simulated AMD device metrics exporter (hack/amd_gpu_exporter.py)
every second, which serves ``gpu_gfx_activity`` for the endpoint's real pods at the
level the test sets. The operator (``--gpu-metrics-prometheus-url``) makes a
ScaledObject instead of its HPA; KEDA's HPA (``keda-hpa-<name>``, read by the
kube-controller-manager's HPA controller through external.metrics.k8s.io) scales the
AIMEndpoint's scale subresource and the operator makes the Deployment follow.

And without KEDA (the shared cluster: its CRD not served) or without the URL: the
operator keeps its CPU/memory HPA and ScalingReady says why, with a Warning Event."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import localcluster  # type: ignore[import-not-found]
import pytest
import yaml
from amd_gpu_exporter import GpuExporter  # type: ignore[import-not-found]
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    cond_is,
    endpoint,
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually
from support.kube import install_crds

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

PROMETHEUS = shutil.which("prometheus")
if not PROMETHEUS and not os.environ.get("AIM_REQUIRE_PROMETHEUS"):
    pytest.skip("prometheus not installed (make prometheus); set AIM_REQUIRE_PROMETHEUS=1 "
                "to fail instead", allow_module_level=True)

TARGET = 50  # scaling.targetGPUUtilization
BUSY, IDLE = 90.0, 10.0  # gpu_gfx_activity of every pod: 2 pods at 90 want ceil(180/50)=4
DOWN_DELAY = 10  # seconds: scaling.scaleDownDelay


@pytest.fixture(scope="module")
def keda_cluster() -> Iterator[LocalCluster]:
    c = localcluster.temp_cluster(full=True, metrics=True, keda=True)
    try:
        c.start()
        c.apply_inventory()
        install_crds(c)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def exporter() -> Iterator[GpuExporter]:
    e = GpuExporter().start()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def prometheus(exporter: GpuExporter, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    assert PROMETHEUS, "prometheus not found (make prometheus)"
    work = tmp_path_factory.mktemp("prometheus")
    port = localcluster.free_port()
    # honor_labels: the exporter's namespace/pod labels are the workload's (as the AMD
    # GPU operator's ServiceMonitor keeps them).
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "amd-gpu", "honor_labels": True,
                                  "static_configs": [
                                      {"targets": [f"127.0.0.1:{exporter.port}"]}]}]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        log.close()


def pods(c: LocalCluster, ns: str, name: str) -> list[str]:
    out = get_json(c, "-n", ns, "pods", "-l", f"app.kubernetes.io/instance={name}")
    return sorted(p["metadata"]["name"] for p in (out or {}).get("items") or ()
                  if not p["metadata"].get("deletionTimestamp"))


class Load:
    """The GPU activity the exporter serves for the endpoint's current pods."""

    def __init__(self, c: LocalCluster, exporter: GpuExporter, ns: str, name: str) -> None:
        self.c, self.exporter, self.ns, self.name = c, exporter, ns, name
        self.level = IDLE
        self.served: set[str] = set()

    def sync(self) -> None:
        now = set(pods(self.c, self.ns, self.name))
        for gone in self.served - now:
            self.exporter.drop(self.ns, gone)
        for pod in now:
            self.exporter.set(self.ns, pod, self.level, gpus=1)
        self.served = now

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sync)
            await asyncio.sleep(1)


def replicas(c: LocalCluster, ns: str, name: str) -> tuple[int | None, int | None, int]:
    """(the endpoint's spec.replicas, the Deployment's spec.replicas, its ready pods)."""
    obj = get_json(c, "-n", ns, f"aimendpoints.{GROUP}/{name}") or {}
    dep = get_json(c, "-n", ns, f"deployment/{name}") or {}
    return ((obj.get("spec") or {}).get("replicas"), (dep.get("spec") or {}).get("replicas"),
            (dep.get("status") or {}).get("readyReplicas") or 0)


def so_ready(c: LocalCluster, ns: str, name: str) -> Any:
    return cond_is(c, ns, name, "ScalingReady", "True", "ScaledObjectReady")


async def test_keda_scales_the_endpoint_on_its_pods_gpu_activity(
    keda_cluster: LocalCluster, exporter: GpuExporter, prometheus: str,
) -> None:
    c, ns, name = keda_cluster, "gpu", "gpu-auto"
    c.kubectl("create", "namespace", ns)
    load = Load(c, exporter, ns, name)
    task = asyncio.create_task(load.run())
    try:
        async with running_operator(c, "--gpu-metrics-prometheus-url", prometheus):
            apply(c, endpoint(name, scaling={
                "minReplicas": 1, "maxReplicas": 3, "targetGPUUtilization": TARGET,
                "scaleUpDelay": "0s", "scaleDownDelay": f"{DOWN_DELAY}s"}), ns)
            await wait_ready(c, ns, name)
            # A ScaledObject of ours, no HPA of ours; KEDA made its own HPA from it.
            await eventually(lambda: so_ready(c, ns, name), 120, blocking=True,
                             what="ScalingReady True: KEDA reports the ScaledObject Ready")
            so = get_json(c, "-n", ns, f"scaledobjects.keda.sh/{name}")
            assert so["metadata"]["ownerReferences"][0]["kind"] == "AIMEndpoint"
            assert get_json(c, "-n", ns, f"hpa/{name}") is None
            keda_hpa = await eventually(
                lambda: get_json(c, "-n", ns, f"hpa/keda-hpa-{name}"), 60, blocking=True,
                what="KEDA's HPA")
            assert keda_hpa["spec"]["scaleTargetRef"]["kind"] == "AIMEndpoint"
            assert keda_hpa["spec"]["behavior"]["scaleDown"][
                "stabilizationWindowSeconds"] == DOWN_DELAY
            # Idle: KEDA's HPA reads the GPU metric and keeps one replica.
            await eventually(lambda: any(
                m.get("type") == "External" for m in (get_json(
                    c, "-n", ns, f"hpa/keda-hpa-{name}").get("status") or {}).get(
                    "currentMetrics") or ()), 120, blocking=True,
                what="KEDA's HPA reading the GPU metric")
            assert replicas(c, ns, name)[0] == 1

            # Busy GPUs: scaled up to maxReplicas, the Deployment follows.
            load.level = BUSY
            await eventually(lambda: replicas(c, ns, name) == (3, 3, 3), 180, blocking=True,
                             what="the endpoint scaled to 3 by KEDA, the Deployment following")

            # Idle again: back to minReplicas once scaleDownDelay has passed.
            load.level = IDLE
            await eventually(lambda: replicas(c, ns, name) == (1, 1, 1), 180, blocking=True,
                             what="the endpoint scaled back to 1")
            rescaled = get_json(c, "-n", ns, "events", "--field-selector="
                                f"involvedObject.name=keda-hpa-{name},reason=SuccessfulRescale")
            messages = [e["message"] for e in rescaled["items"]]
            assert any("external metric" in m and "above target" in m for m in messages), \
                messages
            assert any("below target" in m for m in messages), messages
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_the_prometheus_url_the_hpa_stays_and_says_why(
    keda_cluster: LocalCluster,
) -> None:
    c, ns, name = keda_cluster, "no-url", "gpu-hpa"
    c.kubectl("create", "namespace", ns)
    async with running_operator(c):
        apply(c, endpoint(name, scaling={"minReplicas": 1, "maxReplicas": 3,
                                         "targetGPUUtilization": TARGET}), ns)
        obj = await eventually(
            lambda: cond_is(c, ns, name, "ScalingReady", "False", "GpuMetricsUnavailable"),
            120, blocking=True, what="ScalingReady False GpuMetricsUnavailable")
    message = next(x["message"] for x in obj["status"]["conditions"]
                   if x["type"] == "ScalingReady")
    assert "--gpu-metrics-prometheus-url is not set" in message
    assert "KEDA is not installed" not in message  # KEDA is, here
    hpa = get_json(c, "-n", ns, f"hpa/{name}")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert get_json(c, "-n", ns, f"scaledobjects.keda.sh/{name}") is None


async def test_without_keda_the_hpa_stays_and_says_why(
    crds: LocalCluster, namespace: str,
) -> None:
    c, ns, name = crds, namespace, "gpu-hpa"
    assert c.kubectl("get", "crd", "scaledobjects.keda.sh", check=False).returncode != 0
    async with running_operator(c, "--gpu-metrics-prometheus-url", "http://127.0.0.1:9"):
        apply(c, endpoint(name, scaling={"minReplicas": 1, "maxReplicas": 3,
                                         "targetGPUUtilization": TARGET,
                                         "targetMemoryUtilization": 70}), ns)
        obj = await eventually(
            lambda: cond_is(c, ns, name, "ScalingReady", "False", "GpuMetricsUnavailable"),
            120, blocking=True, what="ScalingReady False GpuMetricsUnavailable")
        warned = await eventually(
            lambda: (get_json(c, "-n", ns, "events", "--field-selector=reason="
                              "GpuMetricsUnavailable") or {}).get("items"),
            60, blocking=True, what="a Warning Event GpuMetricsUnavailable")
    message = next(x["message"] for x in obj["status"]["conditions"]
                   if x["type"] == "ScalingReady")
    assert "KEDA is not installed" in message
    assert "--gpu-metrics-prometheus-url" not in message  # it is set
    assert warned[0]["type"] == "Warning"
    hpa = get_json(c, "-n", ns, f"hpa/{name}")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["memory"]
