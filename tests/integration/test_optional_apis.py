"""Conditions for optional APIs the spec asks for, followed as the APIs come and go, on
private control planes (the tests install and delete cluster-wide CRDs and APIServices).

* ``monitoring.enabled`` without the Prometheus Operator's CRDs:
  ``MonitoringReady=False PrometheusOperatorNotInstalled`` and a Warning Event, the
  endpoint Ready all the same; the CRDs installed: the ServiceMonitor and the rule are
  created, ``MonitoringReady=True``; the CRDs deleted: back to not installed; installed
  again: followed again. No restart of the operator.
* ``scaling.targetGPUUtilization`` without a custom metrics API:
  ``ScalingReady=False GpuMetricsUnavailable``, a Warning Event, and the HPA on CPU
  only; an APIService ``v1beta1.custom.metrics.k8s.io`` that the kube-apiserver cannot
  reach (Available=False) changes nothing; once it answers (a tiny HTTPS server on this
  machine behind an ExternalName Service, as kwokctl does for metrics-server) and the
  kube-apiserver marks it Available, the HPA gets its GPU metric and ``ScalingReady=True``;
  the APIService deleted: back to CPU only.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, monitoring_crds  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
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

NS = "apis"
MONITORING_CRDS = ("crd/servicemonitors.monitoring.coreos.com",
                   "crd/prometheusrules.monitoring.coreos.com")
CUSTOM_METRICS = "v1beta1.custom.metrics.k8s.io"


def gpu_cluster(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    c = make_cluster(full=True)
    c.apply_inventory()
    install_crds(c)
    c.kubectl("create", "namespace", NS)
    return c


def warnings(c: LocalCluster, name: str, reason: str) -> int:
    """How many times the Warning ``reason`` was said about endpoint ``name`` (a repeat
    of the same Event counts up)."""
    out = get_json(c, "-n", NS, "events", "--field-selector",
                   f"involvedObject.name={name},reason={reason},type=Warning") or {}
    return sum(int(e.get("count") or 1) for e in out.get("items") or ())


# -- monitoring ------------------------------------------------------------------------------
async def test_monitoring_ready_follows_the_prometheus_operator_crds_coming_and_going(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c = gpu_cluster(make_cluster)
    crds = monitoring_crds()

    def not_installed() -> Any:
        return cond_is(c, NS, "mon", "MonitoringReady", "False",
                       "PrometheusOperatorNotInstalled")

    def monitored() -> Any:
        ok = cond_is(c, NS, "mon", "MonitoringReady", "True", "MonitoringApplied")
        sm = get_json(c, "-n", NS, "servicemonitors.monitoring.coreos.com/mon")
        pr = get_json(c, "-n", NS, "prometheusrules.monitoring.coreos.com/mon")
        return (ok, sm) if ok and sm and pr else None

    async with running_operator(c):
        apply(c, endpoint("mon", monitoring={"enabled": True}), NS)
        obj = await eventually(not_installed, 60, what="PrometheusOperatorNotInstalled",
                               blocking=True)
        message = next(x for x in obj["status"]["conditions"]
                       if x["type"] == "MonitoringReady")["message"]
        assert "ServiceMonitor mon" in message and "install the Prometheus Operator" in message
        await eventually(lambda: warnings(c, "mon", "PrometheusOperatorNotInstalled") >= 1,
                         60, what="the Warning Event", blocking=True)
        # Serving does not need the Prometheus Operator: Ready, and not Degraded by it.
        ready = await wait_ready(c, NS, "mon")
        degraded = next(x for x in ready["status"]["conditions"] if x["type"] == "Degraded")
        assert degraded["status"] == "False", degraded

        c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", str(crds))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", *MONITORING_CRDS)
        obj, sm = await eventually(monitored, 60, what="MonitoringReady=True and the "
                                   "ServiceMonitor, once the CRDs are served", blocking=True)
        refs = [r for r in sm["metadata"].get("ownerReferences") or () if r.get("controller")]
        assert refs and refs[0]["uid"] == obj["metadata"]["uid"]

        # The Prometheus Operator uninstalled: its CRDs (and so our objects) go.
        c.kubectl("delete", "--wait=true", "--timeout=60s", *MONITORING_CRDS)
        await eventually(not_installed, 60, what="PrometheusOperatorNotInstalled again",
                         blocking=True)
        await eventually(lambda: warnings(c, "mon", "PrometheusOperatorNotInstalled") >= 2,
                         60, what="a Warning Event for the change", blocking=True)
        assert cond_is(c, NS, "mon", "Ready", "True") is not None

        # Installed again: followed again, by the same running operator.
        c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", str(crds))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", *MONITORING_CRDS)
        await eventually(monitored, 60, what="MonitoringReady=True after a re-install",
                         blocking=True)


# -- custom metrics --------------------------------------------------------------------------
class _Discovery(BaseHTTPRequestHandler):
    """Just enough of an aggregated custom metrics API for the kube-apiserver's
    availability check (its discovery document)."""

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/apis/custom.metrics.k8s.io/v1beta1":
            self.send_error(404)
            return
        body = json.dumps({"kind": "APIResourceList", "apiVersion": "v1",
                           "groupVersion": "custom.metrics.k8s.io/v1beta1",
                           "resources": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def discovery_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 serving the custom metrics discovery document: its
    port."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", "tls.key", "-out", "tls.crt", "-days", "1",
                    "-subj", "/CN=custom-metrics"], cwd=tmp_path, check=True,
                   capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def custom_metrics_api(port: int) -> str:
    """The APIService and the Service it names: an ExternalName to 127.0.0.1 (Endpoints
    may not hold loopback addresses, and nothing routes a ClusterIP here)."""
    svc = {"name": "custom-metrics", "namespace": NS}
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(svc),
         "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": CUSTOM_METRICS},
         "spec": {"group": "custom.metrics.k8s.io", "version": "v1beta1",
                  "service": {**svc, "port": port}, "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ])


def available(c: LocalCluster) -> str | None:
    obj = get_json(c, f"apiservice/{CUSTOM_METRICS}")
    for cond in ((obj or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Available":
            return str(cond.get("status"))
    return None


def hpa_metrics(c: LocalCluster) -> list[dict[str, Any]] | None:
    hpa = get_json(c, "-n", NS, "horizontalpodautoscaler/gpu")
    return hpa["spec"]["metrics"] if hpa else None


CPU_80 = [{"type": "Resource", "resource": {
    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


async def test_scaling_ready_follows_the_custom_metrics_api(
    make_cluster: Callable[..., LocalCluster], discovery_server: int,
) -> None:
    c = gpu_cluster(make_cluster)

    def unavailable() -> Any:
        return (cond_is(c, NS, "gpu", "ScalingReady", "False", "GpuMetricsUnavailable")
                if hpa_metrics(c) == CPU_80 else None)

    def gpu_metric() -> list[str] | None:
        metrics = hpa_metrics(c) or []
        ok = cond_is(c, NS, "gpu", "ScalingReady", "True", "MetricsAvailable")
        return [m["type"] for m in metrics] if ok and len(metrics) == 1 else None

    async with running_operator(c):
        apply(c, endpoint("gpu", scaling={"minReplicas": 1, "maxReplicas": 3,
                                          "targetGPUUtilization": 70}), NS)
        obj = await eventually(unavailable, 60, what="GpuMetricsUnavailable, HPA on CPU 80%",
                               blocking=True)
        message = next(x for x in obj["status"]["conditions"]
                       if x["type"] == "ScalingReady")["message"]
        assert "scales on CPU/memory only" in message and "prometheus-adapter" in message
        await eventually(lambda: warnings(c, "gpu", "GpuMetricsUnavailable") >= 1, 60,
                         what="the Warning Event", blocking=True)

        # Registered but not reachable yet (nothing on that port of the Service):
        # Available=False, which is no custom metrics API.
        api = custom_metrics_api(discovery_server)
        apply(c, api.replace(f"port: {discovery_server}", "port: 1"), NS)
        await eventually(lambda: available(c) == "False", 60,
                         what="the APIService Available=False", blocking=True)
        assert unavailable() is not None

        # Reachable: the kube-apiserver marks it Available, the HPA gets its GPU metric.
        apply(c, api, NS)
        await eventually(lambda: available(c) == "True", 90,
                         what="the APIService Available=True", blocking=True)
        types = await eventually(gpu_metric, 60, what="ScalingReady=True and the GPU metric",
                                 blocking=True)
        assert types == ["Pods"]
        assert hpa_metrics(c) == [{"type": "Pods", "pods": {
            "metric": {"name": "gpu_gfx_activity"},
            "target": {"type": "AverageValue", "averageValue": "70"}}}]

        # The custom metrics API removed: CPU only again, said again.
        c.kubectl("delete", f"apiservice/{CUSTOM_METRICS}", "--wait=true")
        await eventually(unavailable, 60, what="GpuMetricsUnavailable again", blocking=True)
        await eventually(lambda: warnings(c, "gpu", "GpuMetricsUnavailable") >= 2, 60,
                         what="a Warning Event for the change", blocking=True)
