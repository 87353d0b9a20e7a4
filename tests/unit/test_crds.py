"""Which CRD serves an optional kind, and when; the lean copy the CRD informer keeps."""

from __future__ import annotations

from typing import Any

from aim_controller.machinery.crds import crd_name, crd_sliver, served_resource
from aim_controller.machinery.resource import Resource

SERVICE_MONITORS = Resource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")


def crd(name: str = "servicemonitors.monitoring.coreos.com", *, established: str = "True",
        served: bool = True, kind: str = "ServiceMonitor", scope: str = "Namespaced",
        version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "uid": "u", "resourceVersion": "7", "managedFields": [{}]},
        "spec": {"group": "monitoring.coreos.com", "scope": scope,
                 "names": {"kind": kind, "plural": name.split(".")[0], "listKind": "x"},
                 "versions": [{"name": version, "served": served, "schema": {"huge": "..."}}]},
        "status": {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                  {"type": "Established", "status": established,
                                   "message": "m"}]},
    }


def test_a_crd_is_named_plural_dot_group() -> None:
    assert crd_name(SERVICE_MONITORS) == "servicemonitors.monitoring.coreos.com"


def test_served_once_established_with_the_wanted_version_served() -> None:
    assert served_resource(crd(), SERVICE_MONITORS) == SERVICE_MONITORS
    assert served_resource(crd(established="False"), SERVICE_MONITORS) is None
    assert served_resource(crd(served=False), SERVICE_MONITORS) is None
    assert served_resource(crd(version="v1beta1"), SERVICE_MONITORS) is None
    assert served_resource(crd("podmonitors.monitoring.coreos.com", kind="PodMonitor"),
                           SERVICE_MONITORS) is None
    # The scope is the CRD's.
    cluster = served_resource(crd(scope="Cluster"), SERVICE_MONITORS)
    assert cluster is not None and not cluster.namespaced
    # The sliver the informer keeps answers the same.
    assert served_resource(crd_sliver(crd()), SERVICE_MONITORS) == SERVICE_MONITORS


def test_the_sliver_drops_schemas_and_bookkeeping() -> None:
    s = crd_sliver(crd())
    assert "schema" not in s["spec"]["versions"][0] and "managedFields" not in s["metadata"]
    assert s["metadata"]["resourceVersion"] == "7"
