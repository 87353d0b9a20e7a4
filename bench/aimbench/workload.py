"""The endpoints the benchmarks apply, and what the operator must make of each.

Every bench endpoint serves a small model (Qwen2.5-7B-Instruct: one GPU per
replica on MI300X) and carries a revision in ``spec.service.annotations``; the
operator copies those annotations onto the Service, which is how the harness
tells that a spec change reached a child (latency, "no update lost").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .kube import Kube, Obj, collection_path, gather_limited, object_path

API_VERSION = "aim.engine.amd.com/v1alpha1"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
REV = "bench.aim.engine.amd.com/rev"
RUN_LABEL = "bench.aim.engine.amd.com/run"
MANAGER = "aim-bench"
OPERATOR_MANAGER = "aim-controller"
MANAGED_BY = ("app.kubernetes.io/managed-by", "aim-controller")

# kind -> apiVersion of every child kind the operator may create (ServiceMonitor and
# PrometheusRule are not served on the local cluster).
CHILD_KINDS: dict[str, str] = {
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}


def names(n: int, prefix: str = "ep") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def endpoint(name: str, namespace: str, *, rev: int = 0, run: str = "bench",
             model: str = MODEL, extra_spec: dict[str, Any] | None = None) -> Obj:
    spec: dict[str, Any] = {
        "model": {"id": model},
        "recipe": {"autoSelect": True},
        "service": {"annotations": {REV: str(rev)}},
    }
    spec.update(extra_spec or {})
    return {
        "apiVersion": API_VERSION, "kind": "AIMEndpoint",
        "metadata": {"name": name, "namespace": namespace, "labels": {RUN_LABEL: run}},
        "spec": spec,
    }


def rev_patch(rev: int) -> Obj:
    """A merge patch that moves an endpoint to revision ``rev``."""
    return {"spec": {"service": {"annotations": {REV: str(rev)}}}}


def spec_rev(ep: Obj) -> str | None:
    ann = (((ep.get("spec") or {}).get("service") or {}).get("annotations")) or {}
    v = ann.get(REV)
    return None if v is None else str(v)


def expected_children(ep: Obj) -> set[tuple[str, str]]:
    """(kind, name) of every child the operator must keep for ``ep`` (the operator's
    naming rules, restated independently)."""
    name = ep["metadata"]["name"]
    spec = ep.get("spec") or {}
    out = {("Deployment", name), ("Service", name), ("ConfigMap", f"{name}-config")}
    sa = ((spec.get("security") or {}).get("serviceAccount")) or {}
    if sa.get("create"):
        out.add(("ServiceAccount", sa.get("name") or name))
    if (spec.get("cache") or {}).get("enabled"):
        out.add(("PersistentVolumeClaim", f"{name}-cache"))
    scaling = spec.get("scaling") or {}
    lo = max(int(scaling.get("minReplicas", 1)), 1)
    if int(scaling.get("maxReplicas", 1)) > lo:
        out.add(("HorizontalPodAutoscaler", name))
    mon = spec.get("monitoring") or {}
    if mon.get("enabled") and (mon.get("grafana") or {}).get("enabled"):
        out.add(("ConfigMap", f"{name}-dashboard"))
    return out


def controller_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "AIMEndpoint":
            return str(ref.get("uid"))
    return None


def controller_name(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "AIMEndpoint":
            return str(ref.get("name"))
    return None


def condition(ep: Obj, type_: str) -> dict[str, Any] | None:
    for c in (ep.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def observed_current(ep: Obj) -> bool:
    gen = (ep.get("metadata") or {}).get("generation")
    return gen is not None and (ep.get("status") or {}).get("observedGeneration") == gen


def is_ready(ep: Obj) -> bool:
    c = condition(ep, "Ready")
    return bool(observed_current(ep) and c and c.get("status") == "True")


def deployment_available(d: Obj) -> bool:
    """Rolled out (what ``kubectl rollout status`` waits for): the controller has seen
    the current spec and every desired replica is updated and available."""
    meta, spec, st = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
    want = int(spec.get("replicas", 1))
    return (int(st.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
            and int(st.get("updatedReplicas", 0)) >= want
            and int(st.get("availableReplicas", 0)) >= want)


async def create_namespace(kube: Kube, name: str) -> None:
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                     MANAGER)


async def apply_all(kube: Kube, objs: Sequence[Obj], *, concurrency: int = 50,
                    manager: str = MANAGER) -> float:
    """Server-side applies ``objs``; returns the seconds it took."""
    start = time.monotonic()
    await gather_limited((kube.apply(o, manager) for o in objs), concurrency)
    return time.monotonic() - start


async def patch_rev(kube: Kube, namespace: str, name: str, rev: int) -> Obj:
    return await kube.merge_patch(object_path(API_VERSION, "AIMEndpoint", name, namespace),
                                  rev_patch(rev), manager=MANAGER)


async def list_endpoints(kube: Kube, namespace: str) -> list[Obj]:
    items, _ = await kube.list(collection_path(API_VERSION, "AIMEndpoint", namespace))
    return items


async def list_children(kube: Kube, namespace: str) -> list[Obj]:
    """Every object of a child kind in ``namespace`` that the operator manages or that an
    AIMEndpoint controls (kind and apiVersion filled in)."""
    out: list[Obj] = []
    for kind, api_version in CHILD_KINDS.items():
        items, _ = await kube.list(collection_path(api_version, kind, namespace))
        for o in items:
            labels = (o.get("metadata") or {}).get("labels") or {}
            if labels.get(MANAGED_BY[0]) == MANAGED_BY[1] or controller_uid(o):
                o["kind"], o["apiVersion"] = kind, api_version
                out.append(o)
    return out


async def delete_endpoints_and_wait(kube: Kube, namespace: str, *, limit: float) -> float:
    """Deletes every AIMEndpoint of ``namespace`` (the garbage collector takes their
    children) and waits until no pod is left there; returns the seconds it took."""
    start = time.monotonic()
    await kube.delete(collection_path(API_VERSION, "AIMEndpoint", namespace))
    return await _wait_no_pods(kube, namespace, start, limit, "endpoints")


async def delete_children_and_wait(kube: Kube, namespace: str, *, limit: float) -> float:
    """Deletes every Deployment of ``namespace`` (the raw loop's, which nothing owns)
    and waits until no pod is left there; returns the seconds it took."""
    start = time.monotonic()
    await kube.delete(collection_path("apps/v1", "Deployment", namespace))
    return await _wait_no_pods(kube, namespace, start, limit, "Deployments")


async def _wait_no_pods(kube: Kube, namespace: str, start: float, limit: float,
                        deleted: str) -> float:
    pods = collection_path("v1", "Pod", namespace)
    while time.monotonic() - start < limit:
        items, _ = await kube.list(pods)
        if not items:
            return time.monotonic() - start
        await asyncio.sleep(2)
    raise TimeoutError(f"pods of the deleted {deleted} still in {namespace} after {limit}s")
