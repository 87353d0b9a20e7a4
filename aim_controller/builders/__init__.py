"""Pure desired-object builders: an AIMEndpoint plus the recipe decision in, Kubernetes
JSON manifests (plain dicts, ready for server-side apply) out.

No I/O, no client: callers pass the parsed endpoint (:class:`AIMEndpoint` with
``metadata.name``, ``namespace`` and ``uid``), a :class:`ChosenRecipe` and the
:class:`OperatorSettings`. Typical use in a reconcile::

    children = desired_children(endpoint, chosen, settings, monitoring_available=crds_ok)
    for desired in children:
        obj = stamp_applied_hash(desired)
        if needs_apply(obj, observed.get((obj["kind"], obj["metadata"]["name"]))):
            apply(obj, field_manager=settings.field_manager)
    # then delete controlled children of child_kinds() that are not in `children`
"""

from .children import CHILD_KINDS, ChildKind, child_kinds, desired_children
from .configmap import build_config_map, config_map_name
from .dashboard import DASHBOARD_LABEL, build_dashboard_config_map, dashboard_json, dashboard_name
from .deployment import (
    build_deployment,
    cache_pvc_name,
    container_resources,
    gpu_node_affinity,
    service_account_name,
)
from .diff import applied_hash, covers, needs_apply, stamp_applied_hash
from .durations import parse_duration_seconds
from .engine import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    PORT_NAME,
    EngineConfig,
    config_checksum,
    render_engine,
)
from .hpa import build_hpa
from .inputs import ChosenRecipe, SharedCache
from .meta import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_CONFIG_CHECKSUM,
    ANNOTATION_RECIPE,
    LABEL_COMPONENT,
    LABEL_ENDPOINT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_NAME,
    LABEL_PART_OF,
    endpoint_labels,
    endpoint_name_problem,
    owner_reference,
    sanitize_label_value,
    selector_labels,
    selector_string,
)
from .monitoring import build_prometheus_rule, build_service_monitor
from .pvc import build_cache_pvc, cache_access_mode, released_cache_pvc
from .scaling import deployment_replicas, hpa_enabled, replicas_clamp
from .service import build_service
from .serviceaccount import build_service_account
from .settings import DEFAULT_IMAGES, FIELD_MANAGER, OperatorSettings

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "ANNOTATION_CONFIG_CHECKSUM",
    "ANNOTATION_RECIPE",
    "CHILD_KINDS",
    "CONTAINER_NAME",
    "CONTAINER_PORT",
    "DASHBOARD_LABEL",
    "DEFAULT_IMAGES",
    "FIELD_MANAGER",
    "LABEL_COMPONENT",
    "LABEL_ENDPOINT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_MODEL",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "PORT_NAME",
    "ChildKind",
    "ChosenRecipe",
    "EngineConfig",
    "OperatorSettings",
    "SharedCache",
    "applied_hash",
    "build_cache_pvc",
    "build_config_map",
    "build_dashboard_config_map",
    "build_deployment",
    "build_hpa",
    "build_prometheus_rule",
    "build_service",
    "build_service_account",
    "build_service_monitor",
    "cache_access_mode",
    "cache_pvc_name",
    "child_kinds",
    "config_checksum",
    "config_map_name",
    "container_resources",
    "covers",
    "dashboard_json",
    "dashboard_name",
    "deployment_replicas",
    "desired_children",
    "endpoint_labels",
    "endpoint_name_problem",
    "gpu_node_affinity",
    "hpa_enabled",
    "needs_apply",
    "owner_reference",
    "parse_duration_seconds",
    "released_cache_pvc",
    "render_engine",
    "replicas_clamp",
    "sanitize_label_value",
    "selector_labels",
    "selector_string",
    "service_account_name",
    "stamp_applied_hash",
]
