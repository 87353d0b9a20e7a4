"""The real `aim-controller` CLI as processes: probes, metrics, leader election
handover between two replicas, clean shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from localcluster import LocalCluster, free_port  # type: ignore[import-not-found]
from support import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

CLI = Path(sys.executable).parent / "aim-controller"
LEASE = "aim-controller-test-lease"


class Proc:
    def __init__(self, cluster: LocalCluster, identity: str, log_dir: Path) -> None:
        self.identity = identity
        self.metrics, self.health = free_port(), free_port()
        self.log = (log_dir / f"{identity}.log").open("w")
        self.p = subprocess.Popen(
            [str(CLI), "--kubeconfig", str(cluster.kubeconfig), "--leader-elect",
             "--leader-election-id", LEASE, "--leader-election-namespace", "default",
             "--identity", identity, "--operator-namespace", "aim-system",
             "--metrics-bind-address", f"127.0.0.1:{self.metrics}",
             "--health-probe-bind-address", f"127.0.0.1:{self.health}",
             "--leader-elect-lease-duration", "6", "--leader-elect-renew-deadline", "4",
             "--leader-elect-retry-period", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ},
        )

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def reconciles(self) -> float:
        _, text = self.get(self.metrics, "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("controller_runtime_reconcile_total{") and \
                    'controller="aimendpoint"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.log.close()


def holder(cluster: LocalCluster) -> str:
    res = cluster.kubectl("get", "lease", "-n", "default", LEASE, "-o", "json", check=False)
    if res.returncode != 0:
        return ""
    return str(json.loads(res.stdout)["spec"].get("holderIdentity") or "")


@pytest.fixture
def procs(crds: LocalCluster, tmp_path: Path) -> Iterator[list[Proc]]:
    made: list[Proc] = []
    yield made
    for p in made:
        p.stop()


async def test_two_replicas_hand_over_on_sigterm(
    crds: LocalCluster, namespace: str, procs: list[Proc], tmp_path: Path
) -> None:
    a = Proc(crds, "replica-a", tmp_path)
    procs.append(a)
    await eventually(lambda: a.get(a.health, "/readyz")[0] == 200, what="a ready", blocking=True)
    assert a.get(a.health, "/healthz")[0] == 200
    await eventually(lambda: holder(crds) == "replica-a", what="a leads", blocking=True)
    b = Proc(crds, "replica-b", tmp_path)
    procs.append(b)
    # The standby is ready (warm caches) but does not lead or reconcile.
    await eventually(lambda: b.get(b.health, "/readyz")[0] == 200, what="b ready", blocking=True)

    ep = {"apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMEndpoint",
          "metadata": {"name": "ha", "namespace": namespace},
          "spec": {"model": {"id": "Qwen/Qwen2.5-7B-Instruct"}}}
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump(ep))
    crds.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=90s",
                 "aimendpoint/ha", timeout=120)
    assert a.reconciles() > 0
    assert b.reconciles() == 0
    assert holder(crds) == "replica-a"

    a.p.send_signal(signal.SIGTERM)
    assert a.p.wait(timeout=60) == 0
    # A released the lease on the way out, so b takes over on its next retry.
    await eventually(lambda: holder(crds) == "replica-b", what="b leads", blocking=True)
    ep["spec"]["scaling"] = {"minReplicas": 1, "maxReplicas": 3}
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump(ep))

    def observed() -> bool:
        o = json.loads(crds.kubectl("get", "-n", namespace, "aimendpoint", "ha",
                                    "-o", "json").stdout)
        return bool(o["status"].get("observedGeneration") == o["metadata"]["generation"])

    await eventually(observed, what="b reconciled the change", blocking=True)
    assert b.reconciles() > 0
    assert crds.kubectl("get", "-n", namespace, "hpa", "ha", check=False).returncode == 0

    # kill -9: no release; the standby takes over once the lease (6 s) expires.
    c = Proc(crds, "replica-c", tmp_path)
    procs.append(c)
    await eventually(lambda: c.get(c.health, "/readyz")[0] == 200, what="c ready", blocking=True)
    assert holder(crds) == "replica-b"
    b.p.kill()
    b.p.wait(timeout=30)
    await eventually(lambda: holder(crds) == "replica-c", 60, what="c leads after kill -9",
                     blocking=True)
    ep["spec"]["scaling"] = {"minReplicas": 1, "maxReplicas": 1}
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump(ep))
    await eventually(observed, what="c reconciled the change", blocking=True)
    await eventually(lambda: crds.kubectl("get", "-n", namespace, "hpa", "ha",
                                          check=False).returncode != 0,
                     what="HPA pruned by c", blocking=True)
    assert c.reconciles() > 0

    c.p.send_signal(signal.SIGTERM)
    assert c.p.wait(timeout=60) == 0
    assert holder(crds) == ""
