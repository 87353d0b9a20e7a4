"""Canary rollouts on the local control plane (spec.deployment.canary).

A template change of a serving endpoint runs ``<name>-canary`` beside the stable
Deployment, which is not touched; the canary is promoted once healthy for
``duration`` (the stable takes the new template, the canary goes) or rolled back when
its pods fail (kwok crash-loops them through ``aim.engine.amd.com/kwok-simulate``):
``CanaryFailed`` and a Warning Event, the stable untouched. The promote and abort
annotations; with the canary off, a plain rolling update (an operator restarted
mid-canary: test_canary_restart.py). Every wait is on a fact the cluster shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
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
    write_requests,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

SIMULATE = "aim.engine.amd.com/kwok-simulate"
PROMOTE = "aim.engine.amd.com/canary-promote"
ABORT = "aim.engine.amd.com/canary-abort"
V1 = "docker.io/rocm/vllm:canary-v1"
V2 = "docker.io/rocm/vllm:canary-v2"


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


def canary_ep(name: str, image: str = V1, duration: str = "8s", **spec: Any
              ) -> dict[str, Any]:
    return endpoint(name, image=image, deployment={
        "canary": {"enabled": True, "trafficSplit": 10, "duration": duration}}, **spec)


def deployment(cluster: LocalCluster, ns: str, name: str) -> Any:
    return get_json(cluster, "-n", ns, "deployment", name)


def image_of(dep: Any) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def canary_status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(((ep(cluster, ns, name) or {}).get("status") or {}).get("canary") or {})


async def phase(cluster: LocalCluster, ns: str, name: str, *phases: str, within: float = 90
                ) -> dict[str, Any]:
    def now() -> dict[str, Any] | None:
        c = canary_status(cluster, ns, name)
        return c if c.get("phase") in phases else None
    found: dict[str, Any] = await eventually(now, within, what=f"{ns}/{name} canary {phases}",
                                             blocking=True)
    return found


def events(cluster: LocalCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "events", "--field-selector",
                   f"involvedObject.kind=AIMEndpoint,involvedObject.name={name},reason={reason}")
    return list((out or {}).get("items") or [])


def stable_snapshot(dep: Any) -> tuple[Any, Any]:
    """What the stable Deployment runs: its pod template and its rollout revision (a
    new ReplicaSet would bump it). Its metadata may change: the applied-hash annotation
    is rewritten when the canary starts, which also bumps a Deployment's generation."""
    return (dep["spec"]["template"],
            dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def stable_pods(cluster: LocalCluster, ns: str, name: str) -> set[str]:
    out = get_json(cluster, "-n", ns, "pods", "-l", f"app.kubernetes.io/instance={name}")
    return {p["metadata"]["name"] for p in (out or {}).get("items") or ()
            if "aim.engine.amd.com/canary" not in (p["metadata"].get("annotations") or {})}


async def serving(cluster: LocalCluster, ns: str, name: str, **spec: Any) -> Any:
    apply(cluster, canary_ep(name, **spec), ns)
    await wait_ready(cluster, ns, name)
    return deployment(cluster, ns, name)


async def test_a_template_change_is_a_canary_then_promoted(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    before = await serving(crds, namespace, "promo")
    pods_before = stable_pods(crds, namespace, "promo")
    apply(crds, canary_ep("promo", image=V2), namespace)
    canary = await eventually(lambda: deployment(crds, namespace, "promo-canary"), 60,
                              what="the canary Deployment", blocking=True)
    assert image_of(canary) == V2
    assert canary["spec"]["replicas"] == 1  # 10% of 1 replica, at least one
    # The canary's pods are behind the endpoint's Service: the split by replica ratio.
    svc = get_json(crds, "-n", namespace, "service", "promo")
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert set(svc["spec"]["selector"].items()) <= set(labels.items())
    running = await phase(crds, namespace, "promo", "Progressing", "Analyzing")
    assert running["weight"] == 50 and "approximate" in running["message"]
    # Meanwhile the stable Deployment runs what it ran.
    stable = deployment(crds, namespace, "promo")
    assert stable_snapshot(stable) == stable_snapshot(before) and image_of(stable) == V1
    assert stable_pods(crds, namespace, "promo") == pods_before

    done = await phase(crds, namespace, "promo", "Succeeded", within=120)
    assert done["result"] == "Passed"
    after = deployment(crds, namespace, "promo")
    assert image_of(after) == V2
    await eventually(lambda: deployment(crds, namespace, "promo-canary") is None, 60,
                     what="the canary Deployment gone", blocking=True)
    for reason in ("CanaryStarted", "CanaryPromoted", "CanarySucceeded"):
        await eventually(lambda r=reason: events(crds, namespace, "promo", r), 30,  # type: ignore[misc]
                         what=f"a {reason} Event", blocking=True)
    obj = ep(crds, namespace, "promo")
    assert condition(obj, "CanaryFailed")["status"] == "False"  # type: ignore[index]
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    cols = crds.kubectl("get", "-n", namespace, "aiep", "promo").stdout
    assert "CANARY" in cols.splitlines()[0] and "Succeeded" in cols.splitlines()[1]
    # Converged: a reconcile of the promoted endpoint writes nothing.
    await settled(operator, crds, namespace)
    writes = write_requests(operator)
    await ReconcileLog(operator).reconcile(f"{namespace}/promo")
    await operator.recorder.flush()
    assert write_requests(operator) == writes


async def test_a_crashing_canary_is_rolled_back_and_the_stable_untouched(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    before = await serving(crds, namespace, "crash")
    pods_before = stable_pods(crds, namespace, "crash")
    apply(crds, canary_ep("crash", image=V2,
                          podTemplate={"annotations": {SIMULATE: "crashloop"}}), namespace)
    done = await phase(crds, namespace, "crash", "RolledBack", within=120)
    assert done["result"] == "Failed" and "CrashLoopBackOff" in done["message"]
    obj = ep(crds, namespace, "crash")
    failed = condition(obj, "CanaryFailed")
    assert failed is not None and failed["status"] == "True"
    assert "CrashLoopBackOff" in failed["message"]
    [warning] = await eventually(lambda: events(crds, namespace, "crash", "CanaryFailed"), 30,
                                 what="a CanaryFailed Event", blocking=True)
    assert warning["type"] == "Warning"
    await eventually(lambda: deployment(crds, namespace, "crash-canary") is None, 60,
                     what="the canary Deployment gone", blocking=True)
    stable = deployment(crds, namespace, "crash")
    assert stable_snapshot(stable) == stable_snapshot(before)
    assert stable_pods(crds, namespace, "crash") == pods_before
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]


async def test_abort_and_promote_annotations(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    before = await serving(crds, namespace, "manual", duration="1h")
    apply(crds, canary_ep("manual", image=V2, duration="1h"), namespace)
    await phase(crds, namespace, "manual", "Analyzing")
    crds.kubectl("annotate", "-n", namespace, "aiep", "manual", f"{ABORT}=first")
    aborted = await phase(crds, namespace, "manual", "RolledBack")
    assert aborted["result"] == "Aborted" and aborted["abortToken"] == "first"
    assert stable_snapshot(deployment(crds, namespace, "manual")) == stable_snapshot(before)
    await eventually(lambda: events(crds, namespace, "manual", "CanaryAborted"), 30,
                     what="a CanaryAborted Event", blocking=True)

    # A new change: the abort annotation left in place does not abort it.
    v3 = "docker.io/rocm/vllm:canary-v3"
    apply(crds, canary_ep("manual", image=v3, duration="1h"), namespace)
    await phase(crds, namespace, "manual", "Analyzing")
    crds.kubectl("annotate", "-n", namespace, "aiep", "manual", f"{PROMOTE}=now")
    done = await phase(crds, namespace, "manual", "Succeeded", within=120)
    assert done["result"] == "PromotedByAnnotation" and done["promoteToken"] == "now"
    assert image_of(deployment(crds, namespace, "manual")) == v3


async def test_canary_off_is_a_plain_rolling_update(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("plain", image=V1), namespace)
    await wait_ready(crds, namespace, "plain")
    apply(crds, endpoint("plain", image=V2), namespace)
    await eventually(lambda: image_of(deployment(crds, namespace, "plain")) == V2, 60,
                     what="the Deployment rolled to v2", blocking=True)
    await wait_ready(crds, namespace, "plain")
    obj = ep(crds, namespace, "plain")
    assert "canary" not in obj["status"]
    assert condition(obj, "CanaryFailed") is None
    assert deployment(crds, namespace, "plain-canary") is None
    assert events(crds, namespace, "plain", "CanaryStarted") == []


async def test_a_second_change_restarts_the_canary_with_the_newest_template(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    before = await serving(crds, namespace, "twice", duration="1h")
    apply(crds, canary_ep("twice", image=V2, duration="1h"), namespace)
    first = await phase(crds, namespace, "twice", "Analyzing")
    v3 = "docker.io/rocm/vllm:canary-v3"
    apply(crds, canary_ep("twice", image=v3, duration="1h"), namespace)
    await eventually(lambda: image_of(deployment(crds, namespace, "twice-canary")) == v3, 60,
                     what="the canary on the newest template", blocking=True)
    again = await phase(crds, namespace, "twice", "Progressing", "Analyzing")
    assert again["templateHash"] != first["templateHash"]
    await eventually(lambda: events(crds, namespace, "twice", "CanaryRestarted"), 30,
                     what="a CanaryRestarted Event", blocking=True)
    assert stable_snapshot(deployment(crds, namespace, "twice")) == stable_snapshot(before)


async def test_a_canary_name_taken_by_someone_else_is_a_conflict(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    before = await serving(crds, namespace, "taken")
    theirs = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "taken-canary"},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "theirs"}},
                       "template": {"metadata": {"labels": {"app": "theirs"}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    apply(crds, theirs, namespace)
    mine = get_json(crds, "-n", namespace, "deployment", "taken-canary")
    apply(crds, canary_ep("taken", image=V2), namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "taken", "ResourcesReady", "False", "ChildConflict"),
        60, what="ChildConflict", blocking=True)
    assert "Deployment taken-canary" in condition(obj, "ResourcesReady")["message"]  # type: ignore[index]
    after = get_json(crds, "-n", namespace, "deployment", "taken-canary")
    assert after["metadata"]["resourceVersion"] == mine["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    assert stable_snapshot(deployment(crds, namespace, "taken")) == stable_snapshot(before)
    assert canary_status(crds, namespace, "taken")["phase"] == "Progressing"
