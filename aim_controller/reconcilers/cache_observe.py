"""Step 1 of an AIMCache reconcile: observe. Everything the decision needs, read once
from the informer caches (read-your-writes) into one immutable :class:`CacheObserved`.

The Job and pod parts are turned into plain :class:`JobView` / :class:`CleanupRun`
values by pure functions (:func:`job_view`, :func:`cleanup_run`), so the decide step
and its tests never touch Kubernetes objects of those kinds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aim_controller.api.v1alpha1 import validation_message
from aim_controller.api.v1alpha1.cache import AIMCache
from aim_controller.builders import LABEL_MANAGED_BY
from aim_controller.builders.cache_objects import (
    ANNOTATION_CACHE_MODEL,
    JOB_CLEANUP,
    JOB_DOWNLOAD,
    LABEL_CACHE,
    LABEL_CACHE_JOB,
    cache_pvc_claim_name,
    cleanup_cronjob_name,
)
from aim_controller.builders.meta import MANAGED_BY, sanitize_label_value
from aim_controller.machinery.handlers import KubeObject, split_key
from aim_controller.machinery.informer import InformerLike
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.store import CONTROLLER_OWNER_UID_INDEX, NAMESPACE_INDEX
from aim_controller.recipes import RecipeIndex

__all__ = [
    "CACHE_FINALIZER",
    "CacheCaches",
    "CacheObserved",
    "CleanupRun",
    "JobView",
    "cache_keys_of_pod",
    "cache_of_endpoint",
    "cache_users",
    "cleanup_run",
    "job_view",
    "termination_report",
]


@dataclass(frozen=True)
class JobView:
    """A download Job as the decision needs it.

    ``finished`` is "Complete", "Failed" or None (still running or queued for a pod);
    ``reason``/``message`` are those of its Failed condition; ``report`` is the JSON its
    newest terminated pod wrote to the termination log (None when there is none or it
    does not parse), ``pod_message`` that message raw.
    """

    name: str
    uid: str
    model: str
    finished: str | None = None
    reason: str = ""
    message: str = ""
    report: Mapping[str, Any] | None = None
    pod_message: str = ""
    completion_time: str | None = None
    obj: KubeObject | None = None

    @property
    def active(self) -> bool:
        return self.finished is None


@dataclass(frozen=True)
class CleanupRun:
    """The newest finished cleanup Job: when it finished, and what it reported."""

    job: str
    time: str
    succeeded: bool
    report: Mapping[str, Any] | None
    message: str


def termination_report(pods: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, str]:
    """(parsed JSON, raw message) of the newest terminated container message among
    ``pods`` (newest: highest resourceVersion, the last written)."""
    best: tuple[int, str] | None = None
    for pod in pods:
        try:
            rv = int((pod.get("metadata") or {}).get("resourceVersion") or 0)
        except ValueError:
            rv = 0
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            msg = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if msg and (best is None or rv > best[0]):
                best = (rv, str(msg))
    if best is None:
        return None, ""
    raw = best[1].strip()
    try:
        parsed = json.loads(raw.splitlines()[-1] if raw else "")
    except (ValueError, IndexError):
        return None, raw
    return (parsed if isinstance(parsed, dict) else None), raw


def _finished(job: Mapping[str, Any]) -> tuple[str | None, str, str]:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return str(c["type"]), str(c.get("reason") or ""), str(c.get("message") or "")
    return None, "", ""


def job_view(job: KubeObject, pods: Iterable[Mapping[str, Any]]) -> JobView:
    meta = job.get("metadata") or {}
    finished, reason, message = _finished(job)
    report, raw = termination_report(pods)
    return JobView(
        name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
        model=str((meta.get("annotations") or {}).get(ANNOTATION_CACHE_MODEL) or ""),
        finished=finished, reason=reason, message=message, report=report, pod_message=raw,
        completion_time=(job.get("status") or {}).get("completionTime"), obj=job)


def cleanup_run(jobs: Iterable[tuple[KubeObject, list[KubeObject]]]) -> CleanupRun | None:
    """The newest finished cleanup Job of ``(job, its pods)`` pairs."""
    best: tuple[str, CleanupRun] | None = None
    for job, pods in jobs:
        finished, reason, message = _finished(job)
        if finished is None:
            continue
        st = job.get("status") or {}
        # A failed Job has no completionTime: its Failed condition's time stands in.
        when = st.get("completionTime") or next(
            (c.get("lastTransitionTime") for c in st.get("conditions") or ()
             if c.get("type") == "Failed"), None) or ""
        report, raw = termination_report(pods)
        run = CleanupRun(str((job.get("metadata") or {}).get("name") or ""), str(when),
                         finished == "Complete", report,
                         raw if finished == "Complete" else f"{reason}: {message} {raw}".strip())
        if best is None or run.time > best[0]:
            best = (run.time, run)
    return best[1] if best else None


CACHE_FINALIZER = "aim.engine.amd.com/cache-in-use"
"""Holds a deleted AIMCache (and so its PVC and Jobs) while AIMEndpoints mount it."""


def cache_of_endpoint(ep: Mapping[str, Any]) -> str | None:
    """The AIMCache whose volume an AIMEndpoint's pods mount, as its status says."""
    c = (ep.get("status") or {}).get("cache") or {}
    return str(c["aimCache"]) if c.get("source") == "AIMCache" and c.get("aimCache") else None


