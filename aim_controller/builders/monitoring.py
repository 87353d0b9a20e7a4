"""Prometheus Operator objects (monitoring.coreos.com/v1): ServiceMonitor and PrometheusRule.

Built only when the caller says the Prometheus Operator's CRDs are served, and
``monitoring.enabled`` and ``monitoring.prometheus.enabled`` are true. Both are named
``<name>`` and carry the endpoint labels plus :attr:`OperatorSettings.monitoring_labels`
(what a Prometheus' ruleSelector/serviceMonitorSelector may require).

Alerts (group ``aim-endpoint.<namespace>.<name>``), each with ``for``, a ``severity``
label and summary/description annotations:

* ``AIMEndpointHighLatency`` (warning): p95 of vLLM's
  ``vllm:e2e_request_latency_seconds`` above 0.5 s for 10 m.
* ``AIMEndpointLowGPUUtilization`` (info): mean ``gpu_gfx_activity`` of the pods'
  GPUs below 50 % for 30 m (over-provisioned: fewer replicas or a smaller recipe).
* ``AIMEndpointMemoryPressure`` (warning): a pod's container working set above 90 %
  of its memory limit for 5 m.
* ``AIMEndpointPodRestarts`` (warning): engine container restarts in the last 15 m.
* ``AIMEndpointRecipeSelectionFailed`` (critical): the operator's gauge
  ``aim_endpoint_condition{condition="RecipeSelected",status="false"}`` is 1 for
  5 m. The reconciler must export ``aim_endpoint_condition`` (kube-state-metrics
  style: one series per condition and status in true/false/unknown, value 1 for the
  current status, labels ``namespace``, ``aimendpoint``, ``condition``, ``status``).
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .engine import METRICS_PATH, PORT_NAME
from .meta import COMPONENT_MONITORING, endpoint_ref, object_meta, selector_labels
from .promql import endpoint_selector, pod_selector, service_selector
from .settings import OperatorSettings

__all__ = [
    "HIGH_LATENCY_SECONDS",
    "LOW_GPU_UTILIZATION_PERCENT",
    "MEMORY_PRESSURE_RATIO",
    "alert_rules",
    "build_prometheus_rule",
    "build_service_monitor",
    "prometheus_wanted",
]

HIGH_LATENCY_SECONDS = 0.5
LOW_GPU_UTILIZATION_PERCENT = 50
MEMORY_PRESSURE_RATIO = 0.9


def prometheus_wanted(endpoint: AIMEndpoint) -> bool:
    m = endpoint.spec.monitoring
    return m.enabled and m.prometheus.enabled


def _meta(endpoint: AIMEndpoint, settings: OperatorSettings) -> dict[str, Any]:
    return object_meta(
        endpoint, endpoint_ref(endpoint).name, component=COMPONENT_MONITORING,
        extra_labels=dict(settings.monitoring_labels),
    )


def build_service_monitor(
    endpoint: AIMEndpoint, settings: OperatorSettings, *, monitoring_available: bool
) -> dict[str, Any] | None:
    """Scrapes the Service's ``http`` port at the engine's metrics path."""
    if not (monitoring_available and prometheus_wanted(endpoint)):
        return None
    ref = endpoint_ref(endpoint)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(endpoint, settings),
        "spec": {
            "selector": {"matchLabels": selector_labels(ref.name)},
            "endpoints": [{
                "port": PORT_NAME,
                "path": METRICS_PATH,
                "interval": endpoint.spec.monitoring.prometheus.interval,
            }],
        },
    }


def _alert(
    name: str, expr: str, duration: str, severity: str, summary: str, description: str,
    endpoint_name: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"aimendpoint": endpoint_name, "severity": severity},
        "annotations": {"description": description, "summary": summary},
    }


def alert_rules(endpoint: AIMEndpoint) -> list[dict[str, Any]]:
    """The endpoint's alerting rules, in a fixed order."""
    ref = endpoint_ref(endpoint)
    who = f"AIMEndpoint {ref.namespace}/{ref.name}"
    svc, pods = service_selector(ref), pod_selector(ref, container=True)
    gpu_pods = pod_selector(ref)
    latency = (
        "histogram_quantile(0.95, sum by (le) (rate("
        f"vllm:e2e_request_latency_seconds_bucket{{{svc}}}[5m]))) > {HIGH_LATENCY_SECONDS}"
    )
    gpu = f"avg(gpu_gfx_activity{{{gpu_pods}}}) < {LOW_GPU_UTILIZATION_PERCENT}"
    memory = (
        f"max by (pod) (container_memory_working_set_bytes{{{pods}}})"
        f" / max by (pod) (kube_pod_container_resource_limits{{{pods},resource=\"memory\"}})"
        f" > {MEMORY_PRESSURE_RATIO}"
    )
    restarts = f"increase(kube_pod_container_status_restarts_total{{{pods}}}[15m]) > 0"
    recipe = (
        f'aim_endpoint_condition{{{endpoint_selector(ref)},condition="RecipeSelected",'
        'status="false"} == 1'
    )
    n = ref.name
    return [
        _alert("AIMEndpointHighLatency", latency, "10m", "warning",
               f"{who}: p95 request latency above {int(HIGH_LATENCY_SECONDS * 1000)} ms",
               "The 95th percentile end-to-end request latency is {{ $value | humanizeDuration }}"
               " over the last 5 minutes.", n),
        _alert("AIMEndpointLowGPUUtilization", gpu, "30m", "info",
               f"{who}: GPU utilization below {LOW_GPU_UTILIZATION_PERCENT}%",
               "The endpoint's GPUs averaged {{ $value | humanize }}% graphics activity for"
               " 30 minutes; fewer replicas or a smaller recipe may do.", n),
        _alert("AIMEndpointMemoryPressure", memory, "5m", "warning",
               f"{who}: a pod is near its memory limit",
               "Pod {{ $labels.pod }} uses {{ $value | humanizePercentage }} of its memory"
               " limit; it may be OOM-killed.", n),
        _alert("AIMEndpointPodRestarts", restarts, "5m", "warning",
               f"{who}: the inference server restarted",
               "Pod {{ $labels.pod }} restarted {{ $value | humanize }} times in the last"
               " 15 minutes.", n),
        _alert("AIMEndpointRecipeSelectionFailed", recipe, "5m", "critical",
               f"{who}: no recipe could be selected",
               "The operator found no recipe that fits the cluster for this endpoint; see"
               " `kubectl describe aimendpoint` (status.recipe lists every candidate).", n),
    ]


def build_prometheus_rule(
    endpoint: AIMEndpoint, settings: OperatorSettings, *, monitoring_available: bool
) -> dict[str, Any] | None:
    if not (monitoring_available and prometheus_wanted(endpoint)):
        return None
    ref = endpoint_ref(endpoint)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(endpoint, settings),
        "spec": {"groups": [{
            "name": f"aim-endpoint.{ref.namespace}.{ref.name}",
            "rules": alert_rules(endpoint),
        }]},
    }
