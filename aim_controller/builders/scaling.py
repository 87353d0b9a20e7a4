"""Who owns the replica count, and what it is.

* An autoscaler exists iff ``scaling.maxReplicas > max(scaling.minReplicas, 1)``.
  The HPA's minReplicas cannot be 0 (without the HPAScaleToZero feature gate), so
  ``minReplicas: 0, maxReplicas: 1`` means "0 or 1 by hand" (kubectl scale), not an
  autoscaler that could never do anything.
* Without an autoscaler the Deployment runs ``clamp(spec.replicas, minReplicas,
  maxReplicas)``: spec.replicas is the scale subresource (kubectl scale), and the
  bounds win over it.
* With an autoscaler, the HPA scales the AIMEndpoint's scale subresource (it writes
  spec.replicas) and the Deployment gets ``clamp(spec.replicas, max(minReplicas, 1),
  maxReplicas)``. So `kubectl scale`, the HPA and the operator act on one number, and
  the operator always owns the Deployment's replicas: no handover of the field, and
  no fight with the HPA over it.
"""

from __future__ import annotations

from aim_controller.api.v1alpha1 import AIMEndpointSpec

__all__ = ["deployment_replicas", "hpa_bounds", "hpa_enabled"]


def hpa_bounds(spec: AIMEndpointSpec) -> tuple[int, int]:
    """(minReplicas, maxReplicas) of the HPA; minReplicas >= 1."""
    return max(spec.scaling.min_replicas, 1), spec.scaling.max_replicas


def hpa_enabled(spec: AIMEndpointSpec) -> bool:
    lo, hi = hpa_bounds(spec)
    return hi > lo


def deployment_replicas(spec: AIMEndpointSpec) -> int:
    """``spec.replicas`` of the Deployment."""
    s = spec.scaling
    if hpa_enabled(spec):
        lo, hi = hpa_bounds(spec)
        return min(max(spec.replicas, lo), hi)
    return min(max(spec.replicas, s.min_replicas), s.max_replicas)
