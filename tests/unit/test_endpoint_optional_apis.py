"""MonitoringReady and ScalingReady (APIs a cluster may not serve), the custom metrics
APIService check, and the HPA with and without its GPU metric: over plain data."""

from __future__ import annotations

from typing import Any

import pytest
from test_builders_support import endpoint
from test_endpoint_decide import SPEC, endpoint_obj, observed, plan_of

from aim_controller.builders.hpa import build_hpa, describe_hpa_metrics, hpa_metrics
from aim_controller.reconcilers.conditions import FALSE, TRUE, Cond
from aim_controller.reconcilers.custom_metrics import (
    api_service_sliver,
    custom_metrics_available,
)
from aim_controller.reconcilers.endpoint_observe import Observed
from aim_controller.reconcilers.endpoint_optional_apis import (
    GPU_METRICS_UNAVAILABLE,
    MONITORING_READY,
    PROMETHEUS_OPERATOR_NOT_INSTALLED,
    SCALING_READY,
    monitoring_condition,
    scaling_condition,
)
from aim_controller.reconcilers.endpoint_report import (
    ApplyResult,
    EventNote,
    desired_status,
    status_events,
)
from aim_controller.reconcilers.endpoint_status import ApplyOutcome

T0 = "2026-01-01T00:00:00Z"
GPU_SCALING = {"minReplicas": 1, "maxReplicas": 4, "targetGPUUtilization": 70}
GPU_METRIC = {"type": "Pods", "pods": {"metric": {"name": "gpu_gfx_activity"},
                                       "target": {"type": "AverageValue", "averageValue": "70"}}}


def cpu(percent: int) -> dict[str, Any]:
    return {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}


def api_service(name: str, available: str | None) -> dict[str, Any]:
    conds = [] if available is None else [
        {"type": "Available", "status": available, "reason": "Passed",
         "message": "all checks passed", "lastTransitionTime": T0}]
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "uid": "u", "resourceVersion": "3",
                         "managedFields": [{"manager": "x"}]},
            "spec": {"group": name.split(".", 1)[1], "caBundle": "LS0t" * 100},
            "status": {"conditions": conds}}


# -- the custom metrics APIService ---------------------------------------------------------
@pytest.mark.parametrize(("services", "available"), [
    ([], False),
    ([api_service("v1beta1.custom.metrics.k8s.io", None)], False),
    ([api_service("v1beta1.custom.metrics.k8s.io", "False")], False),
    ([api_service("v1beta1.custom.metrics.k8s.io", "True")], True),
    ([api_service("v1beta2.custom.metrics.k8s.io", "True")], True),
    ([api_service("v1beta1.custom.metrics.k8s.io", "False"),
      api_service("v1beta2.custom.metrics.k8s.io", "True")], True),
    # Another aggregated API being Available says nothing of custom metrics.
    ([api_service("v1beta1.metrics.k8s.io", "True"),
      api_service("v1beta1.external.metrics.k8s.io", "True")], False),
])
def test_custom_metrics_are_available_iff_one_of_its_api_services_is(
        services: list[dict[str, Any]], available: bool) -> None:
    assert custom_metrics_available(services) is available
    assert custom_metrics_available([api_service_sliver(s) for s in services]) is available


def test_the_api_service_sliver_keeps_the_name_and_the_available_condition_only() -> None:
    sliver = api_service_sliver(api_service("v1beta1.custom.metrics.k8s.io", "True"))
    assert sliver["metadata"] == {"name": "v1beta1.custom.metrics.k8s.io", "uid": "u",
                                  "resourceVersion": "3"}
    assert "spec" not in sliver
    assert sliver["status"] == {"conditions": [
        {"type": "Available", "status": "True", "reason": "Passed"}]}


# -- the HPA with and without the GPU metric -------------------------------------------------
@pytest.mark.parametrize(("scaling", "served", "metrics"), [
    (GPU_SCALING, True, [GPU_METRIC]),
    (GPU_SCALING, False, [cpu(80)]),  # nothing else set: the default CPU target
    ({**GPU_SCALING, "targetCPUUtilization": 60}, False, [cpu(60)]),
    ({**GPU_SCALING, "targetCPUUtilization": 60}, True, [cpu(60), GPU_METRIC]),
    ({**GPU_SCALING, "targetMemoryUtilization": 75}, False, [
        {"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": 75}}}]),
    ({"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilization": 50}, False, [cpu(50)]),
])
def test_the_hpa_has_its_gpu_metric_only_where_a_custom_metrics_api_is_served(
        scaling: dict[str, Any], served: bool, metrics: list[dict[str, Any]]) -> None:
    ep = endpoint({"scaling": scaling}, name="qwen")
    assert hpa_metrics(ep, gpu_metrics_available=served) == metrics
    hpa = build_hpa(ep, gpu_metrics_available=served)
    assert hpa is not None and hpa["spec"]["metrics"] == metrics


