"""Optional child kinds that appear while the operator runs.

ServiceMonitor and PrometheusRule exist only where the Prometheus Operator's CRDs
are installed. The entry point discovers them at start; this watch covers the
cluster where they are installed later (a common order: operators first,
monitoring stack after), so nobody has to restart the operator for endpoints to
get their monitoring objects.

A CRD watch rather than periodic discovery: a watch costs no request at steady
state, and the informer keeps only a sliver of each CRD (their schemas run to
tens of kilobytes each). Uninstalling the CRDs is not followed: applies of those
kinds then fail and are reported on the endpoints' conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient

from aim_controller.builders.children import child_kinds
from aim_controller.machinery.handlers import KubeObject, ResourceEventHandlerFuncs
from aim_controller.machinery.resource import CUSTOM_RESOURCE_DEFINITIONS, Resource, discover

from .context import ControllerContext

log = structlog.get_logger(__name__)


def optional_kinds() -> dict[str, tuple[str, str]]:
    """CRD name -> (apiVersion, kind) of every child kind that needs a CRD."""
    out: dict[str, tuple[str, str]] = {}
    for ck in child_kinds():
        if ck.needs_prometheus_operator:
            group = ck.api_version.rpartition("/")[0]
            out[f"{ck.plural}.{group}"] = (ck.api_version, ck.kind)
    return out


async def served_optional_kinds(api: ApiClient) -> dict[tuple[str, str], Resource]:
    """(apiVersion, kind) -> Resource of the optional kinds served right now (API
    discovery, once at start; :func:`watch_optional_kinds` follows later installs)."""
    out: dict[tuple[str, str], Resource] = {}
    served: dict[str, set[str]] = {}
    for crd_name, (api_version, kind) in optional_kinds().items():
        group, _, version = api_version.rpartition("/")
        if api_version not in served:
            served[api_version] = await discover(api, group, version)
        plural = crd_name.partition(".")[0]
        if plural in served[api_version]:
            out[(api_version, kind)] = Resource(group, version, plural, kind)
    return out


def crd_sliver(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a CRD this watch reads (names, served versions, conditions)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion", "generation")
                     if k in meta},
        "spec": {
            "group": spec.get("group"), "scope": spec.get("scope"),
            "names": {k: (spec.get("names") or {}).get(k) for k in ("kind", "plural")},
            "versions": [{"name": v.get("name"), "served": v.get("served")}
                         for v in spec.get("versions") or ()],
        },
        "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                  for c in (obj.get("status") or {}).get("conditions") or ()]},
    }


def served_resource(crd: Mapping[str, Any], wanted: Mapping[str, tuple[str, str]]
                    ) -> Resource | None:
    """The wanted resource a CRD serves, once it is Established with that version served."""
    want = wanted.get(str((crd.get("metadata") or {}).get("name")))
    if want is None:
        return None
    api_version, kind = want
    group, _, version = api_version.rpartition("/")
    spec = crd.get("spec") or {}
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (crd.get("status") or {}).get("conditions") or ())
    served = any(v.get("name") == version and v.get("served")
                 for v in spec.get("versions") or ())
    names = spec.get("names") or {}
    if not (established and served and names.get("kind") == kind and spec.get("group") == group):
        return None
    return Resource(group, version, str(names.get("plural")), kind,
                    namespaced=spec.get("scope") != "Cluster")


def watch_optional_kinds(ctx: ControllerContext, on_served: Callable[[Resource], None]) -> None:
    """Calls ``on_served(resource)`` once for each optional kind that becomes served
    after start, having added it to ``ctx.optional_resources`` and the writer's
    REST mapper (so ``ctx.monitoring_available`` turns true with the second one)."""
    wanted = optional_kinds()
    informer = ctx.informers.informer(CUSTOM_RESOURCE_DEFINITIONS, transform=crd_sliver)

    def seen(crd: KubeObject) -> None:
        res = served_resource(crd, wanted)
        if res is None or (res.api_version, res.kind) in ctx.optional_resources:
            return
        ctx.optional_resources[(res.api_version, res.kind)] = res
        ctx.writer.mapper.add(res)
        log.info("optional kind now served", kind=res.kind, api_version=res.api_version,
                 monitoring_available=ctx.monitoring_available)
        on_served(res)

    informer.add_event_handler(ResourceEventHandlerFuncs(seen, lambda _old, new: seen(new)))


__all__ = ["crd_sliver", "optional_kinds", "served_optional_kinds", "served_resource",
           "watch_optional_kinds"]
