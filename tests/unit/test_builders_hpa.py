"""The HorizontalPodAutoscaler."""

from __future__ import annotations

from typing import Any

import pytest
from test_builders_support import endpoint, structural_problems

from aim_controller.builders import build_hpa, hpa_enabled


def hpa(scaling: dict[str, Any]) -> dict[str, Any]:
    obj = build_hpa(endpoint({"scaling": scaling}, name="qwen"))
    assert obj is not None
    return obj


@pytest.mark.parametrize(("lo", "hi", "wanted"), [
    (1, 1, False), (3, 3, False), (0, 1, False), (1, 2, True), (0, 2, True), (2, 5, True)])
def test_exists_iff_max_above_min(lo: int, hi: int, wanted: bool) -> None:
    ep = endpoint({"scaling": {"minReplicas": lo, "maxReplicas": hi}})
    assert hpa_enabled(ep.spec) is wanted
    assert (build_hpa(ep) is not None) is wanted


def test_metrics_in_order() -> None:
    obj = hpa({"minReplicas": 1, "maxReplicas": 5, "targetCPUUtilization": 70,
               "targetMemoryUtilization": 80})
    assert (obj["apiVersion"], obj["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert (obj["spec"]["minReplicas"], obj["spec"]["maxReplicas"]) == (1, 5)
    assert obj["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 70}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": 80}}},
    ]
    assert "behavior" not in obj["spec"]
    assert structural_problems(obj) == []


def test_targets_the_endpoint_scale_subresource() -> None:
    obj = hpa({"minReplicas": 1, "maxReplicas": 3})
    assert obj["spec"]["scaleTargetRef"] == {
        "apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMEndpoint", "name": "qwen"}


def test_min_replicas_at_least_one() -> None:
    assert hpa({"minReplicas": 0, "maxReplicas": 4})["spec"]["minReplicas"] == 1


def test_default_metric_is_cpu_80() -> None:
    assert hpa({"minReplicas": 1, "maxReplicas": 2})["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80}}}]


def test_spec_auto_scaling_example() -> None:
    obj = hpa({"minReplicas": 1, "maxReplicas": 10, "targetCPUUtilization": 70,
               "targetMemoryUtilization": 80, "targetGPUUtilization": 85,
               "scaleDownDelay": "300s", "scaleUpDelay": "60s"})
    assert obj["spec"]["metrics"][2] == {"type": "Pods", "pods": {
        "metric": {"name": "gpu_gfx_activity"},
        "target": {"type": "AverageValue", "averageValue": "85"}}}
    assert obj["spec"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 60},
        "scaleDown": {"stabilizationWindowSeconds": 300}}


def test_custom_gpu_metric_name() -> None:
    obj = hpa({"minReplicas": 1, "maxReplicas": 2, "targetGPUUtilization": 60,
               "gpuUtilizationMetric": "amd_gpu_busy_percent"})
    assert obj["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "amd_gpu_busy_percent"},
        "target": {"type": "AverageValue", "averageValue": "60"}}}]


@pytest.mark.parametrize(("delay", "seconds"), [
    ("5m", 300), ("1h30m", 3600), ("2h", 3600), ("250ms", 1), ("0s", 0), ("1h", 3600)])
def test_delays_are_clamped_windows(delay: str, seconds: int) -> None:
    obj = hpa({"minReplicas": 1, "maxReplicas": 2, "scaleDownDelay": delay})
    assert obj["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": seconds}}
