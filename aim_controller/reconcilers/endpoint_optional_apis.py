"""Conditions for what an endpoint asks of APIs a cluster may not serve. Pure.

* ``MonitoringReady`` while the endpoint wants Prometheus scraping
  (``monitoring.enabled`` and ``monitoring.prometheus.enabled``): False with
  ``PrometheusOperatorNotInstalled`` while the Prometheus Operator's CRDs
  (ServiceMonitor, PrometheusRule) are not served (nothing of them is created);
  False with the apply problem while one of them (or the Service they select)
  cannot be applied; True once served and applied.
* ``ScalingReady`` while an autoscaler is wanted (see
  :func:`aim_controller.builders.scaling.hpa_enabled`). Through KEDA (a GPU target,
  KEDA's ScaledObject served and ``--gpu-metrics-prometheus-url`` set, see
  :mod:`aim_controller.builders.scaledobject`): True once KEDA reports the ScaledObject
  Ready, False ``ScaledObjectNotReady`` until then (KEDA's own reason and message),
  ``ChildConflict``/``ApplyFailed`` when it cannot be applied. Otherwise the HPA: False
  with ``GpuMetricsUnavailable`` while ``scaling.targetGPUUtilization`` is set and
  neither KEDA (with the URL) nor a custom metrics API can serve it (the HPA then scales
  on CPU/memory only, see :mod:`aim_controller.builders.hpa`), naming what is missing;
  True otherwise, naming the metrics it scales on.

Like ``CacheReady`` and ``GatewayRouted``, a condition is absent while its feature
is not asked for. Neither makes the endpoint not Ready (it serves without them), and
neither is a ``Degraded`` reason: ``Degraded`` says the serving itself has a problem
(pods, rollout, writes), and the other conditions about optional features
(``CacheReady``, ``GatewayRouted``) are not in it either; their Warning Event (once
per change, see :data:`.endpoint_report.WARNED_CONDITIONS`) and the condition tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.builders.hpa import describe_hpa_metrics, hpa_metrics
from aim_controller.builders.monitoring import prometheus_wanted
from aim_controller.builders.scaledobject import KIND_SCALED_OBJECT, uses_keda
from aim_controller.builders.scaling import hpa_enabled

from .conditions import FALSE, TRUE, Cond
from .custom_metrics import CUSTOM_METRICS_API_SERVICES
from .endpoint_status import ApplyOutcome

__all__ = [
    "GPU_METRICS_UNAVAILABLE",
    "MONITORING_READY",
    "PROMETHEUS_OPERATOR_NOT_INSTALLED",
    "SCALED_OBJECT_NOT_READY",
    "SCALING_READY",
    "monitoring_condition",
    "scaling_condition",
]

MONITORING_READY = "MonitoringReady"
PROMETHEUS_OPERATOR_NOT_INSTALLED = "PrometheusOperatorNotInstalled"
SCALING_READY = "ScalingReady"
GPU_METRICS_UNAVAILABLE = "GpuMetricsUnavailable"
SCALED_OBJECT_NOT_READY = "ScaledObjectNotReady"

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


def _apply_problem(outcome: ApplyOutcome | None, kind: str) -> Cond | None:
    if outcome is None:
        return None
    conflicts = [c for c in outcome.conflicts if c.split(" ", 1)[0] == kind]
    if conflicts:
        return Cond(SCALING_READY, FALSE, "ChildConflict",
                    "; ".join(f"{c} already exists and is not this endpoint's"
                              for c in conflicts))
    errors = [e for e in outcome.errors if e.split(" ", 1)[0] == kind]
    if errors:
        return Cond(SCALING_READY, FALSE, "ApplyFailed", "; ".join(errors))
    return None


def _keda_condition(endpoint: AIMEndpoint, scaled_object: Mapping[str, Any] | None,
                    outcome: ApplyOutcome | None) -> Cond:
    name = endpoint.metadata.name or ""
    s = endpoint.spec.scaling
    problem = _apply_problem(outcome, KIND_SCALED_OBJECT)
    if problem is not None:
        return problem
    on = describe_hpa_metrics(hpa_metrics(endpoint, gpu_metrics_available=False)
                              if s.target_cpu_utilization is not None
                              or s.target_memory_utilization is not None else [])
    what = (f"{s.gpu_utilization_metric} {s.target_gpu_utilization} (KEDA's Prometheus "
            f"trigger){', ' + on if on else ''}")
    ready = next((c for c in ((scaled_object or {}).get("status") or {}).get("conditions")
                  or () if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return Cond(SCALING_READY, TRUE, "ScaledObjectReady",
                    f"the KEDA ScaledObject {name} scales on {what}; KEDA's "
                    f"HorizontalPodAutoscaler keda-hpa-{name} acts on it")
    why = (f"KEDA says {ready.get('reason')}: {ready.get('message')}" if ready is not None
           and ready.get("status") == "False" else "KEDA has not reported it Ready yet")
    return Cond(SCALING_READY, FALSE, SCALED_OBJECT_NOT_READY,
                f"the KEDA ScaledObject {name} (on {what}) is not Ready: {why}")


def scaling_condition(
    endpoint: AIMEndpoint, *, custom_metrics: bool, keda_served: bool = False,
    prometheus_url: str | None = None, scaled_object: Mapping[str, Any] | None = None,
    outcome: ApplyOutcome | None = None,
) -> Cond | None:
    """``ScalingReady``, or None when no autoscaler is wanted. ``custom_metrics``: a
    custom metrics API is served and Available; ``keda_served``: KEDA's ScaledObject
    is served; ``prometheus_url``: ``--gpu-metrics-prometheus-url``; ``scaled_object``:
    the endpoint's ScaledObject as observed; ``outcome``: the apply's."""
    spec = endpoint.spec
    if not hpa_enabled(spec):
        return None
    if uses_keda(endpoint, keda_served=keda_served, prometheus_url=prometheus_url):
        return _keda_condition(endpoint, scaled_object, outcome)
    name = endpoint.metadata.name or ""
    on = describe_hpa_metrics(hpa_metrics(endpoint, gpu_metrics_available=custom_metrics))
    s = spec.scaling
    if s.target_gpu_utilization is not None and not custom_metrics:
        # (what is missing, what to do about it)
        missing = [(m, fix) for m, fix, gone in (
            ("KEDA is not installed (its ScaledObject, keda.sh/v1alpha1, is not served)",
             "install KEDA", not keda_served),
            ("--gpu-metrics-prometheus-url is not set",
             "set --gpu-metrics-prometheus-url to a Prometheus that scrapes the AMD device "
             "metrics exporter", not prometheus_url)) if gone]
        return Cond(SCALING_READY, FALSE, GPU_METRICS_UNAVAILABLE,
                    f"scaling.targetGPUUtilization is {s.target_gpu_utilization}, but "
                    f"{' and '.join(m for m, _ in missing)}, and no custom metrics API is "
                    f"served (no APIService {' or '.join(CUSTOM_METRICS_API_SERVICES)} is "
                    f"Available): the HorizontalPodAutoscaler {name} scales on CPU/memory "
                    f"only ({on}); {' and '.join(f for _, f in missing)} (or serve the "
                    f"Pods metric {s.gpu_utilization_metric} through a custom metrics API, "
                    "e.g. prometheus-adapter) and the GPU target is applied without a "
                    "restart")
    return Cond(SCALING_READY, TRUE, "MetricsAvailable",
                f"the HorizontalPodAutoscaler {name} scales on {on}")
