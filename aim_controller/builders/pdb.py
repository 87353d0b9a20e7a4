"""The PodDisruptionBudget (policy/v1) ``<name>``, for an endpoint that may run more
than one replica: a fixed count above 1, or an autoscaler (whose maximum is then
above 1, see :mod:`.scaling`). With one replica there is nothing to keep serving
while a pod is evicted, and a budget would only block node drains; the PDB is then
not desired, so a scale down to 1 deletes it.

* ``maxUnavailable: 1``: a node drain evicts one replica at a time (a replica is a
  whole model load, often a whole GPU node); never 0, which blocks drains for ever.
  An autoscaled endpoint at 1 replica may still lose it: maxUnavailable does not
  block the last pod.
* ``unhealthyPodEvictionPolicy: AlwaysAllow``: a pod that is not Ready (still
  loading weights, crash-looping) never holds up a drain.
* The selector is :func:`~.meta.selector_labels`, as the Deployment's (a canary's pods
  split by replica ratio carry it too, and count against the same budget).

A PDB of that name that is not this endpoint's is never adopted (the reconciler's
ChildConflict). A second budget of the user's over the same pods makes the eviction
API refuse them ("more than one PodDisruptionBudget"): one per pod.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint, AIMEndpointSpec

from .meta import endpoint_ref, object_meta, selector_labels
from .scaling import deployment_replicas, hpa_enabled

__all__ = ["build_pdb", "pdb_wanted"]


def pdb_wanted(spec: AIMEndpointSpec) -> bool:
    """Whether the endpoint may run more than one replica."""
    return hpa_enabled(spec) or deployment_replicas(spec) > 1


def build_pdb(endpoint: AIMEndpoint) -> dict[str, Any] | None:
    """The PodDisruptionBudget manifest, or None when it is not wanted."""
    if not pdb_wanted(endpoint.spec):
        return None
    name = endpoint_ref(endpoint).name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(endpoint, name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
