"""Hardened endpoint pods on the real control plane: in a namespace that enforces the
restricted Pod Security Standard (kube-apiserver's built-in Pod Security admission),
the ReplicaSets create the endpoints' pods (no FailedCreate) and they turn Ready;
an endpoint that may run more than one replica gets its PodDisruptionBudget, which
goes when it drops to one; the spec's example that runs as root is applied with a
Warning Event saying why such a namespace refuses its pods, which it then does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    condition,
    endpoint,
    ep,
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

SPEC_EXAMPLES = Path(__file__).parent / "spec_examples"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


@pytest.fixture
def restricted(crds: LocalCluster, namespace: str) -> str:
    crds.kubectl("label", "namespace", namespace, RESTRICTED,
                 "pod-security.kubernetes.io/enforce-version=latest")
    return namespace


def pods_of(c: LocalCluster, ns: str, name: str) -> list[dict[str, Any]]:
    return list(get_json(c, "-n", ns, "pods", "-l",
                         f"app.kubernetes.io/instance={name}")["items"])


def failed_creates(c: LocalCluster, ns: str) -> list[str]:
    """Why a ReplicaSet could not create a pod, from its Events and conditions."""
    events = get_json(c, "-n", ns, "events", "--field-selector", "reason=FailedCreate")
    out = [str(e.get("message")) for e in events["items"]]
    for rs in get_json(c, "-n", ns, "replicasets")["items"]:
        out += [str(x.get("message")) for x in (rs.get("status") or {}).get("conditions") or ()
                if x.get("type") == "ReplicaFailure"]
    return out


def endpoint_events(c: LocalCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    events = get_json(c, "-n", ns, "events", "--field-selector",
                      f"involvedObject.name={name},reason={reason}")
    return [e for e in events["items"] if e["involvedObject"]["kind"] == "AIMEndpoint"]


async def test_endpoint_pods_are_admitted_in_a_restricted_namespace_with_a_pdb(
    crds: LocalCluster, restricted: str, operator: App
) -> None:
    ns = restricted
    apply(crds, endpoint("solo"), ns)
    apply(crds, endpoint("pair", scaling={"minReplicas": 2, "maxReplicas": 2}), ns)
    await wait_ready(crds, ns, "solo", within=120)
    obj = await wait_ready(crds, ns, "pair", within=120)
    assert obj["status"]["readyReplicas"] == 2
    assert len(pods_of(crds, ns, "pair")) == 2 and len(pods_of(crds, ns, "solo")) == 1
    assert failed_creates(crds, ns) == []
    for pod in pods_of(crds, ns, "pair"):
        sc = pod["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault"
    # Nothing to warn about.
    assert endpoint_events(crds, ns, "pair", "PodSecurityNotRestricted") == []

    pdb = get_json(crds, "-n", ns, "pdb", "pair")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "pair"
    [owner] = pdb["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "AIMEndpoint", obj["metadata"]["uid"], True)
    # The disruption controller counts the endpoint's pods against it.
    await eventually(
        lambda: (get_json(crds, "-n", ns, "pdb", "pair").get("status") or {}).get(
            "expectedPods") == 2, 60, what="the PDB covers both pods", blocking=True)
    assert get_json(crds, "-n", ns, "pdb", "solo") is None

    # Down to one replica: the budget is no longer wanted and is deleted.
    crds.kubectl("patch", "-n", ns, f"aimendpoints.{GROUP}/pair", "--type=merge", "-p",
                 '{"spec": {"scaling": {"minReplicas": 1, "maxReplicas": 1}, "replicas": 1}}')
    await eventually(lambda: get_json(crds, "-n", ns, "pdb", "pair") is None, 60,
                     what="the PDB deleted at one replica", blocking=True)


async def test_a_foreign_pdb_of_the_name_is_never_adopted(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    crds.kubectl("create", "poddisruptionbudget", "-n", namespace, "theirs",
                 "--selector=app=theirs", "--min-available=1")
    before = get_json(crds, "-n", namespace, "pdb", "theirs")["metadata"]
    apply(crds, endpoint("theirs", scaling={"minReplicas": 2, "maxReplicas": 2}), namespace)
    obj = await eventually(
        lambda: (o := ep(crds, namespace, "theirs"))
        and (c := condition(o, "ResourcesReady")) and c["reason"] == "ChildConflict" and o,
        60, what="ChildConflict", blocking=True)
    assert "PodDisruptionBudget theirs" in condition(obj, "ResourcesReady")["message"]
    after = get_json(crds, "-n", namespace, "pdb", "theirs")["metadata"]
    assert (after["resourceVersion"], after.get("ownerReferences")) == (
        before["resourceVersion"], None)


async def test_the_root_example_is_warned_and_refused_by_a_restricted_namespace(
    crds: LocalCluster, restricted: str, operator: App
) -> None:
    ns = restricted
    [doc] = [d for d in yaml.safe_load_all(
        (SPEC_EXAMPLES / "aimendpoint-qwen-32b-production.yaml").read_text()) if d]
    doc["metadata"].pop("namespace", None)
    assert doc["spec"]["security"]["podSecurityContext"]["runAsUser"] == 0
    name = doc["metadata"]["name"]
    apply(crds, doc, ns)

    def warned() -> list[dict[str, Any]]:
        return endpoint_events(crds, ns, name, "PodSecurityNotRestricted")

    [event] = await eventually(warned, 90, what="the PodSecurityNotRestricted Event",
                               blocking=True)
    assert event["type"] == "Warning"
    assert "runAsUser 0" in event["message"] and RESTRICTED in event["message"]
    res = condition(ep(crds, ns, name), "ResourcesReady")
    assert res is not None and event["message"] in res["message"]
    # And the namespace does refuse them: the ReplicaSet says so, and so does Degraded.
    refused = await eventually(lambda: [m for m in failed_creates(crds, ns)
                                        if "violates PodSecurity" in m],
                               90, what="FailedCreate by Pod Security admission",
                               blocking=True)
    assert "restricted" in refused[0]
    assert pods_of(crds, ns, name) == []
    obj = await eventually(
        lambda: (o := ep(crds, ns, name)) and (c := condition(o, "Degraded"))
        and c["status"] == "True" and "PodSecurity" in c["message"] and o,
        90, what="Degraded says the pods are refused", blocking=True)
    assert obj is not None
