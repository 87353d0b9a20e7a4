"""Selection that holds on the real control plane: no flip-flop on causes no recipe can
fix, one move then a backoff, no herd in a burst, manual means manual."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, inventory_nodes  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    ReconcileLog,
    apply,
    cond_is,
    condition,
    endpoint,
    ep,
    get_json,
    recipe,
    running_operator,
    settled,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

GRACE = 5
SPEC_EXAMPLES = Path(__file__).parent / "spec_examples"
PRIVATE_TAINT = "amd.com/aim-test-private"
MI300A = {"deviceId": "74a0", "productName": "AMD_Instinct_MI300A", "family": "AI",
          "vram": "128G", "cuCount": "228", "driverVersion": "6.10.5"}


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, "--unschedulable-grace", str(GRACE)) as app:
        yield app


@pytest.fixture(scope="module")
def reconcile_log(operator: App) -> ReconcileLog:
    return ReconcileLog(operator)


def selected_at(obj: Any) -> datetime:
    return datetime.fromisoformat(obj["status"]["recipe"]["selectedAt"].replace("Z", "+00:00"))


async def past_the_grace(obj: Any) -> None:
    """Let the endpoint's grace run out (the fact under test is what happens after it)."""
    left = selected_at(obj) + timedelta(seconds=GRACE + 2) - datetime.now(UTC)
    await asyncio.sleep(max(left.total_seconds(), 0.0))


def gpu_nodes(cluster: LocalCluster, device_id: str) -> list[str]:
    out = get_json(cluster, "nodes", "-l", f"amd.com/gpu.device-id={device_id}")
    return [n["metadata"]["name"] for n in out["items"]]


def deployment(cluster: LocalCluster, ns: str, name: str) -> Any:
    return get_json(cluster, "-n", ns, "deployment", name)


