"""Kinds that exist only where their CustomResourceDefinition is installed.

A controller may own a kind that is optional (the Prometheus Operator's
ServiceMonitor, say): served in one cluster, absent in another, installed after
the controller started in a third, removed again in a fourth. It is followed
through one CRD informer per process that keeps only a sliver of each CRD (their
schemas run to tens of kilobytes each) and costs no request at steady state,
unlike periodic discovery.

Kubernetes names every CRD ``<plural>.<group>``, so a :class:`Resource` alone
says which CRD serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .informer import Informer, InformerFactory
from .resource import CUSTOM_RESOURCE_DEFINITIONS, Resource


def crd_name(resource: Resource) -> str:
    """The name of the CRD that serves ``resource`` (``servicemonitors.monitoring.coreos.com``)."""
    return f"{resource.plural}.{resource.group}"


def crd_sliver(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a CRD :func:`served_resource` reads (names, served versions, conditions)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion", "generation",
                                          "deletionTimestamp") if k in meta},
        "spec": {
            "group": spec.get("group"), "scope": spec.get("scope"),
            "names": {k: (spec.get("names") or {}).get(k) for k in ("kind", "plural")},
            "versions": [{"name": v.get("name"), "served": v.get("served")}
                         for v in spec.get("versions") or ()],
        },
        "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                  for c in (obj.get("status") or {}).get("conditions") or ()]},
    }


def served_resource(crd: Mapping[str, Any], wanted: Resource) -> Resource | None:
    """``wanted`` as ``crd`` serves it (its scope), or None: not the wanted kind's CRD,
    not Established yet, being deleted (its objects are going, none can be created), or
    the wanted version not served."""
    meta = crd.get("metadata") or {}
    if meta.get("name") != crd_name(wanted) or meta.get("deletionTimestamp"):
        return None
    spec = crd.get("spec") or {}
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (crd.get("status") or {}).get("conditions") or ())
    served = any(v.get("name") == wanted.version and v.get("served")
                 for v in spec.get("versions") or ())
    names = spec.get("names") or {}
    if not (established and served and names.get("kind") == wanted.kind
            and spec.get("group") == wanted.group):
        return None
    return Resource(wanted.group, wanted.version, str(names.get("plural")), wanted.kind,
                    namespaced=spec.get("scope") != "Cluster")


def crd_informer(informers: InformerFactory) -> Informer:
    """The process's shared CRD informer, keeping slivers (the first ask makes it lean)."""
    return informers.informer(CUSTOM_RESOURCE_DEFINITIONS, transform=crd_sliver)


__all__ = ["crd_informer", "crd_name", "crd_sliver", "served_resource"]
