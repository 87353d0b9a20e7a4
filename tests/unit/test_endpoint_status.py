"""The pure parts of the AIMEndpoint reconcile: conditions, pod state, status diff."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aim_controller.api.v1alpha1 import AIMEndpointSpec
from aim_controller.reconcilers.conditions import merge_conditions
from aim_controller.reconcilers.endpoint_observe import (
    index_endpoint_by_model,
    index_pod_by_endpoint,
    pods_state,
)
from aim_controller.reconcilers.endpoint_status import (
    ApplyOutcome,
    PodsState,
    deployment_behind,
    endpoint_conditions,
    progress_only,
    status_equal,
    status_record,
)

SPEC = AIMEndpointSpec.model_validate({"model": {"id": "Qwen/Qwen2.5-7B-Instruct"}})


def dep(available: int, replicas: int = 1, stuck: bool = False) -> dict[str, Any]:
    conds = []
    if stuck:
        conds.append({"type": "Progressing", "status": "False",
                      "reason": "ProgressDeadlineExceeded", "message": "too slow"})
    return {"status": {"replicas": replicas, "availableReplicas": available,
                       "readyReplicas": available, "conditions": conds}}


def by_type(conds: list[Any]) -> dict[str, Any]:
    return {c.type: c for c in conds}


def test_all_good_is_ready_and_not_degraded() -> None:
    c = by_type(endpoint_conditions(
        spec=SPEC, selected=(True, "Selected", "chose x"), outcome=ApplyOutcome(2, 6),
        deployment=dep(1), desired_replicas=1, pods=PodsState(ready=1), url="http://u"))
    assert [c[t].status for t in ("RecipeSelected", "ResourcesReady", "Available", "Ready")] \
        == ["True"] * 4
    assert c["Degraded"].status == "False"
    assert "http://u" in c["Ready"].message


def test_no_recipe_explains_itself_everywhere() -> None:
    c = by_type(endpoint_conditions(
        spec=SPEC, selected=(False, "NoFeasibleCandidate", "nothing fits"), outcome=None,
        deployment=None, desired_replicas=1, pods=PodsState(), url=None))
    assert c["Ready"].status == "False" and c["Ready"].reason == "NoFeasibleCandidate"
    assert c["Degraded"].status == "True" and c["Degraded"].message == "nothing fits"
    assert c["ResourcesReady"].reason == "RecipeNotSelected"


def test_apply_failure_and_stuck_rollout_are_degraded() -> None:
    c = by_type(endpoint_conditions(
        spec=SPEC, selected=(True, "Selected", "x"),
        outcome=ApplyOutcome(0, 6, ("PersistentVolumeClaim a-cache: bad class",)),
        deployment=dep(1), desired_replicas=1, pods=PodsState(), url="u"))
    assert c["ResourcesReady"].status == "False" and "bad class" in c["ResourcesReady"].message
    assert c["Degraded"].reason == "ApplyFailed"
    c = by_type(endpoint_conditions(
        spec=SPEC, selected=(True, "Selected", "x"), outcome=ApplyOutcome(0, 6),
        deployment=dep(0, stuck=True), desired_replicas=1, pods=PodsState(), url="u"))
    assert c["Degraded"].reason == "ProgressDeadlineExceeded"
    assert c["Available"].status == "False"


def test_scaled_to_zero_is_not_available() -> None:
    c = by_type(endpoint_conditions(
        spec=SPEC, selected=(True, "Selected", "x"), outcome=ApplyOutcome(0, 6),
        deployment=dep(0, 0), desired_replicas=0, pods=PodsState(), url="u"))
    assert c["Available"].reason == "ScaledToZero"


def _pod(reason: str | None, t: str, gpus: str = "1", phase: str = "Pending") -> dict[str, Any]:
    conds = []
    if reason:
        conds.append({"type": "PodScheduled", "status": "False", "reason": reason,
                      "lastTransitionTime": t, "message": "0/9 nodes are available"})
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {
                "limits": {"amd.com/gpu": gpus}, "requests": {"amd.com/gpu": gpus}}}]},
            "status": {"phase": phase, "conditions": conds}}


def test_pods_state_takes_the_earliest_unschedulable_time_and_counts_gpus() -> None:
    s = pods_state([_pod("Unschedulable", "2026-01-01T00:05:00Z", "2"),
                    _pod("Unschedulable", "2026-01-01T00:01:00Z", "2"),
                    _pod(None, "", "4", phase="Running"),
                    _pod(None, "", "8", phase="Succeeded")])
    assert s.unschedulable_since == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert s.gpus_in_use == 8
    assert "nodes are available" in s.unschedulable_message
    assert pods_state([]).unschedulable_since is None


def test_indexes() -> None:
    assert index_endpoint_by_model({"spec": {"model": {"id": " Qwen/X "}}}) == ["qwen/x"]
    labels = {"aim.engine.amd.com/endpoint": "e", "app.kubernetes.io/managed-by": "aim-controller"}
    assert index_pod_by_endpoint({"metadata": {"namespace": "n", "labels": labels}}) == ["n/e"]
    labels["app.kubernetes.io/managed-by"] = "someone"
    assert index_pod_by_endpoint({"metadata": {"namespace": "n", "labels": labels}}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_status_equal_is_reflexive_and_ignores_nulls(status: dict[str, Any]) -> None:
    assert status_equal(status, status)
    assert status_equal({**status, "zz-null": None}, status)


@given(st.sampled_from(["True", "False"]), st.sampled_from(["True", "False"]))
def test_condition_times_change_only_with_status(first: str, second: str) -> None:
    from aim_controller.reconcilers.conditions import Cond

    a = merge_conditions([], [Cond("Ready", first, "R")], 1, "2026-01-01T00:00:00Z")
    b = merge_conditions(a, [Cond("Ready", second, "R2")], 2, "2026-01-02T00:00:00Z")
    changed = first != second
    assert (b[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z") == changed


def test_status_record_is_what_the_api_server_returns() -> None:
    """Integral floats come back as ints; the record (also in the ConfigMap) must match
    what a later reconcile reads from the status, or the ConfigMap is applied twice."""

    record = status_record({"score": 11100.0, "candidates": [{"score": 1758.5}, {"score": 2.0}],
                            "gpuCount": 1})
    assert record == {"score": 11100, "candidates": [{"score": 1758.5}, {"score": 2}],
                      "gpuCount": 1}
    assert isinstance(record["score"], int)


SCHEDULER_MESSAGES = {
    # Real kube-scheduler wordings (v1.36 default profile).
    "0/4 nodes are available: 1 Insufficient amd.com/gpu, 3 node(s) didn't match Pod's "
    "node affinity/selector. preemption: 0/4 nodes are available: 1 No preemption victims "
    "found for incoming pod, 3 Preemption is not helpful for scheduling.": True,
    "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's "
    "node affinity/selector.": True,
    "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: llm}.": True,
    "0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector.": True,
    "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.": False,
    "0/4 nodes are available: 1 Insufficient cpu, 3 node(s) didn't match Pod's node "
    "affinity/selector.": False,
    "0/4 nodes are available: 1 Insufficient memory, 3 node(s) didn't match Pod's node "
    "affinity/selector.": False,
}


@pytest.mark.parametrize(("message", "fixable"), SCHEDULER_MESSAGES.items())
def test_only_gpu_placement_reasons_can_be_fixed_by_another_recipe(
    message: str, fixable: bool
) -> None:
    from aim_controller.reconcilers.unschedulable import gpu_fixable

    assert gpu_fixable(message) is fixable


def test_only_pods_of_the_current_template_count_as_unschedulable() -> None:
    def pod(checksum: str, since: str) -> dict[str, Any]:
        p = _pod("Unschedulable", since, "4")
        p["metadata"]["annotations"] = {"aim.engine.amd.com/config-checksum": checksum}
        return p

    deployment = {"spec": {"template": {"metadata": {"annotations": {
        "aim.engine.amd.com/config-checksum": "new"}}}}}
    old, new = pod("old", "2026-01-01T00:00:00Z"), pod("new", "2026-01-01T00:10:00Z")
    s = pods_state([old, new], deployment)
    assert s.unschedulable_since == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert s.gpus_in_use == 8  # both still charge the quota
    assert pods_state([old], deployment).unschedulable_since is None


def _dep_with(generation: int, observed: int, replicas: int, ready: int) -> dict[str, Any]:
    return {"metadata": {"name": "ep", "generation": generation},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "readyReplicas": ready, "availableReplicas": ready}}


def test_a_deployment_is_behind_what_the_caches_show_already() -> None:
    pods = PodsState(bound=1, ready=1)
    # Its spec change not seen yet, or pods Ready it has not counted.
    assert deployment_behind(_dep_with(2, 1, 1, 1), pods)
    assert deployment_behind(_dep_with(1, 1, 1, 0), pods)
    # A bound pod it does not count may be terminating: its end brings no update.
    assert not deployment_behind(_dep_with(1, 1, 0, 0), PodsState(bound=1))
    # Caught up, or ahead (a pod lost: that is news, never held).
    assert not deployment_behind(_dep_with(1, 1, 1, 1), pods)
    assert not deployment_behind(_dep_with(1, 1, 1, 1), PodsState(bound=1, ready=0))
    assert not deployment_behind(None, pods)


def _status(gen: int, ready: str, replicas: int, **conds: str) -> dict[str, Any]:
    types = {"RecipeSelected": "True", "ResourcesReady": "True", "Available": ready,
             "Degraded": "False", "Ready": ready, **conds}
    return {"observedGeneration": gen, "replicas": replicas, "readyReplicas": 0,
            "conditions": [{"type": t, "status": s, "reason": "R", "message": "m"}
                           for t, s in types.items()]}


def test_progress_only_is_counts_available_and_ready() -> None:
    before = _status(1, "False", 0)
    assert progress_only(_status(1, "True", 1), before)
    assert progress_only(_status(1, "False", 1), before)
    # A spec seen for the first time, a problem, a child: more than progress.
    assert not progress_only(_status(2, "True", 1), before)
    assert not progress_only(_status(1, "False", 0, Degraded="True"), before)
    assert not progress_only(_status(1, "False", 0, ResourcesReady="False"), before)
    assert not progress_only(_status(1, "False", 0), {})
