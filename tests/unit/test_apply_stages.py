"""apply_stages: the children an endpoint reconcile writes together, then after."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aim_controller.reconcilers.endpoint import DEPENDS_ON, apply_stages

KINDS = ["ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
         "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"]


def obj(kind: str, name: str = "x") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}}


def test_a_deployment_waits_for_its_configmap_the_rest_goes_first() -> None:
    objs = [obj("ConfigMap"), obj("Deployment"), obj("Service"), obj("ServiceMonitor")]
    stages = apply_stages(objs)
    assert [[o["kind"] for o in s] for s in stages] == [
        ["ConfigMap", "Service"], ["Deployment", "ServiceMonitor"]]


def test_with_nothing_to_wait_for_one_stage() -> None:
    # The ConfigMap exists already (not planned): the Deployment goes at once.
    assert [[o["kind"] for o in s] for s in apply_stages([obj("Deployment"), obj("Service")])] \
        == [["Deployment", "Service"]]
    assert apply_stages([]) == []


@given(st.lists(st.sampled_from(KINDS), max_size=10))
def test_every_child_once_in_plan_order_after_what_it_depends_on(kinds: list[str]) -> None:
    objs = [obj(k, f"n{i}") for i, k in enumerate(kinds)]
    stages = apply_stages(objs)
    flat = [o for s in stages for o in s]
    assert sorted(o["metadata"]["name"] for o in flat) == sorted(o["metadata"]["name"]
                                                                  for o in objs)
    assert all(stages)
    for s in stages:  # plan order within a stage
        assert s == [o for o in objs if o in s]
    stage_of = {o["metadata"]["name"]: i for i, s in enumerate(stages) for o in s}
    for o in objs:
        for dep in objs:
            if dep["kind"] in DEPENDS_ON.get(o["kind"], frozenset()):
                assert stage_of[dep["metadata"]["name"]] < stage_of[o["metadata"]["name"]]
