"""What `kubectl` shows of an AIMEndpoint, as the README says it does: the printer
columns of `kubectl get aiep -o wide`; `kubectl scale` past scaling.maxReplicas said in
the Available condition and a Warning Event; pods that cannot be scheduled announced
by one Warning Event. On the real control plane, with the operator in-process."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from localcluster import LocalCluster, inventory_nodes  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    ReconcileLog,
    apply,
    cond_is,
    condition,
    endpoint,
    ep,
    get_json,
    running_operator,
    settled,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


@pytest.fixture(scope="module")
def reconcile_log(operator: App) -> ReconcileLog:
    return ReconcileLog(operator)


def warnings(cluster: LocalCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "events", f"--field-selector=involvedObject.name={name}")
    return [e for e in (out or {}).get("items") or ()
            if e.get("type") == "Warning" and e.get("reason") == reason]


def table(cluster: LocalCluster, ns: str, name: str, *args: str) -> dict[str, str]:
    """The one row by the header's column offsets (a column may be empty: CANARY)."""
    header, row = cluster.kubectl("get", "-n", ns, "aiep", name, *args).stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


async def test_kubectl_get_aiep_prints_the_columns_the_readme_names(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("cols"), namespace)
    obj = await wait_ready(crds, namespace, "cols")
    st = obj["status"]
    wide = table(crds, namespace, "cols", "-o", "wide")
    assert list(wide) == ["NAME", "MODEL", "RECIPE", "HARDWARE", "GPUS", "READY", "REPLICAS",
                          "CANARY", "URL", "AGE"]
    assert [wide[k] for k in ("NAME", "RECIPE", "HARDWARE", "GPUS", "READY", "REPLICAS", "URL")] \
        == ["cols", st["recipe"]["recipeName"], st["recipe"]["hardware"],
            str(st["recipe"]["gpuCount"]), "True", str(st["readyReplicas"]), st["url"]]
    assert wide["CANARY"] == ""  # no canary: status.canary is not there
    assert "URL" not in table(crds, namespace, "cols")  # only with -o wide

    # The README's `kubectl get aiep ... -o wide  # model, recipe, ...` names these columns.
    [claim] = re.findall(r"kubectl get aiep .*-o wide +# (.+)", README.read_text())
    assert [c.strip().lower() for c in claim.split(",")] == [
        k.lower() for k in wide if k not in ("NAME", "AGE")]


async def test_kubectl_scale_above_max_replicas_is_said_not_silently_clamped(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog
) -> None:
    # No autoscaler (min = max): an HPA would scale 9 back to 2 itself.
    apply(crds, endpoint("clamp", scaling={"minReplicas": 2, "maxReplicas": 2}), namespace)
    obj = await wait_ready(crds, namespace, "clamp")
    assert condition(obj, "Available")["message"].endswith(  # type: ignore[index]
        "; spec.replicas 1 is below scaling.minReplicas 2: the Deployment runs 2")
    crds.kubectl("scale", "-n", namespace, "aiep/clamp", "--replicas=9")
    note = "spec.replicas 9 is above scaling.maxReplicas 2: the Deployment runs 2"

    def said() -> Any:
        obj = ep(crds, namespace, "clamp")
        return obj if note in (condition(obj, "Available") or {}).get("message", "") else None

    await eventually(said, 60, what="the clamp in the Available message", blocking=True)
    assert get_json(crds, "-n", namespace, "deployment", "clamp")["spec"]["replicas"] == 2
    # Once per change: another status write (a new generation) and another reconcile
    # do not repeat it.
    crds.kubectl("patch", "-n", namespace, "aiep/clamp", "--type=merge",
                 "-p", '{"spec": {"scaling": {"targetCPUUtilization": 70}}}')
    await eventually(lambda: (o := ep(crds, namespace, "clamp"))["status"][
        "observedGeneration"] == o["metadata"]["generation"] and o, 60,
        what="the new generation reported", blocking=True)
    await reconcile_log.reconcile(f"{namespace}/clamp")
    await settled(operator, crds, namespace)
    [event] = warnings(crds, namespace, "clamp", "ReplicasClamped")
    assert (event["message"], event.get("count", 1)) == (note, 1)

    crds.kubectl("scale", "-n", namespace, "aiep/clamp", "--replicas=2")
    await eventually(lambda: (o := ep(crds, namespace, "clamp"))
                     and "spec.replicas" not in condition(o, "Available")["message"],
                     60, what="back within bounds", blocking=True)
    assert len(warnings(crds, namespace, "clamp", "ReplicasClamped")) == 1


async def test_unschedulable_pods_emit_one_warning_event(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    # A cache PVC of a storage class the cluster does not have: its pods never schedule.
    apply(crds, endpoint("stuck", cache={"enabled": True, "size": "10Gi",
                                         "storageClass": "no-such-class"}), namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "stuck", "Degraded", "True", "Unschedulable"),
        120, what="Degraded: Unschedulable", blocking=True)
    message = condition(obj, "Degraded")["message"]  # type: ignore[index]
    # A node joins (other tests' nodes come and go too): the scheduler retries the pod
    # and rewrites "0/N nodes are available". The condition follows; the cause is the
    # same, so no second Warning.
    # Tainted, so no other test's pod lands on it (it still counts in the scheduler's N).
    [joiner] = inventory_nodes({"nodeGroups": [{
        "name": "joiner", "prefix": f"{namespace}-joiner", "count": 1,
        "taints": [{"key": "amd.com/aim-test-private", "value": namespace,
                    "effect": "NoSchedule"}]}]})
    node = joiner["metadata"]["name"]
    crds.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", "-",
                 input=json.dumps(joiner))
    try:
        await eventually(
            lambda: (o := cond_is(crds, namespace, "stuck", "Degraded", "True",
                                  "Unschedulable"))
            and condition(o, "Degraded")["message"] != message,  # type: ignore[index]
            120, what="the scheduler's new node count in Degraded", blocking=True)
        await settled(operator, crds, namespace)
        [event] = warnings(crds, namespace, "stuck", "Unschedulable")
    finally:
        crds.kubectl("delete", "node", node, "--wait=false", check=False)
    assert "PersistentVolumeClaim" in event["message"]
    assert event["message"] == message

