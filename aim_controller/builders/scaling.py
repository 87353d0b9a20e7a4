"""Who owns the replica count, and what it is.

* An autoscaler exists iff ``scaling.maxReplicas > max(scaling.minReplicas, 1)``.
  The HPA's minReplicas cannot be 0 (without the HPAScaleToZero feature gate), so
  ``minReplicas: 0, maxReplicas: 1`` means "0 or 1 by hand" (kubectl scale), not an
  autoscaler that could never do anything.
* Without an autoscaler the Deployment runs ``clamp(spec.replicas, minReplicas,
  maxReplicas)``: spec.replicas is the scale subresource (kubectl scale), and the
  bounds win over it.
* With an autoscaler, :attr:`OperatorSettings.hpa_scale_target` decides:
  "Deployment" - the HPA scales the Deployment and the operator omits
  ``spec.replicas`` from its apply so it never fights the HPA; "AIMEndpoint" - the
  HPA scales the AIMEndpoint (which writes spec.replicas) and the Deployment gets
  ``clamp(spec.replicas, max(minReplicas, 1), maxReplicas)``.

Handover caveat for "Deployment" mode (reconciler's job, not the builders'): when an
autoscaler appears, the apply that drops ``spec.replicas`` releases the operator's
ownership, and server-side apply then *removes* the field, which the API server
defaults to 1 - a brief scale-down of GPU pods. Per the server-side apply docs,
first apply ``{spec: {replicas: <current>}}`` under a separate field manager (e.g.
``aim-controller-handover``), then apply without replicas. "AIMEndpoint" mode has no
handover at all.
"""

from __future__ import annotations

from aim_controller.api.v1alpha1 import AIMEndpointSpec

from .settings import OperatorSettings

__all__ = ["deployment_replicas", "hpa_bounds", "hpa_enabled"]


def hpa_bounds(spec: AIMEndpointSpec) -> tuple[int, int]:
    """(minReplicas, maxReplicas) of the HPA; minReplicas >= 1."""
    return max(spec.scaling.min_replicas, 1), spec.scaling.max_replicas


def hpa_enabled(spec: AIMEndpointSpec) -> bool:
    lo, hi = hpa_bounds(spec)
    return hi > lo


def deployment_replicas(spec: AIMEndpointSpec, settings: OperatorSettings) -> int | None:
    """``spec.replicas`` of the Deployment, or None when the HPA owns it."""
    s = spec.scaling
    if hpa_enabled(spec):
        if settings.hpa_scale_target == "Deployment":
            return None
        lo, hi = hpa_bounds(spec)
        return min(max(spec.replicas, lo), hi)
    return min(max(spec.replicas, s.min_replicas), s.max_replicas)
