"""Mixed-GPU nodes on the real control plane: the recipe engine's rules and the pods'
node affinity agree with what kube-scheduler does.

Two private kwok nodes, of models no other test uses (so the numbers are exact):

* ``<ns>-mix``: 4 MI210 and 4 MI300A, labelled as AMD's node labeller labels a node
  with several GPU models (count-encoded ``amd.com/gpu.device-id.<id>=<count>``);
* ``<ns>-one``: 4 MI300A labelled only with the count-encoded form of one model.

A 1-GPU MI210 replica runs on the mixed node; a 2-GPU MI210 replica is refused, with
the reason; a 4-GPU MI300A replica runs on the count-encoded single-model node and
never on the mixed one, though the mixed node has 4 MI300A, 8 free GPUs and more
CPU and memory (the scheduler's least-allocated scoring would pick it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yaml
from localcluster import KWOK_ANNOTATION, LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    apply,
    cond_is,
    endpoint,
    get_json,
    recipe,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

PRIVATE_TAINT = "amd.com/aim-test-private"
# (device-id, product-name, family, vram, cu-count) as the labeller reads them.
GPUS = {
    "MI210": ("740f", "AMD_Instinct_MI210", "AI", "64G", "104"),
    "MI300A": ("74a0", "AMD_Instinct_MI300A", "AI", "128G", "228"),
}
KINDS = ("device-id", "product-name", "family", "vram", "cu-count")


def labeller_labels(counts: dict[str, int]) -> dict[str, str]:
    """What AMD's node labeller writes for ``counts`` GPUs per model (its createLabels):
    the beta count-encoded form always; one value: the single-value forms; several:
    the plain count-encoded form."""
    labels: dict[str, str] = {}
    for i, kind in enumerate(KINDS):
        per_value: dict[str, int] = {}
        for model, n in counts.items():
            per_value[GPUS[model][i]] = per_value.get(GPUS[model][i], 0) + n
        for value, n in per_value.items():
            labels[f"beta.amd.com/gpu.{kind}.{value}"] = str(n)
            if len(per_value) == 1:
                labels[f"beta.amd.com/gpu.{kind}"] = labels[f"amd.com/gpu.{kind}"] = value
            else:
                labels[f"amd.com/gpu.{kind}.{value}"] = str(n)
    return labels


def kwok_node(name: str, gpus: int, labels: dict[str, str], namespace: str,
              cpu: int = 64) -> dict[str, Any]:
    resources = {"cpu": str(cpu), "memory": f"{4 * cpu}Gi", "pods": "110",
                 "amd.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "type": "kwok",
                                              **labels},
                     "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": [{"key": PRIVATE_TAINT, "value": namespace, "effect": "NoSchedule"}]},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


@pytest.fixture
def nodes(crds: LocalCluster, namespace: str) -> Iterator[tuple[str, str]]:
    mix, one = f"{namespace}-mix", f"{namespace}-one"
    # The mixed node is the bigger one, so the scheduler's least-allocated scoring
    # would pick it for any pod the affinity lets through.
    docs = [kwok_node(mix, 8, labeller_labels({"MI210": 4, "MI300A": 4}), namespace, cpu=256),
            kwok_node(one, 4, {"amd.com/gpu.device-id.74a0": "4"}, namespace)]
    assert "amd.com/gpu.device-id.740f" in docs[0]["metadata"]["labels"]
    assert "amd.com/gpu.device-id" not in docs[0]["metadata"]["labels"]
    crds.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", "-",
                 input=yaml.safe_dump_all(docs))
    yield mix, one
    crds.kubectl("delete", "node", mix, one, "--wait=false", check=False)


def pod_nodes(crds: LocalCluster, namespace: str, name: str) -> list[str]:
    pods = get_json(crds, "-n", namespace, "pods", "-l", f"app.kubernetes.io/instance={name}")
    return sorted(p["spec"].get("nodeName", "") for p in (pods or {}).get("items", []))


async def test_mixed_node_takes_one_gpu_replicas_and_refuses_tensor_parallel_ones(
    crds: LocalCluster, namespace: str, operator: App, nodes: tuple[str, str]
) -> None:
    mix, one = nodes
    apply(crds, recipe("single", "acme/mixed-single", "MI210", 1), namespace)
    apply(crds, recipe("tp2", "acme/mixed-tp2", "MI210", 2), namespace)
    apply(crds, recipe("tp4", "acme/counted-tp4", "MI300A", 4), namespace)

    # A 4-GPU MI300A replica: only the node whose GPUs are all MI300A.
    apply(crds, endpoint("tp4", "acme/counted-tp4"), namespace)
    obj = await wait_ready(crds, namespace, "tp4")
    assert obj["status"]["recipe"]["hardware"] == "MI300A"
    assert pod_nodes(crds, namespace, "tp4") == [one]

    # A 1-GPU MI210 replica: the mixed node, the only one with MI210 GPUs.
    apply(crds, endpoint("single", "acme/mixed-single"), namespace)
    obj = await wait_ready(crds, namespace, "single")
    assert (obj["status"]["recipe"]["hardware"], obj["status"]["recipe"]["gpuCount"]) == (
        "MI210", 1)
    assert pod_nodes(crds, namespace, "single") == [mix]

    # A 2-GPU MI210 replica: refused, and the candidate says why.
    apply(crds, endpoint("tp2", "acme/mixed-tp2"), namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "tp2", "RecipeSelected", "False",
                        "NoFeasibleCandidate"),
        30, what="tp2 refused", blocking=True)
    cand = obj["status"]["recipe"]["candidates"][0]
    assert cand["reason"] == "DoesNotFitOnOneNode", cand
    assert f"mixed GPU node {mix} takes 1-GPU replicas only" in cand["message"], cand
    assert "no per-model resource names" in cand["message"], cand
    assert get_json(crds, "-n", namespace, "deployment", "tp2") is None
    # The 4-GPU pod stayed off the mixed node, where 4 MI300A and 7 free GPUs are.
    assert pod_nodes(crds, namespace, "tp4") == [one]
