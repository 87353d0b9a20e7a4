"""The local control plane itself: real binaries, simulated AMD GPU nodes."""

from __future__ import annotations

import json
import os
import urllib.error

import pytest
import yaml
from localcluster import DEFAULT_INVENTORY, LocalCluster, inventory_nodes
from support import eventually

pytestmark = pytest.mark.cluster


def test_binaries_are_the_pinned_release(cluster: LocalCluster) -> None:
    from localcluster import versions

    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == versions()["KUBERNETES_VERSION"]


async def test_gpu_nodes_are_ready_with_labeller_labels(cluster: LocalCluster) -> None:
    expected = {n["metadata"]["name"]: n for n in
                inventory_nodes(yaml.safe_load(DEFAULT_INVENTORY.read_text()))}

    def ready_nodes() -> dict[str, dict]:  # type: ignore[type-arg]
        items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return {n["metadata"]["name"]: n for n in items
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in n.get("status", {}).get("conditions", []))}

    nodes = await eventually(lambda: (r := ready_nodes()) and set(expected) <= set(r) and r,
                             what="the simulated nodes Ready", blocking=True)
    mi300x = [n for n in nodes.values()
              if n["metadata"]["labels"].get("amd.com/gpu.device-id") == "74a1"]
    assert len(mi300x) >= 2
    for n in mi300x:
        labels = n["metadata"]["labels"]
        assert labels["amd.com/gpu.product-name"] == "AMD_Instinct_MI300X_OAM"
        assert labels["amd.com/gpu.vram"] == "192G"
        assert labels["beta.amd.com/gpu.device-id.74a1"] == "8"
        assert n["status"]["allocatable"]["amd.com/gpu"] == "8"
    mi325x = [n for n in nodes.values()
              if n["metadata"]["labels"].get("amd.com/gpu.device-id") == "74a5"]
    assert mi325x and all(n["metadata"]["labels"]["amd.com/gpu.product-name"]
                          == "AMD_Instinct_MI325_OAM" for n in mi325x)
    mi250x = [n for n in nodes.values()
              if n["metadata"]["labels"].get("amd.com/gpu.device-id") == "7408"]
    assert mi250x and all(n["status"]["allocatable"]["amd.com/gpu"] == "4" for n in mi250x)
    cpu_only = [n for n in nodes.values() if "amd.com/gpu" not in n["status"]["allocatable"]]
    assert len(cpu_only) == 1


async def test_gpu_pod_is_scheduled_on_a_matching_node_and_runs(
        cluster: LocalCluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vllm-tp4", "namespace": namespace},
        "spec": {
            "nodeSelector": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
            "containers": [{"name": "vllm", "image": "rocm/vllm:latest",
                            "resources": {"limits": {"amd.com/gpu": "4"}}}],
        },
    }
    # The namespace's default ServiceAccount arrives asynchronously.
    await eventually(lambda: cluster.kubectl("apply", "-f", "-", input=json.dumps(pod),
                                             check=False).returncode == 0, 30,
                     what="the pod created", blocking=True)

    def running() -> dict | None:  # type: ignore[type-arg]
        p = json.loads(cluster.kubectl("get", "pod", "vllm-tp4", "-n", namespace,
                                       "-o", "json").stdout)
        return p if p.get("status", {}).get("phase") == "Running" else None

    p = await eventually(running, 60, what="the GPU pod Running", blocking=True)
    node = json.loads(cluster.kubectl("get", "node", p["spec"]["nodeName"], "-o", "json").stdout)
    assert node["metadata"]["labels"]["amd.com/gpu.device-id"] == "74a1"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])


async def test_pod_asking_more_gpus_than_any_node_has_stays_pending(
        cluster: LocalCluster, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "too-big", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": "x",
                                    "resources": {"limits": {"amd.com/gpu": "16"}}}]}}
    await eventually(lambda: cluster.kubectl("apply", "-f", "-", input=json.dumps(pod),
                                             check=False).returncode == 0, 30,
                     what="the pod created", blocking=True)

    def unschedulable() -> bool:
        p = json.loads(cluster.kubectl("get", "pod", "too-big", "-n", namespace,
                                       "-o", "json").stdout)
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   for c in p.get("status", {}).get("conditions", []))

    await eventually(unschedulable, 60, what="the pod marked Unschedulable", blocking=True)


def test_teardown_leaves_no_process_behind(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(full=False)
    pids = [p.pid for p in c.procs.values()]
    assert pids
    c.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_etcd_compaction_is_available(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(full=False, watch_cache=False)
    before = c.etcd_revision()
    c.kubectl("create", "configmap", "a", "-n", "default")
    rev = c.compact_etcd()
    # The apiserver keeps writing (leases, events), so the revision after may be higher;
    # what matters is that the compaction covers our write and took effect.
    assert rev > before
    assert c.etcd_request("/v3/kv/range", {"key": "AA==", "revision": str(rev)})["header"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        c.etcd_request("/v3/kv/range", {"key": "AA==", "revision": str(rev - 1)})
    assert "compacted" in refused.value.read().decode()
