"""The kinds an endpoint may own, as REST resources; the monitoring ones are optional."""

from __future__ import annotations

from aim_controller.builders.children import child_kinds
from aim_controller.machinery.resource import Resource
from aim_controller.reconcilers.child_resources import child_resources


def test_every_child_kind_once_in_apply_order() -> None:
    assert [(c.resource.api_version, c.resource.kind) for c in child_resources()] == [
        (ck.api_version, ck.kind) for ck in child_kinds()]


def test_the_monitoring_gateway_and_keda_kinds_are_the_optional_ones() -> None:
    assert [c.resource for c in child_resources() if c.optional] == [
        Resource("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
        Resource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
        Resource("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"),
        Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    ]
    deployments = next(c for c in child_resources() if c.resource.kind == "Deployment")
    assert deployments == (Resource("apps", "v1", "deployments", "Deployment"), False)
