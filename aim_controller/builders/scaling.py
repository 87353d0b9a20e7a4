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

__all__ = ["deployment_replicas", "hpa_bounds", "hpa_enabled", "replicas_clamp"]


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


def replicas_clamp(spec: AIMEndpointSpec) -> str | None:
    """Why the Deployment does not run ``spec.replicas``, or None when it does.

    Above ``scaling.maxReplicas`` is a request (kubectl scale) that cannot be honoured
    without a spec change; below the floor is the documented floor.
    """
    runs = deployment_replicas(spec)
    if runs == spec.replicas:
        return None
    s = spec.scaling
    if spec.replicas > runs:
        bound = f"above scaling.maxReplicas {s.max_replicas}"
    elif runs > s.min_replicas:  # minReplicas 0 under an autoscaler, which cannot run 0
        bound = (f"below {runs}, the least an autoscaled endpoint runs "
                 f"(scaling.minReplicas {s.min_replicas})")
    else:
        bound = f"below scaling.minReplicas {s.min_replicas}"
    return f"spec.replicas {spec.replicas} is {bound}: the Deployment runs {runs}"
