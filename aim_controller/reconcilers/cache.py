"""The AIMCache controller: a PVC, one download Job per model, a cleanup CronJob, and
the per-model status.

``reconcile(key)`` runs in four steps, as the endpoint controller's:

1. observe (:mod:`.cache_observe`): the AIMCache, its PVC, Jobs and their pods'
   termination reports, the CronJob and its newest cleanup run, and the model ids of
   the namespace's AIMEndpoints, read once from the caches -> ``CacheObserved``;
2. decide (:mod:`.cache_decide`, pure) -> ``CachePlan``;
3. apply (here): server-side applies with ownerReferences; a child the caches do not
   show as ours is read first, and an object of its name that is somebody else's is
   never written (``ChildConflict``, Warning Event, looked at again a minute later);
4. report (:mod:`.cache_report` for the pure part): the status, written only when it
   changed, and the Events of the change.

Watches: AIMCaches; the PVCs, download Jobs and CronJobs they control (and the
cleanup Jobs of those CronJobs, by label); the pods of cache Jobs (their termination
reports; the one shared, slim Pod informer); AIMEndpoints, whose model ids are the
in-use set the cleanup must spare (only additions, deletions and model changes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from aim_controller.builders import LABEL_MANAGED_BY
from aim_controller.builders.cache_objects import (
    JOB_CLEANUP,
    LABEL_CACHE,
    LABEL_CACHE_JOB,
    CacheJobSettings,
)
from aim_controller.builders.meta import MANAGED_BY
from aim_controller.machinery.builder import ControllerBuilder, spec_first
from aim_controller.machinery.controller import Controller, Result
from aim_controller.machinery.handlers import (
    AtPriority,
    KubeObject,
    ResourceEventHandlerFuncs,
    enqueue_mapped,
)
from aim_controller.machinery.kubeclient import ApiException
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.resource import JOBS, PERSISTENT_VOLUME_CLAIMS, PODS, Resource
from aim_controller.machinery.store import NAMESPACE_INDEX
from aim_controller.machinery.workqueue import PRIORITY_DEFAULT, PRIORITY_LOW
from aim_controller.recipes import builtin_index

from .cache_decide import CachePlan, decide
from .cache_observe import (
    CACHE_FINALIZER,
    CacheCaches,
    CacheObserved,
    cache_keys_of_pod,
    cache_of_endpoint,
)
from .cache_report import (
    CacheApplied,
    cache_events,
    cache_status,
    deletion_status,
    invalid_status,
    status_equal,
)
from .conditions import now_rfc3339
from .context import AIM_CACHES, AIM_ENDPOINTS, ControllerContext
from .pod_slim import slim_pod

log = structlog.get_logger(__name__)

CONTROLLER_NAME = "aimcache"
CRON_JOBS = Resource("batch", "v1", "cronjobs", "CronJob")
CONFLICT_RECHECK = 60.0
INVALID_INPUT_RETRY = 300.0
DEFAULT_MAX_CONCURRENT_DOWNLOADS = 2
_OURS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _api_error(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


def _model_of(ep: Mapping[str, Any]) -> Any:
    return ((ep.get("spec") or {}).get("model") or {}).get("id")


class CacheReconciler:
    def __init__(self, ctx: ControllerContext, builder: ControllerBuilder,
                 settings: CacheJobSettings, max_concurrent: int) -> None:
        self.ctx = ctx
        self.settings = settings
        self.max_concurrent = max_concurrent
        self.queue = builder.queue
        low = self._low = AtPriority(self.queue, PRIORITY_LOW)
        self.cache_inf = builder.for_(AIM_CACHES, enqueue=spec_first(PRIORITY_DEFAULT,
                                                                    PRIORITY_LOW))
        pvcs = builder.owns(PERSISTENT_VOLUME_CLAIMS, label_selector=_OURS)
        jobs = builder.owns(JOBS, label_selector=_OURS)
        cronjobs = builder.owns(CRON_JOBS, label_selector=_OURS)
        # Cleanup Jobs belong to the CronJob: mapped to their cache by label.
        jobs.add_event_handler(enqueue_mapped(low, self._caches_of_cleanup_job))
        pods = builder.watches(PODS, self._caches_of_labelled, priority=PRIORITY_LOW,
                               all_namespaces=True, transform=slim_pod)
        endpoints = builder.reads(AIM_ENDPOINTS)
        endpoints.add_event_handler(ResourceEventHandlerFuncs(
            self._endpoint_changed, self._endpoint_updated, self._endpoint_changed))
        self.caches = CacheCaches(
            caches=MutationCache(self.cache_inf), pvcs=MutationCache(pvcs),
            jobs=MutationCache(jobs), cronjobs=MutationCache(cronjobs), pods=pods,
            endpoints=endpoints, catalog=builtin_index())

    # --- event mapping ------------------------------------------------------

    def _caches_in(self, namespace: object) -> list[KubeObject]:
        return self.cache_inf.store.by_index(NAMESPACE_INDEX, str(namespace))

    def _caches_of_labelled(self, obj: Mapping[str, Any]) -> list[str]:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if LABEL_CACHE not in labels:
            return []
        return cache_keys_of_pod(obj, self._caches_in((obj.get("metadata") or {}).get(
            "namespace")))

    def _caches_of_cleanup_job(self, job: Mapping[str, Any]) -> list[str]:
        # Download Jobs are mapped by their ownerReference.
        labels = (job.get("metadata") or {}).get("labels") or {}
        return self._caches_of_labelled(job) if labels.get(LABEL_CACHE_JOB) == JOB_CLEANUP else []

    def _endpoint_updated(self, old: KubeObject, new: KubeObject) -> None:
        # The in-use set follows model ids; a deletion hold follows which cache it mounts.
        if _model_of(old) != _model_of(new):
            self._endpoint_changed(new)
        if cache_of_endpoint(old) != cache_of_endpoint(new):
            for ep in (old, new):
                self._enqueue_cache_of(ep)

    def _enqueue_cache_of(self, ep: KubeObject) -> None:
        cache = cache_of_endpoint(ep)
        if cache is not None:
            self._low.add(f"{(ep.get('metadata') or {}).get('namespace')}/{cache}")

    def _endpoint_changed(self, ep: KubeObject) -> None:
        self._enqueue_cache_of(ep)
        model = str(_model_of(ep) or "").lower()
        for c in self._caches_in((ep.get("metadata") or {}).get("namespace")):
            ids = {str(m.get("id", "")).lower()
                   for part in ("spec", "status") for m in (c.get(part) or {}).get("models") or ()}
            if model in ids:
                meta = c.get("metadata") or {}
                self._low.add(f"{meta.get('namespace')}/{meta.get('name')}")

    # --- reconcile ----------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        o = self.caches.observe(key, datetime.now(UTC))
        if o is None:
            return None
        if o.deleting:
            await self._release(o)
            return None
        if CACHE_FINALIZER not in ((o.obj.get("metadata") or {}).get("finalizers") or ()):
            await self._set_finalizer(o, hold=True)
        plan = decide(o, self.settings, self.max_concurrent)
        if plan.invalid is not None:
            await self._write_status(o, plan, invalid_status(o, now_rfc3339()))
            return Result()
        applied, retry = await self._apply(o, plan)
        await self._write_status(o, plan, cache_status(o, plan, applied, now_rfc3339()))
        if plan.conflicts or applied.conflicts:
            retry = min(retry or CONFLICT_RECHECK, CONFLICT_RECHECK)
        return Result(requeue_after=retry) if retry else None

    async def _set_finalizer(self, o: CacheObserved, *, hold: bool) -> None:
        """Adds or removes our finalizer: a server-side apply of it alone (the other
        finalizers, and every other field, are not ours)."""
        meta: dict[str, Any] = {"name": o.name, "namespace": o.namespace}
        if hold:
            meta["finalizers"] = [CACHE_FINALIZER]
        try:
            result = await self.ctx.writer.apply(
                {"apiVersion": o.obj["apiVersion"], "kind": o.obj["kind"], "metadata": meta})
        except ApiException as err:
            if err.status == 404:
                return
            raise
        self.caches.caches.mutated(result)

    async def _release(self, o: CacheObserved) -> None:
        """A deleted AIMCache: held while AIMEndpoints mount its volume (they move off a
        cache being deleted), said in its Ready condition and a Warning Event; then let
        go, and garbage collection removes its PVC, Jobs and CronJob."""
        if not o.users:
            log.info("releasing deleted cache")
            await self._set_finalizer(o, hold=False)
            return
        status = deletion_status(o, now_rfc3339())
        if not await self._apply_status(o, status):
            return
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        self.ctx.recorder.emit(dict(o.obj), "Warning", ready["reason"], ready["message"])

    async def _name_is_free(self, o: CacheObserved, obj: dict[str, Any]) -> bool:
        existing = await self.ctx.writer.get(obj)
        if existing is None:
            return True
        return any(r.get("controller") and r.get("uid") == o.uid
                   for r in (existing.get("metadata") or {}).get("ownerReferences") or ())

    async def _apply(self, o: CacheObserved, plan: CachePlan
                     ) -> tuple[CacheApplied, float | None]:
        conflicts: list[str] = []
        errors: list[str] = []
        started: set[str] = set()
        retry: float | None = None
        writes: list[tuple[dict[str, Any], MutationCache]] = []
        if plan.pvc is not None and plan.apply_pvc:
            writes.append((plan.pvc, self.caches.pvcs))
        writes += [(job, self.caches.jobs) for job in plan.jobs_to_start]
        if plan.cronjob is not None and plan.apply_cronjob:
            writes.append((plan.cronjob, self.caches.cronjobs))
        pvc_blocked = False
        for obj, cache in writes:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "Job" and pvc_blocked:
                continue
            if (kind, name) in plan.creates and not await self._name_is_free(o, obj):
                conflicts.append(f"{kind} {name}")
                pvc_blocked = pvc_blocked or kind == "PersistentVolumeClaim"
                continue
            try:
                result = await self.ctx.writer.apply(obj)
            except ApiException as err:
                if err.status in (400, 403, 404, 409, 422):
                    errors.append(f"{kind} {name}: {_api_error(err)}")
                    retry = INVALID_INPUT_RETRY
                    continue
                raise
            cache.mutated(result)
            if kind == "Job":
                started.add(name)
                log.info("download job created", job=name,
                         model=obj["metadata"].get("annotations", {}).get(
                             "aim.engine.amd.com/cache-model"))
        for child in plan.delete:
            log.info("deleting cache child", kind=child.get("kind"),
                     child=(child.get("metadata") or {}).get("name"))
            await self.ctx.writer.delete(dict(child))
        if errors:
            self.ctx.recorder.emit(dict(o.obj), "Warning", "ApplyFailed", errors[0])
        return CacheApplied(frozenset(started), tuple(conflicts), tuple(errors)), retry

    async def _apply_status(self, o: CacheObserved, status: dict[str, Any]) -> bool:
        """Writes ``status`` if it differs from the observed one; whether it wrote (an
        AIMCache gone meanwhile is not an error)."""
        if status_equal(status, o.status):
            return False
        body = {"apiVersion": o.obj["apiVersion"], "kind": o.obj["kind"],
                "metadata": o.obj["metadata"], "status": status}
        try:
            self.caches.caches.mutated(await self.ctx.writer.apply_status(body))
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    async def _write_status(self, o: CacheObserved, plan: CachePlan,
                            status: dict[str, Any]) -> None:
        if not await self._apply_status(o, status):
            return
        log.info("cache status", phase=status.get("phase"), models=status.get("modelsReady"))
        for event in cache_events(o, plan, status):
            self.ctx.recorder.emit(dict(o.obj), event.type, event.reason, event.message)


def register(ctx: ControllerContext, settings: CacheJobSettings | None = None,
             max_concurrent: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS) -> Controller:
    builder = ctx.builder(CONTROLLER_NAME)
    reconciler = CacheReconciler(ctx, builder, settings or CacheJobSettings(), max_concurrent)
    return builder.complete(reconciler.reconcile)


__all__ = ["CONTROLLER_NAME", "CRON_JOBS", "CacheReconciler", "register"]
