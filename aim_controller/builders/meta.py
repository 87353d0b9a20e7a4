"""Names, labels, annotations and ownerReferences shared by every child of an AIMEndpoint.

Invariants:

* Children are named from the endpoint: ``<name>`` (Deployment, Service, HPA,
  PodDisruptionBudget, ServiceMonitor, PrometheusRule, created ServiceAccount unless
  ``security.serviceAccount.name``), ``<name>-config``, ``<name>-cache``,
  ``<name>-dashboard``.
* The selector (Deployment ``spec.selector``, Service selector, ServiceMonitor
  selector) uses only :func:`selector_labels`: ``app.kubernetes.io/name`` and
  ``app.kubernetes.io/instance``. Both are fixed for the endpoint's lifetime, so
  the immutable Deployment selector never has to change; model and recipe labels
  are informational only.
* Every label value is a valid label value (<= 63 chars, alphanumeric ends).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aim_controller.api.v1alpha1 import API_VERSION, KIND_AIM_ENDPOINT, AIMEndpoint

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "ANNOTATION_CONFIG_CHECKSUM",
    "ANNOTATION_RECIPE",
    "APP_NAME",
    "COMPONENT_INFERENCE",
    "COMPONENT_MONITORING",
    "LABEL_COMPONENT",
    "LABEL_ENDPOINT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_MODEL",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "MANAGED_BY",
    "PART_OF",
    "EndpointRef",
    "endpoint_labels",
    "endpoint_name_problem",
    "endpoint_ref",
    "is_valid_label_value",
    "object_meta",
    "owner_reference",
    "sanitize_label_value",
    "selector_labels",
    "selector_string",
]

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ENDPOINT = "aim.engine.amd.com/endpoint"
LABEL_MODEL = "aim.engine.amd.com/model"

APP_NAME = "aim-endpoint"  # what the spec's ServiceMonitor example selects on
COMPONENT_INFERENCE = "inference"
COMPONENT_MONITORING = "monitoring"
PART_OF = "aim-engine"
MANAGED_BY = "aim-controller"

ANNOTATION_CONFIG_CHECKSUM = "aim.engine.amd.com/config-checksum"
ANNOTATION_APPLIED_HASH = "aim.engine.amd.com/applied-hash"
ANNOTATION_RECIPE = "aim.engine.amd.com/recipe"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class EndpointRef:
    """Name, namespace and uid of an endpoint, checked once.

    Invariant: all three are non-empty (a builder is only ever called for an
    endpoint read from the API server).
    """

    __slots__ = ("name", "namespace", "uid")

    def __init__(self, name: str, namespace: str, uid: str) -> None:
        if not (name and namespace and uid):
            raise ValueError("endpoint metadata needs name, namespace and uid")
        self.name, self.namespace, self.uid = name, namespace, uid


def endpoint_ref(endpoint: AIMEndpoint) -> EndpointRef:
    m = endpoint.metadata
    return EndpointRef(m.name or "", m.namespace or "", m.uid or "")


def endpoint_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an endpoint's children, or None.

    The Service is named after the endpoint, so the name must be a DNS-1035 label
    (lowercase, starts with a letter, <= 63 characters); the CRD accepts any DNS-1123
    subdomain. The reconciler should report this as a condition rather than apply.
    """
    if len(name) > 63:
        return f"name {name!r} is longer than 63 characters (it names a Service)"
    if not _DNS1035.match(name):
        return (
            f"name {name!r} is not a DNS-1035 label (lowercase letters, digits and '-',"
            " starting with a letter); it names a Service"
        )
    return None


def is_valid_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def sanitize_label_value(value: str) -> str:
    """A valid label value derived from ``value`` (e.g. a model id).

    Characters outside ``[-A-Za-z0-9_.]`` become ``_`` ("Qwen/Qwen3-32B" ->
    "Qwen_Qwen3-32B"). Values longer than 63 are cut and suffixed with 8 hex digits
    of the value's sha256 so distinct long ids stay distinct. Ends are trimmed to
    alphanumerics. Deterministic; idempotent on valid values.
    """
    if is_valid_label_value(value):
        return value
    s = re.sub(r"[^-A-Za-z0-9_.]", "_", value)
    if len(s) > 63:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        s = f"{s[:54].rstrip('-_.')}-{digest}"
    s = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", s)
    return s


def selector_labels(name: str) -> dict[str, str]:
    """The stable labels that select the endpoint's pods (never model or recipe)."""
    return {LABEL_INSTANCE: name, LABEL_NAME: APP_NAME}


def selector_string(name: str) -> str:
    """:func:`selector_labels` as a label selector string, for ``status.selector``
    (the scale subresource's labelSelectorPath)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def endpoint_labels(
    endpoint: AIMEndpoint, *, component: str = COMPONENT_INFERENCE
) -> dict[str, str]:
    """The recommended labels every child (and the pod template) carries, sorted."""
    name = endpoint_ref(endpoint).name
    labels = selector_labels(name) | {
        LABEL_COMPONENT: component,
        LABEL_ENDPOINT: name,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: sanitize_label_value(endpoint.spec.model.id),
        LABEL_PART_OF: PART_OF,
    }
    return dict(sorted(labels.items()))


def owner_reference(endpoint: AIMEndpoint) -> dict[str, Any]:
    """The controller ownerReference: GC deletes the child with the endpoint, and with
    foreground deletion the endpoint waits for it (blockOwnerDeletion)."""
    ref = endpoint_ref(endpoint)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_AIM_ENDPOINT,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    endpoint: AIMEndpoint,
    name: str,
    *,
    component: str = COMPONENT_INFERENCE,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owned: bool = True,
) -> dict[str, Any]:
    """``metadata`` of a child: name, namespace, labels, annotations (only when
    non-empty) and, unless ``owned`` is False, the controller ownerReference."""
    # Our labels win: the selector labels must never be overridden.
    labels = (extra_labels or {}) | endpoint_labels(endpoint, component=component)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": endpoint_ref(endpoint).namespace,
        "labels": dict(sorted(labels.items())),
    }
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    if owned:
        meta["ownerReferences"] = [owner_reference(endpoint)]
    return meta