def test_the_hpa_builder_alone_builds_what_the_spec_says() -> None:
    hpa = build_hpa(endpoint({"scaling": GPU_SCALING}, name="qwen"))
    assert hpa is not None and hpa["spec"]["metrics"] == [GPU_METRIC]
    assert describe_hpa_metrics([cpu(60), GPU_METRIC]) == "cpu 60%, gpu_gfx_activity 70"


# -- ScalingReady --------------------------------------------------------------------------
def test_scaling_ready_is_absent_without_an_autoscaler() -> None:
    ep = endpoint({"scaling": {"minReplicas": 2, "maxReplicas": 2,
                               "targetGPUUtilization": 70}}, name="qwen")
    assert scaling_condition(ep, custom_metrics=False) is None


def test_a_gpu_target_without_custom_metrics_is_gpu_metrics_unavailable() -> None:
    ep = endpoint({"scaling": GPU_SCALING}, name="qwen")
    c = scaling_condition(ep, custom_metrics=False)
    assert c is not None and (c.type, c.status, c.reason) == (
        SCALING_READY, FALSE, GPU_METRICS_UNAVAILABLE)
    assert "scales on CPU/memory only (cpu 80%)" in c.message
    assert "v1beta1.custom.metrics.k8s.io" in c.message and "prometheus-adapter" in c.message
    assert "gpu_gfx_activity" in c.message
    # Both ways of applying it are named as missing (tests/unit/test_scaling_keda.py).
    assert "KEDA is not installed" in c.message
    assert "--gpu-metrics-prometheus-url is not set" in c.message

    ok = scaling_condition(ep, custom_metrics=True)
    assert ok == Cond(SCALING_READY, TRUE, "MetricsAvailable",
                      "the HorizontalPodAutoscaler qwen scales on gpu_gfx_activity 70")


def test_an_autoscaler_without_a_gpu_target_needs_no_custom_metrics() -> None:
    ep = endpoint({"scaling": {"minReplicas": 1, "maxReplicas": 3,
                               "targetMemoryUtilization": 70}}, name="qwen")
    c = scaling_condition(ep, custom_metrics=False)
    assert c == Cond(SCALING_READY, TRUE, "MetricsAvailable",
                     "the HorizontalPodAutoscaler qwen scales on memory 70%")


# -- MonitoringReady -----------------------------------------------------------------------
MONITORED = {"monitoring": {"enabled": True}}


@pytest.mark.parametrize("spec", [
    {}, {"monitoring": {"enabled": False}},
    {"monitoring": {"enabled": True, "prometheus": {"enabled": False}}}])
def test_monitoring_ready_is_absent_without_prometheus_scraping(spec: dict[str, Any]) -> None:
    ep = endpoint(spec, name="qwen")
    assert monitoring_condition(ep, served=False, chosen=True, outcome=None) is None


def test_monitoring_without_the_prometheus_operator_is_not_installed() -> None:
    ep = endpoint(MONITORED, name="qwen")
    c = monitoring_condition(ep, served=False, chosen=True, outcome=ApplyOutcome(5, 5))
    assert c is not None and (c.type, c.status, c.reason) == (
        MONITORING_READY, FALSE, PROMETHEUS_OPERATOR_NOT_INSTALLED)
    assert "ServiceMonitor qwen" in c.message and "PrometheusRule qwen" in c.message
    assert "install the Prometheus Operator" in c.message


def test_monitoring_served_and_applied_is_ready() -> None:
    ep = endpoint(MONITORED, name="qwen")
    c = monitoring_condition(ep, served=True, chosen=True, outcome=ApplyOutcome(9, 9))
    assert c is not None and (c.status, c.reason) == (TRUE, "MonitoringApplied")
    waiting = monitoring_condition(ep, served=True, chosen=False, outcome=None)
    assert waiting is not None and (waiting.status, waiting.reason) == (
        TRUE, "PrometheusOperatorInstalled")


