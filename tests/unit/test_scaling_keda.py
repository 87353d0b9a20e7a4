"""GPU-utilization autoscaling through KEDA, over plain data: the ScaledObject builder,
when it replaces the HPA (KEDA served x Prometheus URL x GPU target), and what
ScalingReady says either way. The real thing: tests/integration/test_keda_scaling.py."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from test_builders_support import endpoint
from test_endpoint_decide import GRACE, SETTINGS, SPEC, endpoint_obj, observed

from aim_controller.builders.scaledobject import build_scaled_object, gpu_query, uses_keda
from aim_controller.reconcilers.conditions import FALSE, TRUE
from aim_controller.reconcilers.endpoint_decide import decide
from aim_controller.reconcilers.endpoint_observe import Observed
from aim_controller.reconcilers.endpoint_optional_apis import (
    GPU_METRICS_UNAVAILABLE,
    SCALED_OBJECT_NOT_READY,
    SCALING_READY,
    scaling_condition,
)
from aim_controller.reconcilers.endpoint_report import ApplyResult, desired_status
from aim_controller.reconcilers.endpoint_status import ApplyOutcome

URL = "http://prometheus.monitoring:9090"
GPU = {"minReplicas": 1, "maxReplicas": 4, "targetGPUUtilization": 70}
T0 = "2026-01-01T00:00:00Z"


def test_the_scaled_object_carries_every_target_bound_and_delay() -> None:
    ep = endpoint({"scaling": {**GPU, "targetCPUUtilization": 60,
                               "targetMemoryUtilization": 75,
                               "scaleUpDelay": "30s", "scaleDownDelay": "5m"}},
                  name="qwen", namespace="team-a")
    so = build_scaled_object(ep, prometheus_url=URL)
    assert (so["apiVersion"], so["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    meta = so["metadata"]
    assert (meta["name"], meta["namespace"]) == ("qwen", "team-a")
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("AIMEndpoint", "qwen", True)
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "aim.engine.amd.com/v1alpha1",
                                      "kind": "AIMEndpoint", "name": "qwen"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 30},
        "scaleDown": {"stabilizationWindowSeconds": 300}}
    cpu, memory, gpu = spec["triggers"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
    assert memory == {"type": "memory", "metricType": "Utilization",
                      "metadata": {"value": "75"}}
    assert gpu["type"] == "prometheus" and gpu["metricType"] == "AverageValue"
    assert gpu["metadata"] == {"serverAddress": URL, "query": gpu_query(ep), "threshold": "70"}


def test_without_delays_or_cpu_memory_targets_only_the_gpu_trigger() -> None:
    so = build_scaled_object(endpoint({"scaling": GPU}, name="qwen"), prometheus_url=URL)
    assert "advanced" not in so["spec"]
    assert [t["type"] for t in so["spec"]["triggers"]] == ["prometheus"]


def test_the_query_averages_each_pods_gpus_and_sums_the_endpoints_pods() -> None:
    ep = endpoint({"scaling": {**GPU, "gpuUtilizationMetric": "amd_gpu_busy"}},
                  name="qwen", namespace="team-a")
    q = gpu_query(ep)
    m = re.fullmatch(r'sum\(avg by \(pod\) \(amd_gpu_busy\{namespace="team-a",'
                     r'pod=~"(?P<re>[^"]+)"\}\)\)', q)
    assert m is not None, q
    pods = re.compile(m["re"])  # Prometheus anchors its regexes: so does fullmatch
    assert pods.fullmatch("qwen-7f8b9c6d5-x2k4p")
    assert not pods.fullmatch("qwen-7b-7f8b9c6d5-x2k4p")  # another endpoint's pods
    assert not pods.fullmatch("qwen-canary-x2k4p")


# -- which autoscaler ------------------------------------------------------------------------
def keda_observed(scaling: dict[str, Any], *, keda: bool, url: str | None,
                  children: dict[tuple[str, str], Any] | None = None) -> Observed:
    o = observed(endpoint_obj({**SPEC, "scaling": scaling}), children=children)
    return dataclasses.replace(o, keda_available=keda, gpu_metrics_url=url)


def plan(o: Observed) -> Any:
    return decide(o, settings=dataclasses.replace(
        SETTINGS, gpu_metrics_prometheus_url=o.gpu_metrics_url), grace=GRACE)


def autoscalers(o: Observed) -> list[str]:
    return [d["kind"] for d in plan(o).desired
            if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


@pytest.mark.parametrize("keda", [True, False])
@pytest.mark.parametrize("url", [URL, None])
@pytest.mark.parametrize("gpu_target", [70, None])
def test_a_scaled_object_exactly_when_keda_the_url_and_a_gpu_target_are_there(
    keda: bool, url: str | None, gpu_target: int | None,
) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilization": 80,
               **({"targetGPUUtilization": gpu_target} if gpu_target else {})}
    o = keda_observed(scaling, keda=keda, url=url)
    expected = keda and url is not None and gpu_target is not None
    assert o.endpoint is not None
    assert uses_keda(o.endpoint, keda_served=keda, prometheus_url=url) is expected
    assert autoscalers(o) == ["ScaledObject" if expected else "HorizontalPodAutoscaler"]


def test_no_autoscaler_at_fixed_replicas_even_with_keda() -> None:
    o = keda_observed({"minReplicas": 2, "maxReplicas": 2, "targetGPUUtilization": 70},
                      keda=True, url=URL)
    assert autoscalers(o) == []


def test_switching_to_keda_prunes_our_hpa_and_back_prunes_our_scaled_object() -> None:
    hpa_plan = plan(keda_observed(GPU, keda=False, url=URL))
    hpa = next(d for d in hpa_plan.desired if d["kind"] == "HorizontalPodAutoscaler")
    owned = {("HorizontalPodAutoscaler", "ep"): {**hpa, "metadata": {
        **hpa["metadata"], "uid": "uid-hpa", "resourceVersion": "3"}}}
    p = plan(keda_observed(GPU, keda=True, url=URL, children=owned))
    assert [(c["kind"], c["metadata"]["name"]) for c in p.to_prune] == [
        ("HorizontalPodAutoscaler", "ep")]
    assert ("ScaledObject", "ep") in {(d["kind"], d["metadata"]["name"]) for d in p.to_apply}
    # The URL taken away: the ScaledObject goes, our HPA comes back.
    so = next(d for d in p.desired if d["kind"] == "ScaledObject")
    owned = {("ScaledObject", "ep"): {**so, "metadata": {
        **so["metadata"], "uid": "uid-so", "resourceVersion": "4"}}}
    back = plan(keda_observed(GPU, keda=True, url=None, children=owned))
    assert [c["kind"] for c in back.to_prune] == ["ScaledObject"]
    assert "HorizontalPodAutoscaler" in {d["kind"] for d in back.to_apply}


# -- ScalingReady ----------------------------------------------------------------------------
def so_status(ready: str | None, reason: str = "", message: str = "") -> dict[str, Any]:
    conds = [] if ready is None else [
        {"type": "Ready", "status": ready, "reason": reason, "message": message}]
    return {"kind": "ScaledObject", "status": {"conditions": conds}}


def test_scaling_ready_follows_the_scaled_objects_ready_condition() -> None:
    ep = endpoint({"scaling": {**GPU, "targetCPUUtilization": 60}}, name="qwen")
    kw: dict[str, Any] = {"custom_metrics": False, "keda_served": True, "prometheus_url": URL}
    pending = scaling_condition(ep, **kw, scaled_object=None)
    assert pending is not None and (pending.status, pending.reason) == (
        FALSE, SCALED_OBJECT_NOT_READY)
    assert "KEDA has not reported it Ready yet" in pending.message
    failing = scaling_condition(ep, **kw, scaled_object=so_status(
        "False", "ScaledObjectCheckFailed", "prometheus unreachable"))
    assert failing is not None and failing.status == FALSE
    assert "ScaledObjectCheckFailed: prometheus unreachable" in failing.message
    ready = scaling_condition(ep, **kw, scaled_object=so_status("True", "ScaledObjectReady"))
    assert ready is not None and (ready.type, ready.status, ready.reason) == (
        SCALING_READY, TRUE, "ScaledObjectReady")
    assert "gpu_gfx_activity 70" in ready.message and "cpu 60%" in ready.message
    assert "keda-hpa-qwen" in ready.message
    conflict = scaling_condition(ep, **kw, scaled_object=None, outcome=ApplyOutcome(
        7, 8, conflicts=("ScaledObject qwen",)))
    assert conflict is not None and (conflict.status, conflict.reason) == (
        FALSE, "ChildConflict")
    assert "ScaledObject qwen already exists and is not this endpoint's" in conflict.message


@pytest.mark.parametrize(("keda", "url", "missing", "not_missing"), [
    (False, URL, "KEDA is not installed", "--gpu-metrics-prometheus-url"),
    (True, None, "--gpu-metrics-prometheus-url is not set", "KEDA is not installed"),
])
def test_without_keda_or_the_url_the_condition_names_what_is_missing(
    keda: bool, url: str | None, missing: str, not_missing: str,
) -> None:
    c = scaling_condition(endpoint({"scaling": GPU}, name="qwen"), custom_metrics=False,
                          keda_served=keda, prometheus_url=url)
    assert c is not None and (c.status, c.reason) == (FALSE, GPU_METRICS_UNAVAILABLE)
    assert missing in c.message and not_missing not in c.message
    assert "scales on CPU/memory only (cpu 80%)" in c.message


def test_the_status_reports_the_scaled_object_it_observes() -> None:
    so = so_status("True", "ScaledObjectReady")
    o = keda_observed(GPU, keda=True, url=URL, children={("ScaledObject", "ep"): so})
    p = plan(o)
    status = desired_status(o, p, ApplyResult(ApplyOutcome(len(p.desired), len(p.desired))),
                            T0, "sel")
    cond = next(c for c in status["conditions"] if c["type"] == SCALING_READY)
    assert (cond["status"], cond["reason"]) == ("True", "ScaledObjectReady")
