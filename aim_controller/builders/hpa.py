"""The HorizontalPodAutoscaler (autoscaling/v2) ``<name>``, when an autoscaler is wanted
(``scaling.maxReplicas > max(scaling.minReplicas, 1)``, see :mod:`.scaling`).

* scaleTargetRef: the AIMEndpoint's scale subresource (see :mod:`.scaling`).
* metrics, in this order, each only when its target is set:
  ``targetCPUUtilization`` -> Resource cpu Utilization; ``targetMemoryUtilization``
  -> Resource memory Utilization; ``targetGPUUtilization`` -> a Pods metric named
  ``scaling.gpuUtilizationMetric`` (default ``gpu_gfx_activity``) with target
  AverageValue = the percent, only while a custom metrics API (custom.metrics.k8s.io,
  e.g. prometheus-adapter) is served: the caller says so (``gpu_metrics_available``).
  Without one the HPA is built without the GPU metric, on CPU/memory as set (the
  endpoint's ``ScalingReady=False GpuMetricsUnavailable`` says why), since an HPA with
  a metric it cannot read does not scale on the others either. No target left means
  CPU 80%, like ``kubectl autoscale``.
* behavior: ``scaleUpDelay``/``scaleDownDelay`` become the scale-up/scale-down
  stabilization windows, in whole seconds clamped to [0, 3600] (the API maximum);
  an unset delay leaves that direction to the API defaults (0 s up, 300 s down).
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import API_VERSION, KIND_AIM_ENDPOINT, AIMEndpoint

from .durations import parse_duration_seconds
from .meta import endpoint_ref, object_meta
from .scaling import hpa_bounds, hpa_enabled

__all__ = [
    "DEFAULT_CPU_UTILIZATION",
    "MAX_STABILIZATION_SECONDS",
    "build_hpa",
    "describe_hpa_metrics",
    "hpa_behavior",
    "hpa_metrics",
]

DEFAULT_CPU_UTILIZATION = 80
MAX_STABILIZATION_SECONDS = 3600


def _resource_metric(name: str, percent: int) -> dict[str, Any]:
    return {"type": "Resource", "resource": {
        "name": name, "target": {"type": "Utilization", "averageUtilization": percent},
    }}


def hpa_metrics(endpoint: AIMEndpoint, *, gpu_metrics_available: bool = True
                ) -> list[dict[str, Any]]:
    """The HPA's metrics; the GPU Pods metric only when ``gpu_metrics_available``."""
    s = endpoint.spec.scaling
    metrics: list[dict[str, Any]] = []
    if s.target_cpu_utilization is not None:
        metrics.append(_resource_metric("cpu", s.target_cpu_utilization))
    if s.target_memory_utilization is not None:
        metrics.append(_resource_metric("memory", s.target_memory_utilization))
    if s.target_gpu_utilization is not None and gpu_metrics_available:
        metrics.append({"type": "Pods", "pods": {
            "metric": {"name": s.gpu_utilization_metric},
            "target": {"type": "AverageValue", "averageValue": str(s.target_gpu_utilization)},
        }})
    return metrics or [_resource_metric("cpu", DEFAULT_CPU_UTILIZATION)]


def describe_hpa_metrics(metrics: list[dict[str, Any]]) -> str:
    """``cpu 80%, memory 70%, gpu_gfx_activity 60`` (what :func:`hpa_metrics` built)."""
    parts: list[str] = []
    for m in metrics:
        if m["type"] == "Resource":
            r = m["resource"]
            parts.append(f"{r['name']} {r['target']['averageUtilization']}%")
        else:
            p = m["pods"]
            parts.append(f"{p['metric']['name']} {p['target']['averageValue']}")
    return ", ".join(parts)


def _window(delay: str) -> int:
    return min(max(parse_duration_seconds(delay), 0), MAX_STABILIZATION_SECONDS)


def hpa_behavior(endpoint: AIMEndpoint) -> dict[str, Any] | None:
    s = endpoint.spec.scaling
    behavior: dict[str, Any] = {}
    if s.scale_up_delay is not None:
        behavior["scaleUp"] = {"stabilizationWindowSeconds": _window(s.scale_up_delay)}
    if s.scale_down_delay is not None:
        behavior["scaleDown"] = {"stabilizationWindowSeconds": _window(s.scale_down_delay)}
    return behavior or None


def build_hpa(endpoint: AIMEndpoint, *, gpu_metrics_available: bool = True
              ) -> dict[str, Any] | None:
    """The HPA manifest, or None when no autoscaler is wanted."""
    if not hpa_enabled(endpoint.spec):
        return None
    name = endpoint_ref(endpoint).name
    target = {"apiVersion": API_VERSION, "kind": KIND_AIM_ENDPOINT, "name": name}
    lo, hi = hpa_bounds(endpoint.spec)
    spec: dict[str, Any] = {
        "scaleTargetRef": target,
        "minReplicas": lo,
        "maxReplicas": hi,
        "metrics": hpa_metrics(endpoint, gpu_metrics_available=gpu_metrics_available),
    }
    behavior = hpa_behavior(endpoint)
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(endpoint, name),
        "spec": spec,
    }
