"""Pod and ReplicaSet failures as the endpoint reports them: each kubelet state gives its
reason and the container's message, stays the same across the kubelet's retries, and
only the current template's pods count (for failures and for Available)."""

from __future__ import annotations

from typing import Any

import pytest
from test_endpoint_decide import endpoint_obj, observed, plan_of

from aim_controller.api.v1alpha1 import AIMEndpointSpec
from aim_controller.reconcilers.endpoint_observe import pods_state
from aim_controller.reconcilers.endpoint_report import EventNote, desired_status, status_events
from aim_controller.reconcilers.endpoint_status import (
    ApplyOutcome,
    PodsState,
    endpoint_conditions,
)
from aim_controller.reconcilers.pod_failures import (
    CONFIG_ERROR,
    CRASH_LOOP,
    FAILED_CREATE,
    IMAGE_PULL,
    INVALID_IMAGE,
    OOM_KILLED,
    PodFailure,
    container_failure,
    first_failure,
    is_failing,
    replica_failure,
    reported_on,
)

SPEC = AIMEndpointSpec.model_validate({"model": {"id": "Qwen/Qwen2.5-7B-Instruct"}})
CHECKSUM = "aim.engine.amd.com/config-checksum"
IMAGE = "docker.io/rocm/vllm:latest"
PULL_ERROR = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": '
              f'failed to resolve reference "{IMAGE}": not found')


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": "engine", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}, **extra}


def crashed(reason: str = "Error", code: int = 1, message: str = "", restarts: int = 3,
            state: dict[str, Any] | None = None) -> dict[str, Any]:
    term = {"exitCode": code, "reason": reason, **({"message": message} if message else {})}
    return {"name": "engine", "ready": False, "restartCount": restarts,
            "state": state if state is not None else {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container=engine pod=p_ns(u)"}},
            "lastState": {"terminated": term}}


def pod(name: str, *statuses: dict[str, Any], ready: bool = False, checksum: str = "new",
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns",
                            "annotations": {CHECKSUM: checksum}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n0", "containers": [{"name": "engine"}]},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": list(statuses)}}


DEPLOYMENT = {
    "spec": {"template": {
        "metadata": {"annotations": {CHECKSUM: "new"}},
        "spec": {"containers": [{"name": "engine",
                                 "resources": {"limits": {"memory": "64Gi"}}}]},
    }},
    "status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1},
}


# --- each kubelet state -------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason", "says"), [
    (crashed(message="RuntimeError: no GPU found"), CRASH_LOOP,
     "last exit code 1 (Error): RuntimeError: no GPU found"),
    (crashed("OOMKilled", 137), OOM_KILLED,
     "more memory than its limit of 64Gi (OOMKilled, exit code 137)"),
    (waiting("ErrImagePull", PULL_ERROR), IMAGE_PULL, f"cannot pull its image: {PULL_ERROR}"),
    (waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}": ErrImagePull: {PULL_ERROR}'),
     IMAGE_PULL, f"cannot pull its image: {PULL_ERROR}"),
    (waiting("InvalidImageName", 'Failed to apply default image tag "Bad:Image": couldn\'t '
             'parse image name "Bad:Image": invalid reference format'), INVALID_IMAGE,
     "invalid image name: Failed to apply default image tag"),
    (waiting("CreateContainerConfigError", 'secret "hf-token" not found'), CONFIG_ERROR,
     'cannot be configured: secret "hf-token" not found'),
])
def test_each_failure_state_has_its_reason_and_the_containers_message(
        status: dict[str, Any], reason: str, says: str) -> None:
    found = container_failure(status, "demo-abc", "64Gi")
    assert found is not None
    assert found[0] == reason
    assert found[1].startswith("container engine of pod demo-abc ")
    assert says in found[1]


def test_the_message_stays_the_same_while_the_kubelet_retries() -> None:
    """ErrImagePull and ImagePullBackOff alternate; a crash loop's back-off grows and it
    is restarted, running, terminated and waiting again: one message each."""
    pulls = {container_failure(s, "p") for s in (
        waiting("ErrImagePull", PULL_ERROR),
        waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}": ErrImagePull: '
                f"{PULL_ERROR}"))}
    assert len(pulls) == 1
    crash = {container_failure(s, "p") for s in (
        crashed(restarts=1),
        crashed(restarts=7, state={"waiting": {"reason": "CrashLoopBackOff",
                                               "message": "back-off 5m0s restarting"}}),
        crashed(restarts=8, state={"running": {}}),  # restarted, not ready yet
        crashed(restarts=8, state={"terminated": {"exitCode": 1, "reason": "Error"}}),
    )}
    assert len(crash) == 1


@pytest.mark.parametrize("status", [
    {"name": "engine", "ready": True, "restartCount": 4, "state": {"running": {}},
     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}},
    {"name": "engine", "ready": False, "restartCount": 0, "state": {"running": {}}},
    waiting("ContainerCreating"),
    waiting("PodInitializing"),
])
def test_ready_starting_or_recovered_containers_are_not_failing(status: dict[str, Any]) -> None:
    """A container that crashed once and serves again does not keep the endpoint
    degraded; one still loading its model (running, not ready, never restarted) is not
    failing either."""
    assert container_failure(status, "p") is None


