"""All desired children of one AIMEndpoint, and every kind the operator may own.

:func:`desired_children` is what a reconcile applies; anything of a
:func:`child_kinds` kind that the endpoint controls (controller ownerReference to
it) but that is not in the list is to be deleted. The retained cache PVC has no
ownerReference and is therefore never pruned (see :mod:`.pvc`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from aim_controller.api.v1alpha1 import AIMEndpoint

from .configmap import build_config_map
from .dashboard import build_dashboard_config_map
from .deployment import build_deployment
from .hpa import build_hpa
from .inputs import ChosenRecipe, SharedCache
from .monitoring import build_prometheus_rule, build_service_monitor
from .pdb import build_pdb
from .pvc import build_cache_pvc
from .scaledobject import build_scaled_object, uses_keda
from .service import build_service
from .serviceaccount import build_service_account
from .settings import OperatorSettings

__all__ = ["CHILD_KINDS", "ChildKind", "child_kinds", "desired_children"]


class ChildKind(NamedTuple):
    """A kind the operator may create for an endpoint.

    ``needs_prometheus_operator``: served only when the Prometheus Operator's CRDs
    are installed; the reconciler must not list or delete it otherwise.
    """

    api_version: str
    kind: str
    plural: str
    needs_prometheus_operator: bool = False
    # Served only where the Gateway API's CRDs are installed (see .httproute).
    needs_gateway_api: bool = False
    # Served only where KEDA's CRDs are installed (see .scaledobject).
    needs_keda: bool = False


# Apply order: what the Deployment references first, monitoring last.
CHILD_KINDS: tuple[ChildKind, ...] = (
    ChildKind("v1", "ServiceAccount", "serviceaccounts"),
    ChildKind("v1", "ConfigMap", "configmaps"),
    ChildKind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ChildKind("apps/v1", "Deployment", "deployments"),
    ChildKind("v1", "Service", "services"),
    ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ChildKind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects", needs_keda=True),
    ChildKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ChildKind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", True),
    ChildKind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules", True),
    ChildKind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes",
              needs_gateway_api=True),
)


def child_kinds() -> tuple[ChildKind, ...]:
    """Every (apiVersion, kind) the operator may own, in apply order."""
    return CHILD_KINDS


def desired_children(
    endpoint: AIMEndpoint,
    chosen: ChosenRecipe,
    settings: OperatorSettings,
    *,
    monitoring_available: bool,
    existing_cache_access_modes: Sequence[str] | None = None,
    shared_cache: SharedCache | None = None,
    gpu_metrics_available: bool = True,
    keda_available: bool = False,
) -> list[dict[str, Any]]:
    """Every child the endpoint should have, in :data:`CHILD_KINDS` order (the two
    ConfigMaps: config, then dashboard).

    ``monitoring_available``: the Prometheus Operator's CRDs are served (the
    ServiceMonitor and PrometheusRule are skipped otherwise; the dashboard ConfigMap
    is not). ``existing_cache_access_modes``: the access modes of an existing cache
    PVC, kept because they are immutable. ``shared_cache``: an AIMCache holds the
    model Ready; the pods load it from there, and the own cache PVC (when
    ``cache.enabled``) is not used for weights: it is not created, but one that exists
    (``existing_cache_access_modes`` given) stays desired, so it is never pruned.
    ``gpu_metrics_available``: a custom metrics API is served (the HPA leaves out the
    GPU metric otherwise, see :mod:`.hpa`). ``keda_available``: KEDA's ScaledObject
    is served; with ``settings.gpu_metrics_prometheus_url`` and a GPU target the
    autoscaler is a ScaledObject instead of the HPA (see :mod:`.scaledobject`).

    Deterministic: equal inputs give equal lists, with equal key order.
    """
    prometheus_url = settings.gpu_metrics_prometheus_url
    keda = prometheus_url is not None and uses_keda(
        endpoint, keda_served=keda_available, prometheus_url=prometheus_url)
    built = [
        build_service_account(endpoint),
        build_config_map(endpoint, chosen, settings, shared_cache),
        build_dashboard_config_map(endpoint),
        build_cache_pvc(endpoint, existing_access_modes=existing_cache_access_modes)
        if shared_cache is None or existing_cache_access_modes else None,
        build_deployment(endpoint, chosen, settings, shared_cache),
        build_service(endpoint),
        None if keda else build_hpa(endpoint, gpu_metrics_available=gpu_metrics_available),
        build_scaled_object(endpoint, prometheus_url=prometheus_url)
        if keda and prometheus_url is not None else None,
        build_pdb(endpoint),
        build_service_monitor(endpoint, settings, monitoring_available=monitoring_available),
        build_prometheus_rule(endpoint, settings, monitoring_available=monitoring_available),
    ]
    return [obj for obj in built if obj is not None]