async def test_a_cause_no_recipe_can_fix_never_moves_the_endpoint(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog
) -> None:
    """The spec's production example as written: its cache PVC asks for a storage class
    the cluster does not have, so its pods never schedule. Two GPU pools could serve
    it; moving between them would change nothing, so it stays and says why."""
    doc = yaml.safe_load((SPEC_EXAMPLES / "aimendpoint-qwen-32b-production.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    name = doc["metadata"]["name"]
    apply(crds, doc, namespace)
    obj = await eventually(
        lambda: (o := cond_is(crds, namespace, name, "Degraded", "True", "Unschedulable"))
        and "PersistentVolumeClaim" in condition(o, "Degraded")["message"] and o,
        120, what="Degraded: Unschedulable naming the PVC", blocking=True)
    first = obj["status"]["recipe"]
    assert condition(obj, "RecipeSelected")["status"] == "True"
    generation = deployment(crds, namespace, name)["metadata"]["generation"]
    await past_the_grace(obj)
    await reconcile_log.reconcile(f"{namespace}/{name}")
    obj = ep(crds, namespace, name)
    assert obj["status"]["recipe"]["recipeName"] == first["recipeName"]
    assert obj["status"]["recipe"]["selectedAt"] == first["selectedAt"]
    assert deployment(crds, namespace, name)["metadata"]["generation"] == generation
    # And another reconcile writes nothing of this endpoint's (other writes of the
    # operator, e.g. AIMRecipe fit refreshes as other tests' pods go, may happen).
    await settled(operator, crds, namespace)

    def versions() -> list[str]:
        return [get_json(crds, "-n", namespace, kind, n)["metadata"]["resourceVersion"]
                for kind, n in ((f"aimendpoints.{GROUP}", name), ("configmap", f"{name}-config"),
                                ("service", name))]

    before = versions()
    await reconcile_log.reconcile(f"{namespace}/{name}")
    await settled(operator, crds, namespace)
    assert versions() == before


async def test_one_move_then_no_move_back_within_the_backoff(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog
) -> None:
    model = f"acme/stable-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("on-mi300x", model, "MI300X", 1), namespace)
    apply(crds, recipe("on-mi250x", model, "MI250X", 1), namespace)
    apply(crds, endpoint("mover", model), namespace)
    obj = await wait_ready(crds, namespace, "mover")
    assert obj["status"]["recipe"]["recipeName"] == "on-mi300x"
    mi300x, mi250x = gpu_nodes(crds, "74a1"), gpu_nodes(crds, "7408")
    pods = ["delete", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=mover",
            "--wait=false"]
    try:
        for n in mi300x:
            crds.kubectl("cordon", n)
        crds.kubectl(*pods)
        obj = await eventually(
            lambda: cond_is(crds, namespace, "mover", "RecipeSelected", "True", "Reselected"),
            90, what="moved", blocking=True)
        assert obj["status"]["recipe"]["recipeName"] == "on-mi250x"
        [left] = obj["status"]["recipe"]["abandoned"]
        assert (left["recipe"], left["count"]) == ("on-mi300x", 1)
        # The pool it left is back, the one it runs on is gone: still no move back.
        for n in mi300x:
            crds.kubectl("uncordon", n)
        for n in mi250x:
            crds.kubectl("cordon", n)
        crds.kubectl(*pods)
        obj = await eventually(
            lambda: cond_is(crds, namespace, "mover", "Degraded", "True", "Unschedulable"),
            60, what="pods of on-mi250x unschedulable", blocking=True)
        await past_the_grace(obj)
        await reconcile_log.reconcile(f"{namespace}/mover")
        rec = ep(crds, namespace, "mover")["status"]["recipe"]
        assert rec["recipeName"] == "on-mi250x", rec
        back = next(c for c in rec["candidates"] if c["recipe"] == "on-mi300x")
        assert (back["verdict"], back["reason"]) == ("Rejected", "UnschedulableBackoff"), back
        assert left["until"] in back["message"]
    finally:
        for n in mi300x + mi250x:
            crds.kubectl("uncordon", n, check=False)


@pytest.fixture
def seven_mi300a(crds: LocalCluster, namespace: str) -> Iterator[list[str]]:
    """Seven 4-GPU nodes of a GPU model no other test uses: room for seven replicas."""
    inv = {"nodeGroups": [{"name": "mi300a", "prefix": f"{namespace}-mi300a", "count": 7,
                           "gpus": 4, "gpu": MI300A,
                           "taints": [{"key": PRIVATE_TAINT, "value": namespace,
                                       "effect": "NoSchedule"}]}]}
    nodes = list(inventory_nodes(inv))
    crds.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", "-",
                 input=yaml.safe_dump_all(nodes))
    names = [n["metadata"]["name"] for n in nodes]
    yield names
    crds.kubectl("delete", "node", *names, "--wait=false", check=False)


async def test_a_burst_gets_promised_gpus_or_a_clear_no_never_a_herd(
    crds: LocalCluster, namespace: str, operator: App, seven_mi300a: list[str]
) -> None:
    model = f"acme/burst-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("burst", model, "MI300A", 4), namespace)
    names = [f"burst-{i:02d}" for i in range(12)]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(
        [endpoint(n, model) for n in names]))

    def outcome() -> dict[str, str] | None:
        items = get_json(crds, "-n", namespace, f"aimendpoints.{GROUP}")["items"]
        out: dict[str, str] = {}
        for o in items:
            if o["metadata"]["name"] not in names:
                continue
            sel = condition(o, "RecipeSelected")
            if sel is None:
                return None
            if sel["status"] == "True" and o["status"].get("readyReplicas") != 1:
                return None  # chosen: its pod must be bound and running
            out[o["metadata"]["name"]] = sel["reason"] if sel["status"] == "False" else "Ready"
        return out if len(out) == 12 else None

    result = await eventually(outcome, 180, what="every burst endpoint decided",
                              blocking=True)
    assert sorted(result.values()).count("Ready") == 7, result
    waiting = [n for n, r in result.items() if r != "Ready"]
    assert len(waiting) == 5 and {result[n] for n in waiting} == {"NoFeasibleCandidate"}
    for n in waiting:
        msg = condition(ep(crds, namespace, n), "RecipeSelected")["message"]
        assert "InsufficientFreeGPUs" in msg, msg
    # Nobody moved, and it stays so once the operator is idle.
    await settled(operator, crds, namespace)
    for n in names:
        assert ep(crds, namespace, n)["status"]["recipe"]["reason"] != "Reselected"
    assert await asyncio.to_thread(outcome) == result


async def test_manual_takes_what_it_is_told_and_derives_a_missing_gpu_count(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    model = f"acme/manual-{uuid.uuid4().hex[:6]}"
    flex = recipe("flex", model, "MI300X", 1)
    four = copy.deepcopy(recipe("x", model, "MI300X", 4)["spec"]["configurations"][0])
    flex["spec"]["configurations"].append(four)
    apply(crds, flex, namespace)
    apply(crds, recipe("on-mi325x", model, "MI325X", 2), namespace)
    # gpuCount 2 on MI300X: no configuration has it; derived from the 1-GPU one.
    apply(crds, endpoint("manual", model, recipe={
        "autoSelect": False, "gpuCount": 2, "hardware": "MI300X"}), namespace)
    obj = await wait_ready(crds, namespace, "manual")
    rec = obj["status"]["recipe"]
    assert (rec["recipeName"], rec["hardware"], rec["gpuCount"]) == ("flex", "MI300X", 2), rec
    assert "derived from its 1 GPU configuration" in rec["message"]
    c = deployment(crds, namespace, "manual")["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["amd.com/gpu"] == "2"
    line = " ".join([*c.get("command", []), *c.get("args", [])])
    assert "--tensor-parallel-size 2" in line, line
    mi325 = next(x for x in rec["candidates"] if x["recipe"] == "on-mi325x")
    assert mi325["reason"] == "HardwareMismatch"
    # Pinned hardware in automatic mode narrows the same way.
    apply(crds, endpoint("pinned", model, recipe={"hardware": "MI325X"}), namespace)
    obj = await wait_ready(crds, namespace, "pinned")
    assert obj["status"]["recipe"]["hardware"] == "MI325X"
