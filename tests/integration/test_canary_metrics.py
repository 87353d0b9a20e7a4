"""The canary's metric analysis against a real Prometheus (``--canary-prometheus-url``).

A small exporter in the test serves synthetic engine series for the endpoint's real
pods (``http_requests_total`` and ``vllm:e2e_request_latency_seconds``, with the
``namespace`` and ``pod`` labels a ServiceMonitor's scrape gives them; Prometheus
keeps them with ``honor_labels``): the stable pods answer within 0.5 s, the canary's
take up to 5 s. The canary's pods are healthy, so only the metrics can fail it: it is
rolled back with the latency evidence, the stable Deployment untouched."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, free_port  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    apply,
    condition,
    ep,
    get_json,
    running_operator,
)
from support import eventually
from test_canary import V2, canary_ep, deployment, events, image_of, phase, serving

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

PROMETHEUS = shutil.which("prometheus")
if not PROMETHEUS and not os.environ.get("AIM_REQUIRE_PROMETHEUS"):
    pytest.skip("prometheus not installed (make prometheus); set AIM_REQUIRE_PROMETHEUS=1 "
                "to fail instead", allow_module_level=True)

BUCKETS = ("0.5", "1", "5", "+Inf")


class Exporter:
    """Serves synthetic engine series for the pods it is told of; counters grow with
    time (10 requests a second per pod), each pod's requests all in one latency bucket."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], str] = {}  # (namespace, pod) -> bucket "le"
        self.start = time.monotonic()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text(self) -> str:
        n = int((time.monotonic() - self.start) * 10)
        lines = ["# TYPE http_requests_total counter",
                 "# TYPE vllm:e2e_request_latency_seconds histogram"]
        for (ns, pod), le in sorted(self.pods.items()):
            labels = f'namespace="{ns}",pod="{pod}"'
            lines.append(f'http_requests_total{{{labels},status="2xx"}} {n}')
            for b in BUCKETS:
                inside = b == "+Inf" or float(b) >= float(le)
                lines.append(f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="{b}"}} '
                             f"{n if inside else 0}")
            lines.append(f"vllm:e2e_request_latency_seconds_count{{{labels}}} {n}")
            lines.append(f"vllm:e2e_request_latency_seconds_sum{{{labels}}} {n * float(le)}")
        return "\n".join(lines) + "\n"


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    yield e
    e.server.shutdown()


@pytest.fixture
def prometheus(exporter: Exporter, tmp_path: Path) -> Iterator[str]:
    assert PROMETHEUS
    port = free_port()
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "engines", "honor_labels": True,
                                  "static_configs": [
                                      {"targets": [f"127.0.0.1:{exporter.port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)


def pod_names(cluster: LocalCluster, ns: str, name: str) -> list[str]:
    out = get_json(cluster, "-n", ns, "pods", "-l", f"app.kubernetes.io/instance={name}")
    return sorted(p["metadata"]["name"] for p in (out or {}).get("items") or ())


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def test_a_canary_slower_than_the_stable_is_rolled_back(
    crds: LocalCluster, namespace: str, exporter: Exporter, prometheus: str
) -> None:
    await eventually(lambda: ready(prometheus), 60, what="Prometheus ready", blocking=True)
    async with running_operator(crds, "--canary-prometheus-url", prometheus):
        before = await serving(crds, namespace, "slow", duration="20s")
        for pod in pod_names(crds, namespace, "slow"):
            exporter.pods[(namespace, pod)] = "0.5"
        apply(crds, canary_ep("slow", image=V2, duration="20s"), namespace)
        canary_pods = await eventually(
            lambda: [p for p in pod_names(crds, namespace, "slow") if "-canary-" in p], 60,
            what="the canary's pods", blocking=True)
        for pod in canary_pods:
            exporter.pods[(namespace, pod)] = "5"
        done = await phase(crds, namespace, "slow", "RolledBack", within=120)
    assert done["result"] == "Failed"
    assert "metric analysis failed: p95 latency" in done["message"], done["message"]
    failed = condition(ep(crds, namespace, "slow"), "CanaryFailed")
    assert failed is not None and failed["status"] == "True"
    stable = deployment(crds, namespace, "slow")
    assert stable["spec"]["template"] == before["spec"]["template"]
    assert image_of(stable) != V2


async def test_a_canary_as_fast_as_the_stable_is_promoted_on_its_metrics(
    crds: LocalCluster, namespace: str, exporter: Exporter, prometheus: str
) -> None:
    await eventually(lambda: ready(prometheus), 60, what="Prometheus ready", blocking=True)
    async with running_operator(crds, "--canary-prometheus-url", prometheus):
        await serving(crds, namespace, "fast", duration="20s")
        for pod in pod_names(crds, namespace, "fast"):
            exporter.pods[(namespace, pod)] = "0.5"
        apply(crds, canary_ep("fast", image=V2, duration="20s"), namespace)
        canary_pods = await eventually(
            lambda: [p for p in pod_names(crds, namespace, "fast") if "-canary-" in p], 60,
            what="the canary's pods", blocking=True)
        for pod in canary_pods:
            exporter.pods[(namespace, pod)] = "0.5"
        await phase(crds, namespace, "fast", "Succeeded", within=120)
        [event] = await eventually(lambda: events(crds, namespace, "fast", "CanaryPromoted"),
                                   30, what="a CanaryPromoted Event", blocking=True)
    assert "metric analysis passed: p95 latency" in event["message"], event["message"]
    assert image_of(deployment(crds, namespace, "fast")) == V2