def test_the_most_specific_failure_of_several_pods_is_reported() -> None:
    pods = [pod("b", crashed()), pod("a", crashed()),
            pod("c", waiting("CreateContainerConfigError", "x"))]
    f = first_failure(pods)
    assert f == PodFailure(CONFIG_ERROR, f.message if f else "", "c", "engine")
    assert first_failure(pods[:2]) == first_failure(list(reversed(pods[:2])))
    assert first_failure(pods[:2]).pod == "a"  # type: ignore[union-attr]
    # Init containers fail just the same.
    init = pod("d")
    init["status"]["initContainerStatuses"] = [waiting("ErrImagePull", PULL_ERROR)]
    assert first_failure([init]).reason == IMAGE_PULL  # type: ignore[union-attr]
    assert is_failing(init) and not is_failing(pod("e"))


def test_failed_create_is_read_from_the_deployment() -> None:
    msg = ('pods "demo-5d8f-x" is forbidden: exceeded quota: pods, requested: pods=1, '
           "used: pods=0, limited: pods=0")
    dep = {"status": {"conditions": [
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg},
    ]}}
    assert replica_failure(dep) == (FAILED_CREATE, f"the ReplicaSet cannot create pods: {msg}")
    assert replica_failure({"status": {}}) is None and replica_failure(None) is None


# --- pods_state: only the current template's pods -----------------------------------


def test_pods_state_counts_ready_pods_of_the_current_template_only() -> None:
    ok = {"name": "engine", "ready": True, "restartCount": 0, "state": {"running": {}}}
    s = pods_state([pod("new-1", ok, ready=True), pod("new-2", ok, ready=True),
                    pod("old-1", ok, ready=True, checksum="old"),
                    pod("going", ok, ready=True, deleting=True),
                    pod("new-3", crashed("OOMKilled", 137))], DEPLOYMENT)
    assert s.ready == 2
    assert s.failure is not None and s.failure.reason == OOM_KILLED
    assert s.failure.pod == "new-3" and "limit of 64Gi" in s.failure.message
    # A failing pod of the previous template, or one being deleted, says nothing.
    assert pods_state([pod("old", crashed(), checksum="old"),
                       pod("bye", crashed(), deleting=True)], DEPLOYMENT).failure is None


# --- conditions and Events ----------------------------------------------------------


def conds(pods: PodsState, deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    out = endpoint_conditions(
        spec=SPEC, selected=(True, "Selected", "x"), outcome=ApplyOutcome(6, 6),
        deployment=deployment or DEPLOYMENT, desired_replicas=1, pods=pods, url="u")
    return {c.type: c for c in out}


def test_available_counts_the_current_templates_ready_pods_not_the_deployments() -> None:
    """The Deployment says 1 available (an old pod, mid-rollout); no pod of the current
    template is Ready: not Available."""
    c = conds(PodsState(ready=0))
    assert c["Available"].status == "False" and c["Available"].message.startswith("0 of 1")
    assert conds(PodsState(ready=1))["Available"].status == "True"


def test_a_pod_failure_is_degraded_with_its_reason_and_message() -> None:
    f = PodFailure(CRASH_LOOP, "container engine of pod p keeps exiting", "p", "engine")
    c = conds(PodsState(failure=f))
    assert (c["Degraded"].status, c["Degraded"].reason, c["Degraded"].message) == (
        "True", CRASH_LOOP, f.message)
    stuck = {"status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                        "reason": "FailedCreate", "message": "forbidden"}]},
             **{k: v for k, v in DEPLOYMENT.items() if k != "status"}}
    c = conds(PodsState(), stuck)
    assert (c["Degraded"].reason, c["Degraded"].message) == (
        FAILED_CREATE, "the ReplicaSet cannot create pods: forbidden")


def test_one_warning_event_per_change_of_failure() -> None:
    crash = PodFailure(CRASH_LOOP, "container engine of pod p keeps exiting", "p", "engine")
    oom = PodFailure(OOM_KILLED, "container engine of pod p was killed", "p", "engine")

    def report(pods: PodsState, status: dict[str, Any] | None = None
               ) -> tuple[dict[str, Any], list[EventNote]]:
        o = observed(endpoint_obj(status=status), pods=pods)
        plan = plan_of(o)
        new = desired_status(o, plan, None, "2026-01-01T00:00:00Z", "sel")
        return new, [e for e in status_events(o, plan, new) if e.type == "Warning"]

    first, events = report(PodsState(failure=crash))
    assert events == [EventNote("Warning", CRASH_LOOP, crash.message)]
    # Written again (something else changed) with the same failure: nothing new to say.
    again, events = report(PodsState(failure=crash, ready=0, bound=1), first)
    assert events == []
    # Another failure is another Event; recovery says nothing.
    later, events = report(PodsState(failure=oom), again)
    assert events == [EventNote("Warning", OOM_KILLED, oom.message)]
    _, events = report(PodsState(), later)
    assert events == []


def test_only_pod_changes_the_endpoint_reports_on_enqueue_it() -> None:
    """The pod event mapping enqueues the endpoint when the old or the new pod is Ready
    or failing: a pod turning Ready or not, starting or stopping to fail is seen within
    seconds, and a starting pod's progress costs no reconcile."""
    starting = {"name": "engine", "ready": False, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}
    serving = {"name": "engine", "ready": True, "restartCount": 0, "state": {"running": {}}}
    pending = pod("p")
    bound = pod("p", starting)
    ready = pod("p", serving, ready=True)
    sick = pod("p", crashed())
    lifecycle = [(pending, bound, False), (bound, ready, True), (ready, sick, True),
                 (sick, sick, True), (sick, ready, True),
                 (ready, pod("p", serving, ready=True, deleting=True), True)]
    for old, new, enqueued in lifecycle:
        assert (reported_on(old) or reported_on(new)) is enqueued
