"""The KEDA ScaledObject (keda.sh/v1alpha1) ``<name>``: the autoscaler instead of the
HPA when the endpoint scales on its GPUs and KEDA can read them (:func:`uses_keda`).

* scaleTargetRef: the AIMEndpoint's scale subresource, as the HPA's (KEDA scales any
  scale subresource; its own HPA ``keda-hpa-<name>`` is KEDA's, never ours).
* min/maxReplicaCount: the HPA's bounds (see :mod:`.scaling`).
* advanced.horizontalPodAutoscalerConfig.behavior: the HPA's stabilization windows
  (``scaleUpDelay``/``scaleDownDelay``).
* triggers: cpu and memory (metricType Utilization) for the CPU/memory targets that are
  set, then a prometheus trigger on the Prometheus of ``--gpu-metrics-prometheus-url``:
  the sum over the endpoint's pods of each pod's mean ``gpu_gfx_activity`` (the AMD
  device metrics exporter's workload labels ``namespace`` and ``pod``, see
  :mod:`.promql`), with threshold ``targetGPUUtilization`` as an AverageValue, so the
  HPA wants ``ceil(sum / target)`` pods: the utilization rule, per pod.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import API_VERSION, KIND_AIM_ENDPOINT, AIMEndpoint

from .hpa import hpa_behavior
from .meta import endpoint_ref, object_meta
from .promql import pod_selector
from .scaling import hpa_bounds, hpa_enabled

__all__ = [
    "KEDA_API_VERSION",
    "KIND_SCALED_OBJECT",
    "build_scaled_object",
    "gpu_query",
    "uses_keda",
]

KEDA_API_VERSION = "keda.sh/v1alpha1"
KIND_SCALED_OBJECT = "ScaledObject"


def uses_keda(endpoint: AIMEndpoint, *, keda_served: bool, prometheus_url: str | None) -> bool:
    """The endpoint's autoscaler is a ScaledObject (not the HPA): it wants one, it has a
    GPU target, KEDA's ScaledObject is served and a GPU-metrics Prometheus is set."""
    return (hpa_enabled(endpoint.spec) and keda_served and bool(prometheus_url)
            and endpoint.spec.scaling.target_gpu_utilization is not None)


def gpu_query(endpoint: AIMEndpoint) -> str:
    """The endpoint's GPU activity: each pod's mean over its GPUs, summed over pods."""
    metric = endpoint.spec.scaling.gpu_utilization_metric
    return f"sum(avg by (pod) ({metric}{{{pod_selector(endpoint_ref(endpoint))}}}))"


def _utilization(kind: str, percent: int) -> dict[str, Any]:
    return {"type": kind, "metricType": "Utilization", "metadata": {"value": str(percent)}}


def build_scaled_object(endpoint: AIMEndpoint, *, prometheus_url: str) -> dict[str, Any]:
    """The ScaledObject manifest (the caller decides with :func:`uses_keda`)."""
    s = endpoint.spec.scaling
    assert s.target_gpu_utilization is not None
    name = endpoint_ref(endpoint).name
    lo, hi = hpa_bounds(endpoint.spec)
    triggers: list[dict[str, Any]] = []
    if s.target_cpu_utilization is not None:
        triggers.append(_utilization("cpu", s.target_cpu_utilization))
    if s.target_memory_utilization is not None:
        triggers.append(_utilization("memory", s.target_memory_utilization))
    triggers.append({"type": "prometheus", "name": "gpu", "metricType": "AverageValue",
                     "metadata": {"serverAddress": prometheus_url,
                                  "query": gpu_query(endpoint),
                                  "threshold": str(s.target_gpu_utilization)}})
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND_AIM_ENDPOINT, "name": name},
        "minReplicaCount": lo,
        "maxReplicaCount": hi,
        "triggers": triggers,
    }
    behavior = hpa_behavior(endpoint)
    if behavior is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": KIND_SCALED_OBJECT,
        "metadata": object_meta(endpoint, name),
        "spec": spec,
    }
