"""The REST resources of the kinds an endpoint may own: the one place a
:class:`~aim_controller.builders.children.ChildKind` becomes a :class:`Resource`.

ServiceMonitor and PrometheusRule are optional: served only where the Prometheus
Operator's CRDs are installed (HTTPRoute: the Gateway API's; ScaledObject: KEDA's),
possibly after the operator started (a common order: operators first, monitoring stack after); the
controller builder follows their CRDs.
"""

from __future__ import annotations

from typing import NamedTuple

from aim_controller.builders.children import child_kinds
from aim_controller.machinery.resource import Resource


class ChildResource(NamedTuple):
    """``optional``: served only where its CRD is installed (the Prometheus Operator's,
    the Gateway API's)."""

    resource: Resource
    optional: bool


def child_resources() -> list[ChildResource]:
    """Every kind the endpoint controller may own, in apply order."""
    out: list[ChildResource] = []
    for ck in child_kinds():
        group, _, version = ck.api_version.rpartition("/")
        out.append(ChildResource(Resource(group, version, ck.plural, ck.kind),
                                 ck.needs_prometheus_operator or ck.needs_gateway_api
                                 or ck.needs_keda))
    return out


__all__ = ["ChildResource", "child_resources"]
