"""Whether a custom metrics API (``custom.metrics.k8s.io``) is served: what an HPA's
Pods metric (``scaling.targetGPUUtilization``) needs.

A custom metrics API is an aggregated API: an APIService
``v1beta1.custom.metrics.k8s.io`` or ``v1beta2.custom.metrics.k8s.io`` (registered by
prometheus-adapter, say) that the kube-apiserver's availability controller marks
``Available=True`` once its backend answers. The endpoint controller watches
APIServices (cluster-scoped, a few dozen per cluster, kept as slivers) and reads only
those two names; an APIService that appears, becomes Available or goes re-enqueues
the endpoints with a GPU target, no restart and no request at steady state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aim_controller.machinery.resource import Resource

__all__ = [
    "API_SERVICES",
    "CUSTOM_METRICS_API_SERVICES",
    "api_service_sliver",
    "custom_metrics_available",
    "is_custom_metrics_api_service",
]

API_SERVICES = Resource("apiregistration.k8s.io", "v1", "apiservices", "APIService",
                        namespaced=False)
# The versions of custom.metrics.k8s.io the HPA controller can read (it prefers v1beta2).
CUSTOM_METRICS_API_SERVICES = ("v1beta1.custom.metrics.k8s.io",
                               "v1beta2.custom.metrics.k8s.io")


def is_custom_metrics_api_service(obj: Mapping[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("name") in CUSTOM_METRICS_API_SERVICES


def api_service_sliver(obj: dict[str, Any]) -> dict[str, Any]:
    """What :func:`custom_metrics_available` reads of an APIService: its name and its
    Available condition (not its CA bundle)."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion") if k in meta},
        "status": {"conditions": [
            {k: c.get(k) for k in ("type", "status", "reason")}
            for c in (obj.get("status") or {}).get("conditions") or ()
            if c.get("type") == "Available"]},
    }


def custom_metrics_available(api_services: Iterable[Mapping[str, Any]]) -> bool:
    """Whether one of the custom metrics APIServices is there with ``Available=True``."""
    return any(
        is_custom_metrics_api_service(s) and any(
            c.get("type") == "Available" and c.get("status") == "True"
            for c in (s.get("status") or {}).get("conditions") or ())
        for s in api_services)
