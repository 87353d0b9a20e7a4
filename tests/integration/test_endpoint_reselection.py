"""Stickiness and re-selection on the real control plane: an endpoint whose pods
cannot be scheduled any more moves to the next feasible recipe, and says why."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    apply,
    cond_is,
    condition,
    endpoint,
    get_json,
    recipe,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, "--unschedulable-grace", "2") as app:
        yield app


def gpu_nodes(cluster: LocalCluster, device_id: str) -> list[str]:
    out = get_json(cluster, "nodes", "-l", f"amd.com/gpu.device-id={device_id}")
    return [n["metadata"]["name"] for n in out["items"]]


async def test_unschedulable_pods_move_the_endpoint_to_the_next_feasible_recipe(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    model = f"acme/move-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("on-mi300x", model, "MI300X", 1), namespace)
    apply(crds, recipe("on-mi250x", model, "MI250X", 1), namespace)
    apply(crds, endpoint("mover", model), namespace)
    obj = await wait_ready(crds, namespace, "mover")
    first = obj["status"]["recipe"]
    assert first["recipeName"] == "on-mi300x", first
    hardware_ids = {"MI300X": "74a1", "MI250X": "7408"}
    nodes = gpu_nodes(crds, hardware_ids["MI300X"])
    try:
        # Running endpoints are not disturbed by capacity changes...
        for n in nodes:
            crds.kubectl("cordon", n)
        # ...until their pods cannot be placed any more.
        crds.kubectl("delete", "pods", "-n", namespace, "-l",
                     "app.kubernetes.io/instance=mover", "--wait=false")
        obj = await eventually(
            lambda: cond_is(crds, namespace, "mover", "RecipeSelected", "True", "Reselected"),
            90, what="reselected", blocking=True)
        rec = obj["status"]["recipe"]
        assert rec["recipeName"] == "on-mi250x"
        assert "on-mi300x" in rec["message"]
        await wait_ready(crds, namespace, "mover", within=90)
        dep = get_json(crds, "-n", namespace, "deployment", "mover")
        affinity = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        assert hardware_ids["MI250X"] in str(affinity)
        obj = get_json(crds, "-n", namespace, "aimendpoints.aim.engine.amd.com/mover")
        assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]
        reasons = {e["reason"] for e in get_json(
            crds, "-n", namespace, "events",
            "--field-selector=involvedObject.name=mover")["items"]}
        assert "Reselected" in reasons
    finally:
        for n in nodes:
            crds.kubectl("uncordon", n)
