"""Pod and ReplicaSet failures become ``Degraded=True`` with their reason and the
container's message within a minute, from the pod cache, with one Warning Event per
failure however often the kubelet retries; ``Available`` counts only the current
template's Ready pods.

The simulated nodes fail pods as a kubelet would when the pod carries the annotation
``aim.engine.amd.com/kwok-simulate`` (kwok stages in hack/kwok/stages.yaml), which the
tests set through the endpoint's ``spec.podTemplate.annotations``. FailedCreate comes
from the real kube-controller-manager's ReplicaSet controller, refused by a real
ResourceQuota or Pod Security admission."""

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
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

SIMULATE = "aim.engine.amd.com/kwok-simulate"
WITHIN = 60  # the promise: the reason shows within a minute of the pod state


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, "--max-concurrent-reconciles", "4") as app:
        yield app


@pytest.fixture(scope="module")
def reconcile_log(operator: App) -> ReconcileLog:
    return ReconcileLog(operator)


def failing(name: str, simulate: str, **spec: Any) -> dict[str, Any]:
    return endpoint(name, podTemplate={"annotations": {SIMULATE: simulate}}, **spec)


def warnings(cluster: LocalCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "events", "--field-selector",
                   f"involvedObject.kind=AIMEndpoint,involvedObject.name={name},"
                   f"reason={reason},type=Warning")
    return list((out or {}).get("items") or [])


def pods(cluster: LocalCluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "pods", "-l", f"app.kubernetes.io/instance={name}")
    return list((out or {}).get("items") or [])


async def degraded(cluster: LocalCluster, ns: str, name: str, reason: str) -> Any:
    obj = await eventually(lambda: cond_is(cluster, ns, name, "Degraded", "True", reason),
                           WITHIN, what=f"{ns}/{name} Degraded {reason}", blocking=True)
    return condition(obj, "Degraded")


