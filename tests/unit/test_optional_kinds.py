"""Which CRDs make an optional child kind served."""

from __future__ import annotations

from typing import Any

from aim_controller.machinery.resource import Resource
from aim_controller.reconcilers.optional_kinds import crd_sliver, optional_kinds, served_resource


def crd(name: str = "servicemonitors.monitoring.coreos.com", *, established: str = "True",
        served: bool = True, kind: str = "ServiceMonitor") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "uid": "u", "resourceVersion": "7", "managedFields": [{}]},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"kind": kind, "plural": name.split(".")[0], "listKind": "x"},
                 "versions": [{"name": "v1", "served": served, "schema": {"huge": "..."}}]},
        "status": {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                  {"type": "Established", "status": established,
                                   "message": "m"}]},
    }


def test_the_monitoring_kinds_are_the_optional_ones() -> None:
    assert optional_kinds() == {
        "servicemonitors.monitoring.coreos.com": ("monitoring.coreos.com/v1", "ServiceMonitor"),
        "prometheusrules.monitoring.coreos.com": ("monitoring.coreos.com/v1", "PrometheusRule"),
    }


def test_served_once_established_with_v1_served() -> None:
    wanted = optional_kinds()
    assert served_resource(crd(), wanted) == Resource(
        "monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")
    assert served_resource(crd(established="False"), wanted) is None
    assert served_resource(crd(served=False), wanted) is None
    assert served_resource(crd("podmonitors.monitoring.coreos.com", kind="PodMonitor"),
                           wanted) is None
    # The sliver the informer keeps answers the same.
    assert served_resource(crd_sliver(crd()), wanted) == served_resource(crd(), wanted)


def test_the_sliver_drops_schemas_and_bookkeeping() -> None:
    s = crd_sliver(crd())
    assert "schema" not in s["spec"]["versions"][0] and "managedFields" not in s["metadata"]
    assert s["metadata"]["resourceVersion"] == "7"