def cache_users(endpoints: Iterable[Mapping[str, Any]], cache: str) -> tuple[str, ...]:
    """Names of the AIMEndpoints (not being deleted) that mount ``cache``'s volume."""
    return tuple(sorted(
        str((ep.get("metadata") or {}).get("name")) for ep in endpoints
        if cache_of_endpoint(ep) == cache
        and not (ep.get("metadata") or {}).get("deletionTimestamp")))


def cache_keys_of_pod(pod: Mapping[str, Any],
                      caches: Iterable[Mapping[str, Any]]) -> list[str]:
    """The AIMCache keys a cache Job pod belongs to (by its cache label; ``caches`` are
    the AIMCaches of its namespace)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    value = labels.get(LABEL_CACHE)
    if not value or labels.get(LABEL_MANAGED_BY) != MANAGED_BY or LABEL_CACHE_JOB not in labels:
        return []
    ns = meta.get("namespace")
    return [f"{ns}/{name}" for c in caches
            if sanitize_label_value(name := str((c.get("metadata") or {}).get("name"))) == value]


@dataclass(frozen=True)
class CacheObserved:
    """One AIMCache and its surroundings as the caches had them at ``now``.

    Invariants: ``cache`` is None exactly when ``invalid`` says why; ``pvc`` and
    ``cronjob`` are the objects of the children's names whether ours or not
    (``*_owned`` tells); ``jobs`` are the download Jobs this cache controls, by name;
    ``in_use`` are the lower-cased model ids of the namespace's AIMEndpoints.
    """

    key: str
    namespace: str
    name: str
    obj: KubeObject
    generation: int
    status: Mapping[str, Any]
    cache: AIMCache | None
    invalid: str | None
    pvc: KubeObject | None
    pvc_owned: bool
    jobs: Mapping[str, JobView]
    cronjob: KubeObject | None
    cronjob_owned: bool
    cleanup: CleanupRun | None
    in_use: frozenset[str]
    catalog: RecipeIndex
    now: datetime
    deleting: bool = False
    users: tuple[str, ...] = ()

    @property
    def uid(self) -> str:
        return str((self.obj.get("metadata") or {}).get("uid") or "")


def _controlled_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    return any(r.get("controller") and r.get("uid") == uid
               for r in ((obj or {}).get("metadata") or {}).get("ownerReferences") or ())


@dataclass
class CacheCaches:
    """The read side of the AIMCache controller."""

    caches: MutationCache
    pvcs: MutationCache
    jobs: MutationCache
    cronjobs: MutationCache
    pods: InformerLike
    endpoints: InformerLike
    catalog: RecipeIndex

    def observe(self, key: str, now: datetime) -> CacheObserved | None:
        """None when the AIMCache is gone, or being deleted and no longer held by our
        finalizer (garbage collection removes its children)."""
        obj = self.caches.get(key)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and CACHE_FINALIZER not in (meta.get("finalizers") or ()):
            return None
        namespace, name = split_key(key)
        assert namespace is not None
        uid = str(meta.get("uid") or "")
        cache: AIMCache | None = None
        invalid: str | None = None
        try:
            # The spec only: the status is ours to rewrite, whatever an older version left.
            cache = AIMCache.model_validate({**obj, "status": {}})
        except ValidationError as err:
            invalid = f"invalid spec: {validation_message(err)}"
        pvc = self.pvcs.get(f"{namespace}/{cache_pvc_claim_name(name)}")
        cronjob = self.cronjobs.get(f"{namespace}/{cleanup_cronjob_name(name)}")
        jobs: dict[str, JobView] = {}
        for job in self.jobs.by_index(CONTROLLER_OWNER_UID_INDEX, uid):
            labels = (job.get("metadata") or {}).get("labels") or {}
            if labels.get(LABEL_CACHE_JOB) != JOB_DOWNLOAD:
                continue
            view = job_view(job, self._pods_of(job))
            jobs[view.name] = view
        cleanup = None
        if cronjob is not None and _controlled_by(cronjob, uid):
            cj_uid = str((cronjob.get("metadata") or {}).get("uid") or "")
            cleanup = cleanup_run(
                (j, self._pods_of(j))
                for j in self.jobs.by_index(CONTROLLER_OWNER_UID_INDEX, cj_uid)
                if ((j.get("metadata") or {}).get("labels") or {}).get(LABEL_CACHE_JOB)
                == JOB_CLEANUP)
        in_use = frozenset(
            str(m).strip().lower()
            for ep in self.endpoints.store.by_index(NAMESPACE_INDEX, namespace)
            if (m := ((ep.get("spec") or {}).get("model") or {}).get("id"))
            and not (ep.get("metadata") or {}).get("deletionTimestamp"))
        users = cache_users(self.endpoints.store.by_index(NAMESPACE_INDEX, namespace), name)
        return CacheObserved(
            key=key, namespace=namespace, name=name, obj=obj, deleting=deleting, users=users,
            generation=int(meta.get("generation") or 0), status=obj.get("status") or {},
            cache=cache, invalid=invalid, pvc=pvc, pvc_owned=_controlled_by(pvc, uid),
            jobs=jobs, cronjob=cronjob, cronjob_owned=_controlled_by(cronjob, uid),
            cleanup=cleanup, in_use=in_use, catalog=self.catalog, now=now)

    def _pods_of(self, job: Mapping[str, Any]) -> list[KubeObject]:
        uid = str((job.get("metadata") or {}).get("uid") or "")
        return self.pods.store.by_index(CONTROLLER_OWNER_UID_INDEX, uid)