def cached_pods(app: App, ns: str, name: str) -> list[Any]:
    informer = next(i for i in app.manager.informers.informers()
                    if i.resource.plural == "pods" and i.resource.group == "")
    return [p for p in informer.store.list()
            if p["metadata"]["namespace"] == ns
            and (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == name]


STATES = [
    # (simulated state, Degraded reason, what the message must say)
    ("crashloop", "CrashLoopBackOff",
     "keeps exiting and is restarted with back-off: last exit code 1 (Error): "
     "RuntimeError: simulated engine crash"),
    ("oom", "OOMKilled", "was killed for using more memory than its limit"),
    ("image-pull", "ImagePullBackOff",
     "cannot pull its image: rpc error: code = NotFound desc = failed to pull and unpack"),
    ("invalid-image", "InvalidImageName",
     "has an invalid image name: Failed to apply default image tag"),
    ("config-error", "CreateContainerConfigError",
     'cannot be configured: secret "hf-token" not found'),
]


@pytest.mark.parametrize(("simulate", "reason", "says"), STATES, ids=[s[0] for s in STATES])
async def test_each_pod_failure_is_degraded_with_its_reason_within_a_minute(
    crds: LocalCluster, namespace: str, operator: App, simulate: str, reason: str, says: str
) -> None:
    apply(crds, failing("sick", simulate), namespace)
    cond = await degraded(crds, namespace, "sick", reason)
    [pod] = pods(crds, namespace, "sick")
    assert cond["message"].startswith(f"container engine of pod {pod['metadata']['name']} ")
    assert says in cond["message"]
    obj = get_json(crds, "-n", namespace, "aimendpoint", "sick")
    assert condition(obj, "Available")["reason"] == "MinimumReplicasUnavailable"  # type: ignore[index]
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    [event] = await eventually(lambda: warnings(crds, namespace, "sick", reason), 30,
                               what=f"a {reason} Warning Event", blocking=True)
    assert event["message"] == cond["message"]


@pytest.mark.parametrize("simulate", ["crashloop", "image-pull"])
async def test_kubelet_retries_are_one_event_not_one_per_retry(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog,
    simulate: str,
) -> None:
    """The kubelet restarts a crashing container with a growing back-off, and turns
    ErrImagePull into ImagePullBackOff and back while it retries: the endpoint's
    status and Event stay as they were."""
    apply(crds, failing("flaky", simulate), namespace)
    reason = "CrashLoopBackOff" if simulate == "crashloop" else "ImagePullBackOff"
    first = await degraded(crds, namespace, "flaky", reason)

    seen: set[str] = set()

    def retried() -> bool:
        for p in cached_pods(operator, namespace, "flaky"):
            for cs in p["status"].get("containerStatuses") or ():
                seen.add(f"restarts={cs.get('restartCount')}")
                seen.add(str(((cs.get("state") or {}).get("waiting") or {}).get("reason")))
        if simulate == "crashloop":
            return "restarts=3" in seen
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    # The operator's own cache has seen the retries; then one more reconcile.
    await eventually(retried, 60, what="the kubelet retried (as the operator saw it)")
    await reconcile_log.reconcile(f"{namespace}/flaky")
    await operator.recorder.flush()
    assert condition(get_json(crds, "-n", namespace, "aimendpoint", "flaky"),
                     "Degraded") == first
    [event] = warnings(crds, namespace, "flaky", reason)
    assert event.get("count", 1) == 1


async def test_recovery_clears_degraded(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, failing("heal", "crashloop"), namespace)
    await degraded(crds, namespace, "heal", "CrashLoopBackOff")
    apply(crds, endpoint("heal"), namespace)  # a fixed pod replaces the crashing one
    await wait_ready(crds, namespace, "heal", within=WITHIN)
    obj = await eventually(lambda: cond_is(crds, namespace, "heal", "Degraded", "False"),
                           WITHIN, what="Degraded False", blocking=True)
    assert condition(obj, "Degraded")["reason"] == "AsExpected"  # type: ignore[index]
    await eventually(lambda: [p["status"]["containerStatuses"][0]["ready"]
                              for p in pods(crds, namespace, "heal")] == [True],
                     30, what="only the fixed pod left", blocking=True)


async def test_a_quota_that_refuses_the_pods_is_failed_create(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"},
                 "spec": {"hard": {"pods": "0"}}}, namespace)
    await eventually(lambda: (get_json(crds, "-n", namespace, "resourcequota", "no-pods")
                              or {}).get("status", {}).get("hard"), 30,
                     what="the quota is enforced", blocking=True)
    apply(crds, endpoint("capped"), namespace)
    cond = await degraded(crds, namespace, "capped", "FailedCreate")
    assert cond["message"].startswith("the ReplicaSet cannot create pods: ")
    assert "exceeded quota: no-pods" in cond["message"]
    assert pods(crds, namespace, "capped") == []
    await eventually(lambda: warnings(crds, namespace, "capped", "FailedCreate"), 30,
                     what="a FailedCreate Warning Event", blocking=True)


async def test_pod_security_admission_that_refuses_the_pods_is_failed_create(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    crds.kubectl("label", "namespace", namespace,
                 "pod-security.kubernetes.io/enforce=restricted")
    # The default pods are admitted in a restricted namespace (test_restricted_namespace);
    # one that asks to run as root is not.
    apply(crds, endpoint("locked", security={"podSecurityContext": {"runAsUser": 0}}),
          namespace)
    cond = await degraded(crds, namespace, "locked", "FailedCreate")
    assert 'violates PodSecurity "restricted' in cond["message"]


async def test_available_counts_only_ready_pods_of_the_current_template(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    """A rollout whose new pods cannot pull their image: the Deployment still counts the
    old, Ready pod as available; the endpoint does not, and says why."""
    apply(crds, endpoint("roll"), namespace)
    await wait_ready(crds, namespace, "roll")
    apply(crds, failing("roll", "image-pull", image="docker.io/rocm/vllm:no-such-tag"),
          namespace)
    cond = await degraded(crds, namespace, "roll", "ImagePullBackOff")
    assert "no-such-tag" in cond["message"]
    obj = await eventually(
        lambda: cond_is(crds, namespace, "roll", "Available", "False"), 30,
        what="Available False", blocking=True)
    assert condition(obj, "Available")["message"].startswith("0 of 1")  # type: ignore[index]
    dep = get_json(crds, "-n", namespace, "deployment", "roll")
    assert dep["status"].get("availableReplicas") == 1  # the old pod, still serving