def test_monitoring_children_that_cannot_be_applied_are_said() -> None:
    ep = endpoint(MONITORED, name="qwen")
    failed = monitoring_condition(ep, served=True, chosen=True, outcome=ApplyOutcome(
        8, 9, errors=("ServiceMonitor qwen: admission webhook said no",)))
    assert failed == Cond(MONITORING_READY, FALSE, "ApplyFailed",
                          "ServiceMonitor qwen: admission webhook said no")
    # The Service they select is somebody else's: they are not applied either.
    held = monitoring_condition(ep, served=True, chosen=True,
                                outcome=ApplyOutcome(7, 9, conflicts=("Service qwen",)))
    assert held is not None and (held.status, held.reason) == (FALSE, "ChildConflict")
    # Another kind's problem is not monitoring's.
    other = monitoring_condition(ep, served=True, chosen=True, outcome=ApplyOutcome(
        8, 9, errors=("Deployment qwen: forbidden",)))
    assert other is not None and other.status == TRUE


# -- in the status ---------------------------------------------------------------------------
def with_apis(spec: dict[str, Any], *, monitoring: bool, metrics: bool,
              status: dict[str, Any] | None = None) -> Observed:
    o = observed(endpoint_obj({**SPEC, **spec}, status))
    return Observed(**{**o.__dict__, "monitoring_available": monitoring,
                       "custom_metrics_available": metrics})


def report(o: Observed) -> tuple[dict[str, Any], list[EventNote]]:
    plan = plan_of(o)
    applied = ApplyResult(ApplyOutcome(len(plan.desired), len(plan.desired)))
    status = desired_status(o, plan, applied, T0, "sel")
    return status, status_events(o, plan, status)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


BOTH = {**MONITORED, "scaling": GPU_SCALING}


def test_missing_apis_are_said_once_and_keep_neither_ready_nor_degraded() -> None:
    status, events = report(with_apis(BOTH, monitoring=False, metrics=False))
    conds = conditions(status)
    assert conds[MONITORING_READY] == (FALSE, PROMETHEUS_OPERATOR_NOT_INSTALLED)
    assert conds[SCALING_READY] == (FALSE, GPU_METRICS_UNAVAILABLE)
    assert conds["Degraded"] == (FALSE, "AsExpected")
    types = [c["type"] for c in status["conditions"]]
    assert types.index(SCALING_READY) < types.index("Ready")
    # Ready follows the Deployment only (here: none yet), never these two.
    assert conds["Ready"] == (FALSE, "DeploymentNotFound")
    assert sorted(e.reason for e in events if e.type == "Warning") == [
        GPU_METRICS_UNAVAILABLE, PROMETHEUS_OPERATOR_NOT_INSTALLED]

    # Written again for another reason: nothing new to warn about.
    _again, events = report(with_apis(BOTH, monitoring=False, metrics=False, status=status))
    assert [e for e in events if e.type == "Warning"] == []

    # The APIs arrive: both True, the HPA gets its GPU metric back, no Warning.
    o = with_apis(BOTH, monitoring=True, metrics=True, status=status)
    served, events = report(o)
    assert conditions(served)[MONITORING_READY] == (TRUE, "MonitoringApplied")
    assert conditions(served)[SCALING_READY] == (TRUE, "MetricsAvailable")
    assert [e for e in events if e.type == "Warning"] == []
    hpa = next(d for d in plan_of(o).desired if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [GPU_METRIC]

    # And go again: a new Warning each.
    _gone, events = report(with_apis(BOTH, monitoring=False, metrics=False, status=served))
    assert sorted(e.reason for e in events if e.type == "Warning") == [
        GPU_METRICS_UNAVAILABLE, PROMETHEUS_OPERATOR_NOT_INSTALLED]


def test_without_custom_metrics_the_planned_hpa_has_no_pods_metric() -> None:
    plan = plan_of(with_apis(BOTH, monitoring=False, metrics=False))
    hpa = next(d for d in plan.desired if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [cpu(80)]
    assert not any(d["kind"] in ("ServiceMonitor", "PrometheusRule") for d in plan.desired)


def test_an_endpoint_asking_for_neither_has_neither_condition() -> None:
    status, _events = report(with_apis({}, monitoring=False, metrics=False))
    assert not {MONITORING_READY, SCALING_READY} & set(conditions(status))
