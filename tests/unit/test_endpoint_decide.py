"""The decide step of the endpoint reconcile, over plain data (no informers)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from recipes_fixtures import gpu_node, recipe
from test_builders_support import SETTINGS

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.machinery.handlers import KubeObject
from aim_controller.recipes import RecipeIndex, build_inventory, builtin_index
from aim_controller.recipes.reasons import Reason
from aim_controller.reconcilers.endpoint_decide import Plan, decide
from aim_controller.reconcilers.endpoint_observe import ChildKey, Observed
from aim_controller.reconcilers.endpoint_report import (
    ApplyResult,
    desired_status,
    status_events,
)
from aim_controller.reconcilers.endpoint_status import ApplyOutcome, PodsState, status_equal

NS = "aim"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(minutes=5)
SPEC: dict[str, Any] = {"model": {"id": "org/Model-7B"}}
NOW_S = "2026-01-01T00:00:00Z"


def endpoint_obj(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    return {
        "apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMEndpoint",
        "metadata": {"name": "ep", "namespace": NS, "uid": "uid-ep", "generation": 1},
        "spec": spec or SPEC, "status": status or {},
    }


def observed(
    obj: dict[str, Any] | None = None,
    *,
    gpus: int = 8,
    children: dict[ChildKey, KubeObject] | None = None,
    pods: PodsState | None = None,
    invalid: str | None = None,
) -> Observed:
    obj = obj or endpoint_obj()
    recipes = [recipe("r", counts=(1, 4), namespace=NS)]
    return Observed(
        key=f"{NS}/ep", namespace=NS, name="ep", obj=obj, generation=1,
        status=obj.get("status") or {},
        endpoint=None if invalid else AIMEndpoint.model_validate(obj), invalid=invalid,
        pods=pods or PodsState(),
        recipes=RecipeIndex.build(recipes, "namespace", NS), catalog=builtin_index(),
        inventory=build_inventory([gpu_node("n0", "MI300X", gpus)], []), quotas=(),
        namespace_gpus=None,
        children=children or {}, owned=frozenset(children or {}),
        monitoring_available=False, now=NOW,
    )


def plan_of(o: Observed) -> Plan:
    return decide(o, settings=SETTINGS, grace=GRACE)


def as_observed(objs: tuple[KubeObject, ...]) -> dict[ChildKey, KubeObject]:
    """The children as the API server would return them (our apply, plus server fields)."""
    out: dict[ChildKey, KubeObject] = {}
    for d in objs:
        o = copy.deepcopy(d)
        o["metadata"] |= {"uid": f"uid-{d['metadata']['name']}", "resourceVersion": "7"}
        o["status"] = {}
        out[(d["kind"], d["metadata"]["name"])] = o
    return out


def test_a_new_endpoint_applies_every_child_and_prunes_nothing() -> None:
    plan = plan_of(observed())
    assert plan.chosen and plan.decision is not None
    assert plan.decision.chosen is not None and plan.decision.chosen.config.name == "r"
    assert plan.to_apply == plan.desired and plan.to_prune == ()
    kinds = {d["kind"] for d in plan.desired}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    assert plan.record is not None and plan.record["selectedAt"] == "2026-01-01T00:00:00Z"
    assert plan.recheck_after is None


def test_a_converged_endpoint_plans_nothing() -> None:
    first = plan_of(observed())
    status = desired_status(observed(), first, ApplyResult(ApplyOutcome(len(first.desired),
                            len(first.desired))), NOW_S, "sel")
    later = observed(endpoint_obj(status=status), children=as_observed(first.desired))
    # An hour later, on a cluster whose other GPUs were taken meanwhile: still nothing.
    later = Observed(**{**later.__dict__, "now": NOW + timedelta(hours=1),
                        "inventory": build_inventory([gpu_node("n0", "MI300X", 4)], [])})
    plan = plan_of(later)
    assert plan.decision is not None and plan.decision.reason is Reason.STICKY
    assert plan.to_apply == () and plan.to_prune == ()
    assert plan.record == status["recipe"]
    assert status_events(later, plan, status) == []


def test_a_deployment_created_now_is_told_as_there_so_its_arrival_writes_nothing() -> None:
    # The first reconcile creates the Deployment; the caches show it one reconcile later.
    # The status tells the server's answer at once (0 of 1 replicas), so the reconcile
    # that its arrival in the caches triggers has no new stage to write.
    first = plan_of(observed())
    written = as_observed(first.desired)
    status = desired_status(observed(), first, ApplyResult(
        ApplyOutcome(len(first.desired), len(first.desired)), written), NOW_S, "sel")
    conds = {c["type"]: c["reason"] for c in status["conditions"]}
    assert conds["Available"] == conds["Ready"] == "MinimumReplicasUnavailable"
    assert status["replicas"] == 0
    later = observed(endpoint_obj(status=status), children=written)
    plan = plan_of(later)
    assert plan.to_apply == ()
    again = desired_status(later, plan, ApplyResult(ApplyOutcome(0, len(plan.desired))),
                           NOW_S, "sel")
    assert status_equal(again, later.status)


def test_children_no_longer_desired_are_pruned_only_if_owned() -> None:
    scaled = endpoint_obj({**SPEC, "scaling": {"minReplicas": 1, "maxReplicas": 3}})
    with_hpa = plan_of(observed(scaled))
    hpa = [d for d in with_hpa.desired if d["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpa) == 1
    children = as_observed(with_hpa.desired)
    o = observed(children=children)
    plan = plan_of(o)
    # Back to one replica: neither the autoscaler nor the disruption budget is wanted.
    assert [p["kind"] for p in plan.to_prune] == ["HorizontalPodAutoscaler",
                                                  "PodDisruptionBudget"]
    # The same object not controlled by this endpoint (e.g. a retained PVC) is never pruned.
    o = Observed(**{**o.__dict__, "owned": frozenset()})
    assert plan_of(o).to_prune == ()


def test_nothing_feasible_applies_and_prunes_nothing() -> None:
    first = plan_of(observed())
    o = observed(gpus=0, children=as_observed(first.desired))
    plan = plan_of(o)
    assert not plan.chosen and plan.to_apply == () and plan.to_prune == ()
    assert plan.decision is not None and plan.decision.reason is Reason.NO_FEASIBLE_CANDIDATE
    status = desired_status(o, plan, None, "2026-01-01T00:00:00Z", "sel")
    [event] = status_events(o, plan, status)
    assert (event.type, event.reason) == ("Warning", "NoFeasibleCandidate")


def test_an_invalid_spec_plans_nothing() -> None:
    plan = plan_of(observed(invalid="invalid spec: spec.model.id: Field required"))
    assert plan.decision is None and plan.desired == () and plan.record is None


GPU_SHORT = "0/3 nodes are available: 3 Insufficient amd.com/gpu. preemption: ..."
PVC_UNBOUND = ("0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
               "preemption: 0/3 nodes are available: 3 Preemption is not helpful.")


def test_unschedulable_pods_schedule_a_recheck_at_the_end_of_the_grace() -> None:
    pods = PodsState(NOW - timedelta(minutes=2), GPU_SHORT, unschedulable_fixable=True)
    # A fresh choice: its grace counts from the choice itself.
    assert plan_of(observed(pods=pods)).recheck_after == 301.0
    first = plan_of(observed())
    status = desired_status(observed(), first, None, "2026-01-01T00:00:00Z", "sel")
    pods = PodsState(NOW + timedelta(minutes=8), GPU_SHORT, unschedulable_fixable=True)
    o = observed(endpoint_obj(status=status), pods=pods)
    o = Observed(**{**o.__dict__, "now": NOW + timedelta(minutes=10)})
    assert plan_of(o).recheck_after == 181.0


def test_a_cause_no_recipe_can_fix_never_moves_the_endpoint() -> None:
    first = plan_of(observed())
    status = desired_status(observed(), first, None, "2026-01-01T00:00:00Z", "sel")
    pods = PodsState(NOW - timedelta(hours=1), PVC_UNBOUND, unschedulable_fixable=False)
    o = observed(endpoint_obj(status=status), gpus=4, pods=pods)
    o = Observed(**{**o.__dict__, "now": NOW + timedelta(hours=2)})
    plan = plan_of(o)
    assert plan.decision is not None and plan.decision.reason is Reason.STICKY
    assert plan.recheck_after is None
    conds = {c["type"]: c for c in desired_status(o, plan, None, "t", "sel")["conditions"]}
    assert conds["Degraded"]["reason"] == "Unschedulable"
    assert "PersistentVolumeClaims" in conds["Degraded"]["message"]


def test_the_same_observation_gives_the_same_plan() -> None:
    assert plan_of(observed()) == plan_of(observed())


def test_a_cache_pvc_turned_off_but_kept_is_released_not_deleted() -> None:
    cached = endpoint_obj({**SPEC, "cache": {"enabled": True, "retainOnDelete": False}})
    first = plan_of(observed(cached))
    children = as_observed(first.desired)
    pvc_key = ("PersistentVolumeClaim", "ep-cache")
    assert pvc_key in children and children[pvc_key]["metadata"].get("ownerReferences")
    # One update: cache off, and keep it.
    off = endpoint_obj({**SPEC, "cache": {"enabled": False, "retainOnDelete": True}})
    plan = plan_of(observed(off, children=children))
    assert all(p["kind"] != "PersistentVolumeClaim" for p in plan.to_prune)
    [release] = [a for a in plan.to_apply if a["kind"] == "PersistentVolumeClaim"]
    assert "ownerReferences" not in release["metadata"]
    assert release["spec"]["resources"] == children[pvc_key]["spec"]["resources"]
    # Without retainOnDelete, turning the cache off deletes the PVC it controls.
    gone = endpoint_obj({**SPEC, "cache": {"enabled": False, "retainOnDelete": False}})
    assert [p["kind"] for p in plan_of(observed(gone, children=children)).to_prune] == [
        "PersistentVolumeClaim"]


def test_a_pvc_of_the_cache_name_without_the_endpoints_labels_is_a_conflict() -> None:
    cached = endpoint_obj({**SPEC, "cache": {"enabled": True}})
    foreign = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "ep-cache", "namespace": NS,
                            "labels": {"app.kubernetes.io/managed-by": "aim-controller",
                                       "aim.engine.amd.com/endpoint": "someone-else"}},
               "spec": {"accessModes": ["ReadWriteOnce"]}}
    o = observed(cached)
    o = Observed(**{**o.__dict__, "children": {("PersistentVolumeClaim", "ep-cache"): foreign}})
    plan = plan_of(o)
    assert plan.conflicts == (("PersistentVolumeClaim", "ep-cache"),)
    # New children (not in the caches) are checked by name before they are written.
    assert ("Deployment", "ep") in plan.creates


def test_new_conflicts_and_api_errors_are_told_once() -> None:
    from aim_controller.reconcilers.endpoint_report import _condition_events

    def status(reason: str, message: str) -> dict[str, Any]:
        return {"conditions": [{"type": "ResourcesReady", "status": "False",
                                "reason": reason, "message": message}]}

    new = status("ChildConflict", "ConfigMap ep-config already exists")
    [event] = _condition_events({}, new)
    assert (event.type, event.reason) == ("Warning", "ChildConflict")
    assert _condition_events(new, new) == []
    assert _condition_events(new, status("ChildConflict", "Service ep already exists"))


def test_unschedulable_is_told_again_for_a_new_cause_not_a_new_node_count() -> None:
    from aim_controller.reconcilers.endpoint_report import _condition_events

    def status(message: str) -> dict[str, Any]:
        return {"conditions": [{"type": "Degraded", "status": "True",
                                "reason": "Unschedulable", "message": message}]}

    pvc = "0/9 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    [event] = _condition_events({}, status(pvc))
    assert (event.type, event.reason, event.message) == ("Warning", "Unschedulable", pvc)
    # Another node joined: the scheduler rewrote its message, the cause is the same.
    assert _condition_events(status(pvc), status(pvc.replace("0/9", "0/10"))) == []
    gpus = "0/10 nodes are available: 10 Insufficient amd.com/gpu."
    [event] = _condition_events(status(pvc), status(gpus))
    assert event.message == gpus
    # Other reasons keep every message: a new failure message is a new failure.
    def failed(message: str) -> dict[str, Any]:
        return {"conditions": [{"type": "Degraded", "status": "True",
                                "reason": "ApiError", "message": message}]}
    assert _condition_events(failed("quota 1 of 2"), failed("quota 2 of 2"))
