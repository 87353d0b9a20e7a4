"""Conditions for what an endpoint asks of APIs a cluster may not serve. Pure.

* ``MonitoringReady`` while the endpoint wants Prometheus scraping
  (``monitoring.enabled`` and ``monitoring.prometheus.enabled``): False with
  ``PrometheusOperatorNotInstalled`` while the Prometheus Operator's CRDs
  (ServiceMonitor, PrometheusRule) are not served (nothing of them is created);
  False with the apply problem while one of them (or the Service they select)
  cannot be applied; True once served and applied.
* ``ScalingReady`` while an autoscaler is wanted (see
  :func:`aim_controller.builders.scaling.hpa_enabled`): False with
  ``GpuMetricsUnavailable`` while ``scaling.targetGPUUtilization`` is set and no
  custom metrics API is Available (the HPA then scales on CPU/memory only, see
  :mod:`aim_controller.builders.hpa`); True otherwise, naming the metrics it scales on.

Like ``CacheReady`` and ``GatewayRouted``, a condition is absent while its feature
is not asked for. Neither makes the endpoint not Ready (it serves without them), and
neither is a ``Degraded`` reason: ``Degraded`` says the serving itself has a problem
(pods, rollout, writes), and the other conditions about optional features
(``CacheReady``, ``GatewayRouted``) are not in it either; their Warning Event (once
per change, see :data:`.endpoint_report.WARNED_CONDITIONS`) and the condition tell.
"""

from __future__ import annotations

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.builders.hpa import describe_hpa_metrics, hpa_metrics
from aim_controller.builders.monitoring import prometheus_wanted
from aim_controller.builders.scaling import hpa_enabled

from .conditions import FALSE, TRUE, Cond
from .custom_metrics import CUSTOM_METRICS_API_SERVICES
from .endpoint_status import ApplyOutcome

__all__ = [
    "GPU_METRICS_UNAVAILABLE",
    "MONITORING_READY",
    "PROMETHEUS_OPERATOR_NOT_INSTALLED",
    "SCALING_READY",
    "monitoring_condition",
    "scaling_condition",
]

MONITORING_READY = "MonitoringReady"
PROMETHEUS_OPERATOR_NOT_INSTALLED = "PrometheusOperatorNotInstalled"
SCALING_READY = "ScalingReady"
GPU_METRICS_UNAVAILABLE = "GpuMetricsUnavailable"

# The monitoring children, and the Service they select (not applied while it conflicts).
_MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule", "Service")


def monitoring_condition(
    endpoint: AIMEndpoint, *, served: bool, chosen: bool, outcome: ApplyOutcome | None,
) -> Cond | None:
    """``MonitoringReady``, or None when Prometheus scraping is not asked for.
    ``served``: the Prometheus Operator's kinds are all served; ``chosen``: a recipe is
    selected (children are applied); ``outcome``: the apply's."""
    if not prometheus_wanted(endpoint):
        return None
    name = endpoint.metadata.name or ""
    if not served:
        return Cond(MONITORING_READY, FALSE, PROMETHEUS_OPERATOR_NOT_INSTALLED,
                    "spec.monitoring is enabled, but the Prometheus Operator's CRDs "
                    "(ServiceMonitor and PrometheusRule, monitoring.coreos.com/v1) are not "
                    f"served in this cluster: the ServiceMonitor {name} and the "
                    f"PrometheusRule {name} are not created, so Prometheus does not scrape "
                    "the endpoint and its alerts do not exist; install the Prometheus "
                    "Operator (e.g. kube-prometheus-stack) and they are created without "
                    "a restart")
    if outcome is not None:
        conflicts = [c for c in outcome.conflicts if c.split(" ", 1)[0] in _MONITORING_KINDS]
        if conflicts:
            return Cond(MONITORING_READY, FALSE, "ChildConflict",
                        "; ".join(f"{c} already exists and is not this endpoint's"
                                  for c in conflicts))
        errors = [e for e in outcome.errors if e.split(" ", 1)[0] in _MONITORING_KINDS]
        if errors:
            return Cond(MONITORING_READY, FALSE, "ApplyFailed", "; ".join(errors))
    if not chosen:
        return Cond(MONITORING_READY, TRUE, "PrometheusOperatorInstalled",
                    "the Prometheus Operator's CRDs are served: the ServiceMonitor and the "
                    "PrometheusRule are applied once a recipe is selected")
    return Cond(MONITORING_READY, TRUE, "MonitoringApplied",
                f"the ServiceMonitor {name} and the PrometheusRule {name} are applied")


def scaling_condition(endpoint: AIMEndpoint, *, custom_metrics: bool) -> Cond | None:
    """``ScalingReady``, or None when no autoscaler is wanted. ``custom_metrics``: a
    custom metrics API is served and Available."""
    spec = endpoint.spec
    if not hpa_enabled(spec):
        return None
    name = endpoint.metadata.name or ""
    on = describe_hpa_metrics(hpa_metrics(endpoint, gpu_metrics_available=custom_metrics))
    s = spec.scaling
    if s.target_gpu_utilization is not None and not custom_metrics:
        return Cond(SCALING_READY, FALSE, GPU_METRICS_UNAVAILABLE,
                    f"scaling.targetGPUUtilization is {s.target_gpu_utilization}, but no "
                    "custom metrics API is served (no APIService "
                    f"{' or '.join(CUSTOM_METRICS_API_SERVICES)} is Available): the "
                    f"HorizontalPodAutoscaler {name} scales on CPU/memory only ({on}); "
                    "install a custom metrics API that serves the Pods metric "
                    f"{s.gpu_utilization_metric} (e.g. prometheus-adapter over the AMD "
                    "device metrics exporter's metrics) and the GPU target is added "
                    "without a restart")
    return Cond(SCALING_READY, TRUE, "MetricsAvailable",
                f"the HorizontalPodAutoscaler {name} scales on {on}")
