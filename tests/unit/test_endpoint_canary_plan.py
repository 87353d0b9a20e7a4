"""The canary through the decide and report steps, over plain data: which Deployments
are applied with which template and replicas, what the status and Events say, and the
builders of the canary Deployment."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from recipes_fixtures import gpu_node
from test_endpoint_decide import NOW, SPEC, as_observed, endpoint_obj, observed, plan_of

from aim_controller.builders.canary import (
    ANNOTATION_TEMPLATE_HASH,
    LABEL_CANARY,
    build_canary_deployment,
    is_canary_pod,
    stamp_template_hash,
)
from aim_controller.recipes import build_inventory
from aim_controller.reconcilers.endpoint_canary import Mode
from aim_controller.reconcilers.endpoint_decide import Plan
from aim_controller.reconcilers.endpoint_observe import Observed
from aim_controller.reconcilers.endpoint_report import ApplyResult, desired_status, status_events
from aim_controller.reconcilers.endpoint_status import ApplyOutcome, PodsState

CANARY = {"deployment": {"canary": {"enabled": True, "trafficSplit": 10, "duration": "5s"}}}


def deployments(plan: Plan) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in plan.desired if d["kind"] == "Deployment"}


def status_of(o: Observed, plan: Plan) -> dict[str, Any]:
    n = len(plan.desired)
    return desired_status(o, plan, ApplyResult(ApplyOutcome(n, n)), "2026-01-01T00:00:00Z",
                          "sel")


def image(d: dict[str, Any]) -> str:
    return str(d["spec"]["template"]["spec"]["containers"][0]["image"])


def running(spec: dict[str, Any]) -> tuple[Observed, Plan]:
    """A served endpoint of ``spec`` whose children are applied, and its plan."""
    first = plan_of(observed(endpoint_obj(spec)))
    status = status_of(observed(endpoint_obj(spec)), first)
    o = observed(endpoint_obj(spec, status), children=as_observed(first.desired))
    return o, first


def changed(o: Observed, spec: dict[str, Any], **more: Any) -> Observed:
    obj = endpoint_obj(spec, dict(o.status))
    return Observed(**{**observed(obj, children=dict(o.children)).__dict__, **more})


def test_canary_off_is_exactly_todays_plan() -> None:
    plan = plan_of(observed())
    assert plan.canary is None
    [d] = deployments(plan).values()
    assert ANNOTATION_TEMPLATE_HASH not in d["metadata"].get("annotations", {})
    assert "canary" not in status_of(observed(), plan) or status_of(
        observed(), plan)["canary"] is None


def test_a_template_change_runs_a_canary_beside_the_untouched_stable() -> None:
    spec = {**SPEC, **CANARY}
    o, _ = running(spec)
    stable_before = o.children[("Deployment", "ep")]
    assert ANNOTATION_TEMPLATE_HASH in stable_before["metadata"]["annotations"]
    new = changed(o, {**spec, "image": "example.com/vllm:v2"})
    plan = plan_of(new)
    assert plan.canary is not None and plan.canary.mode is Mode.CANARY
    deps = deployments(plan)
    assert set(deps) == {"ep", "ep-canary"}
    assert deps["ep"]["spec"]["template"] == stable_before["spec"]["template"]
    assert image(deps["ep-canary"]) == "example.com/vllm:v2"
    assert deps["ep-canary"]["spec"]["replicas"] == 1
    assert deps["ep-canary"]["spec"]["selector"]["matchLabels"][LABEL_CANARY] == "true"
    labels = deps["ep-canary"]["spec"]["template"]["metadata"]["labels"]
    # The Service's selector (the stable labels) matches the canary's pods too.
    assert set(deps["ep"]["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())
    assert ("Deployment", "ep-canary") in plan.creates
    status = status_of(new, plan)
    assert status["canary"]["phase"] == "Progressing"
    assert status["canary"]["weight"] == 50 and "approximate" in status["canary"]["message"]
    cond = next(c for c in status["conditions"] if c["type"] == "CanaryFailed")
    assert cond["status"] == "False"
    assert [e.reason for e in status_events(new, plan, status)] == ["CanaryStarted"]


def test_healthy_canary_is_promoted_and_then_removed() -> None:
    spec = {**SPEC, **CANARY}
    o, _ = running(spec)
    v2 = {**spec, "image": "example.com/vllm:v2"}
    started = changed(o, v2)
    plan = plan_of(started)
    status = status_of(started, plan)
    children = dict(o.children) | as_observed(plan.desired)
    ready = PodsState(ready=1)
    o2 = Observed(**{**observed(endpoint_obj(v2, status), children=children).__dict__,
                     "canary_pods": ready, "now": NOW + timedelta(seconds=1)})
    analyzing = plan_of(o2)
    assert analyzing.canary is not None and analyzing.canary.record is not None
    assert analyzing.canary.record["phase"] == "Analyzing"
    assert analyzing.recheck_after is not None and analyzing.recheck_after <= 6.0
    status = status_of(o2, analyzing)
    o3 = Observed(**{**o2.__dict__, "obj": endpoint_obj(v2, status), "status": status,
                     "now": NOW + timedelta(seconds=8)})
    promoted = plan_of(o3)
    assert promoted.canary is not None and promoted.canary.mode is Mode.PLAIN
    deps = deployments(promoted)
    assert set(deps) == {"ep"} and image(deps["ep"]) == "example.com/vllm:v2"
    assert [p["metadata"]["name"] for p in promoted.to_prune] == ["ep-canary"]
    assert [e.reason for e in status_events(o3, promoted, status_of(o3, promoted))] == [
        "CanaryPromoted"]


def test_failing_canary_rolls_back_with_canary_failed_and_a_warning() -> None:
    from aim_controller.reconcilers.pod_failures import PodFailure

    spec = {**SPEC, **CANARY}
    o, _ = running(spec)
    v2 = {**spec, "image": "example.com/vllm:v2"}
    started = changed(o, v2)
    plan = plan_of(started)
    status = status_of(started, plan)
    children = dict(o.children) | as_observed(plan.desired)
    crash = PodsState(failure=PodFailure("CrashLoopBackOff", "container engine of pod "
                                         "ep-canary-x keeps exiting", "ep-canary-x", "engine"))
    o2 = Observed(**{**observed(endpoint_obj(v2, status), children=children).__dict__,
                     "canary_pods": crash})
    rolled = plan_of(o2)
    assert rolled.canary is not None and rolled.canary.mode is Mode.HOLD
    deps = deployments(rolled)
    assert set(deps) == {"ep"}
    assert deps["ep"]["spec"]["template"] == o.children[("Deployment", "ep")]["spec"]["template"]
    assert [p["metadata"]["name"] for p in rolled.to_prune] == ["ep-canary"]
    st = status_of(o2, rolled)
    cond = next(c for c in st["conditions"] if c["type"] == "CanaryFailed")
    assert cond["status"] == "True" and "CrashLoopBackOff" in cond["message"]
    events = status_events(o2, rolled, st)
    assert ("Warning", "CanaryFailed") in [(e.type, e.reason) for e in events]


def test_a_canary_that_cannot_fit_beside_the_stable_says_so() -> None:
    spec = {**SPEC, **CANARY}
    o, _ = running(spec)
    # The stable's one replica holds the node's only GPU (given back to its selection).
    held = PodsState(bound=1, ready=1, held=(("n0", {"amd.com/gpu": 1}),))
    full = build_inventory([gpu_node("n0", "MI300X", 1)], [])
    new = changed(o, {**spec, "image": "example.com/vllm:v2"}, pods=held, inventory=full)
    plan = plan_of(new)
    assert plan.canary is not None and plan.canary.mode is Mode.CANARY
    assert plan.canary.record is not None
    # Started: the next reconcile says why its pods do not run.
    status = status_of(new, plan)
    again = Observed(**{**new.__dict__, "obj": endpoint_obj(new.obj["spec"], status),
                        "status": status})
    later = plan_of(again)
    assert later.canary is not None and later.canary.record is not None
    assert "no room for 1 canary replica(s)" in later.canary.record["message"]
    assert "the stable Deployment keeps serving" in later.canary.record["message"]


def test_canary_builder_and_pod_mark() -> None:
    stable = stamp_template_hash({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ep", "namespace": "aim"},
        "spec": {"replicas": 9, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}})
    canary = build_canary_deployment(stable, 1)
    assert canary["metadata"]["name"] == "ep-canary" and canary["spec"]["replicas"] == 1
    assert canary["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH] == \
        stable["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
    pod = copy.deepcopy(canary["spec"]["template"])
    assert is_canary_pod(pod) and not is_canary_pod(stable["spec"]["template"])
    assert stable["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


GATEWAY = {"service": {"gateway": {"name": "public", "namespace": "gw"}}}


def test_with_the_gateway_api_an_httproute_splits_by_weight() -> None:
    spec = {**SPEC, **CANARY, **GATEWAY}
    o, _ = running(spec)
    o = Observed(**{**o.__dict__, "routes_available": True})
    [route] = [d for d in plan_of(o).desired if d["kind"] == "HTTPRoute"]
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
         "namespace": "gw"}]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["ep"]
    new = changed(o, {**spec, "image": "example.com/vllm:v2"}, routes_available=True)
    plan = plan_of(new)
    [route] = [d for d in plan.desired if d["kind"] == "HTTPRoute"]
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("ep", 90), ("ep-canary", 10)]
    svc = next(d for d in plan.desired
               if d["kind"] == "Service" and d["metadata"]["name"] == "ep-canary")
    canary = deployments(plan)["ep-canary"]
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert set(svc["spec"]["selector"].items()) <= set(labels.items())
    # The endpoint's Service does not select the canary's pods: the weights are the split.
    stable_svc = next(d for d in plan.desired
                      if d["kind"] == "Service" and d["metadata"]["name"] == "ep")
    assert not set(stable_svc["spec"]["selector"].items()) <= set(labels.items())
    status = status_of(new, plan)
    assert status["canary"]["weight"] == 10 and "HTTPRoute" in status["canary"]["message"]
    routed = next(c for c in status["conditions"] if c["type"] == "GatewayRouted")
    assert routed["status"] == "True"


def test_without_the_gateway_api_the_gateway_is_refused_in_a_condition() -> None:
    spec = {**SPEC, **GATEWAY}
    o = observed(endpoint_obj(spec))
    plan = plan_of(o)
    assert not [d for d in plan.desired if d["kind"] == "HTTPRoute"]
    status = status_of(o, plan)
    cond = next(c for c in status["conditions"] if c["type"] == "GatewayRouted")
    assert cond["status"] == "False" and cond["reason"] == "GatewayAPINotServed"
    assert ("Warning", "GatewayAPINotServed") in [
        (e.type, e.reason) for e in status_events(o, plan, status)]
