"""Step 2 of an AIMCache reconcile: decide. Pure: :class:`CacheObserved` in,
:class:`CachePlan` out.

Per model of the spec (its download Job is named by the model, revision and source):

* a Job of it running -> ``Downloading``; complete -> ``Ready`` (size and revision from
  the pod's termination report); failed -> ``Failed`` (the Job's reason and the report);
* no Job: a ``Ready`` state of that Job stays (finished Jobs are removed an hour after,
  the status is the record); a ``Failed`` one is tried again (the Job is gone: deleted
  by hand, or by its TTL); an ``Evicted`` one stays evicted until an AIMEndpoint in the
  namespace names the model again; anything else is queued (``Pending``);
* queued models start by priority (high first, then spec order), at most
  ``max_concurrent`` download Jobs at once (one at a time on a ReadWriteOnce volume,
  none on ReadOnlyMany), and only while they fit: the size guard admits them in that
  order against the volume's capacity (what is on it counted first); the others wait
  and the status says ``InsufficientSpace`` with the numbers;
* a cleanup report names the models it removed: they become ``Evicted``.

A model removed from the spec keeps its status entry while it is on the volume (with
its last priority and retention, which the cleanup policy gets as ``inSpec: false``);
a download of it still running is stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aim_controller.api.v1alpha1.cache import AIMCache, CachedModel
from aim_controller.builders.cache_objects import (
    CacheJobSettings,
    build_cache_volume_claim,
    build_cleanup_cronjob,
    build_download_job,
    download_job_name,
    download_key,
)
from aim_controller.builders.diff import needs_apply, stamp_applied_hash
from aim_controller.builders.durations import parse_duration_seconds
from aim_controller.builders.quantity import try_parse_quantity
from aim_controller.machinery.handlers import KubeObject

from .cache_observe import CacheObserved, CleanupRun, JobView
from .cache_size import ExpectedSize, expected_size, human_bytes

__all__ = [
    "PRIORITY_RANK",
    "CachePlan",
    "CleanupNews",
    "ModelPlan",
    "SpaceCheck",
    "cleanup_news",
    "cleanup_policy",
    "decide",
    "policy_json",
    "volume_capacity",
]

PRIORITY_RANK: Mapping[str, int] = {"high": 0, "medium": 1, "low": 2}
REMOVED_KEPT = "removed from spec; kept until its retention"


@dataclass(frozen=True)
class ModelPlan:
    """One model's state after this reconcile (``start``: the Job to create for it)."""

    id: str
    state: str
    message: str = ""
    size_bytes: int | None = None
    revision: str | None = None
    job: str | None = None
    job_uid: str | None = None
    priority: str | None = None
    retention: str | None = None
    in_spec: bool = True
    last_used_time: str | None = None
    start: dict[str, Any] | None = None

    def entry(self) -> dict[str, Any]:
        """The ``status.models[]`` item (None fields left out)."""
        out: dict[str, Any] = {
            "id": self.id, "state": self.state, "message": self.message[:1024],
            "sizeBytes": self.size_bytes, "revision": self.revision, "job": self.job,
            "jobUid": self.job_uid, "priority": self.priority, "retention": self.retention,
            "inSpec": self.in_spec, "lastUsedTime": self.last_used_time,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class SpaceCheck:
    """The size guard's numbers. ``blocked``: models that do not fit (not started)."""

    capacity: int | None
    needed: int
    per_model: tuple[tuple[str, ExpectedSize], ...] = ()
    blocked: tuple[str, ...] = ()
    kept_bytes: int = 0

    @property
    def message(self) -> str:
        parts = ", ".join(
            f"{mid} {human_bytes(e.bytes) if e.bytes is not None else 'unknown'}"
            + ("" if e.source == "status" else f" ({e.source})") for mid, e in self.per_model)
        cap = human_bytes(self.capacity) if self.capacity is not None else "unknown"
        out = f"the models need {human_bytes(self.needed)} but the volume holds {cap}: {parts}"
        if self.kept_bytes:
            out += f"; models removed from the spec still take {human_bytes(self.kept_bytes)}"
        if self.blocked:
            out += f"; not started: {', '.join(self.blocked)}"
        return out


@dataclass(frozen=True)
class CleanupNews:
    """A cleanup run not reported yet: what the status and an Event say of it."""

    time: str
    summary: str
    succeeded: bool
    evicted: Mapping[str, str] = field(default_factory=dict)  # id -> reason
    last_used: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CachePlan:
    """What one reconcile does. Empty (``invalid`` set) for a spec that does not parse.

    ``pvc``/``cronjob`` are the desired objects (None: not wanted, or the name is
    somebody else's, see ``conflicts``); ``apply_*`` whether they need a write;
    ``creates`` are children whose name the caches do not show as ours (checked on the
    server before the write); ``delete`` are our objects to remove.
    """

    invalid: str | None = None
    pvc: dict[str, Any] | None = None
    apply_pvc: bool = False
    cronjob: dict[str, Any] | None = None
    apply_cronjob: bool = False
    creates: frozenset[tuple[str, str]] = frozenset()
    delete: tuple[KubeObject, ...] = ()
    models: tuple[ModelPlan, ...] = ()
    conflicts: tuple[str, ...] = ()
    space: SpaceCheck | None = None
    cleanup: CleanupNews | None = None
    unwritable: str | None = None
    limit: int = 0

    @property
    def jobs_to_start(self) -> list[dict[str, Any]]:
        return [m.start for m in self.models if m.start is not None]


def volume_capacity(cache: AIMCache, pvc: Mapping[str, Any] | None) -> int | None:
    """Bytes of the bound volume (``status.capacity``), else the requested size."""
    st = (pvc or {}).get("status") or {}
    bound = try_parse_quantity((st.get("capacity") or {}).get("storage")) \
        if st.get("phase") == "Bound" else None
    value = bound if bound is not None else try_parse_quantity(cache.spec.storage.size)
    return int(value) if value is not None else None


def _retention_seconds(value: str | None) -> int | None:
    return parse_duration_seconds(value) if value else None


def cleanup_policy(cache: AIMCache, models: Iterable[ModelPlan],
                   in_use: Iterable[str]) -> dict[str, Any]:
    """The ``--policy-json`` of ``aim-controller cache-clean``: every model the status
    lists (spec order, then removed ones), the in-use ids among them (in the cache's own
    spelling), and the cache-wide limits in seconds and bytes."""
    listed = list(models)
    used = {m.lower() for m in in_use}
    c = cache.spec.cleanup
    free = try_parse_quantity(c.min_free_space) if c.min_free_space is not None else None
    return {
        "models": [{"id": m.id, "priority": m.priority or "medium",
                    "retentionSeconds": _retention_seconds(m.retention),
                    "inSpec": m.in_spec} for m in listed],
        "inUse": sorted({m.id for m in listed if m.id.lower() in used}),
        "maxAgeSeconds": _retention_seconds(c.max_age),
        "minFreeBytes": int(free) if free is not None else None,
    }


def policy_json(policy: Mapping[str, Any]) -> str:
    """Stable spelling (the CronJob is re-applied only when the policy changes)."""
    return json.dumps(policy, sort_keys=True, separators=(",", ":"))


def _when(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value) if isinstance(value, str) and value else None


def cleanup_news(run: CleanupRun | None, last_time: Any) -> CleanupNews | None:
    """The cleanup run to report, if it is newer than ``status.lastCleanupTime``."""
    if run is None or not run.time or (isinstance(last_time, str) and run.time <= last_time):
        return None
    if not run.succeeded:
        return CleanupNews(run.time, f"cleanup Job {run.job} failed: {run.message}"[:1024],
                           False)
    if run.report is None:
        return CleanupNews(run.time, f"cleanup Job {run.job} completed without a report: "
                                     f"{run.message or 'no termination message'}"[:1024], True)
    report = run.report
    removed = [r for r in report.get("removed") or () if isinstance(r, Mapping) and r.get("id")]
    evicted = {str(r["id"]): str(r.get("reason") or "") for r in removed}
    freed = int(report.get("freedBytes") or 0)
    if removed:
        what = ", ".join(f"{r['id']} ({r.get('reason') or 'removed'}, "
                         f"{human_bytes(int(r.get('sizeBytes') or 0))})" for r in removed)
        summary = f"removed {what}; freed {human_bytes(freed)}"
    else:
        summary = "removed nothing"
    if report.get("freeBytes") is not None:
        summary += f"; {human_bytes(int(report['freeBytes']))} free"
    if int(report.get("shortfallBytes") or 0) > 0:
        summary += (f"; still {human_bytes(int(report['shortfallBytes']))} short of "
                    "minFreeSpace (the rest is in use or high priority)")
    last_used = {str(m["id"]): t for m in report.get("models") or ()
                 if isinstance(m, Mapping) and m.get("id") and (t := _when(m.get("lastUsed")))}
    return CleanupNews(run.time, summary[:1024], True, evicted, last_used)


def _prev_models(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(e.get("id")): e for e in status.get("models") or () if isinstance(e, Mapping)}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _spec_model_state(m: CachedModel, job_name: str, job: JobView | None,
                      prev: Mapping[str, Any] | None, in_use: bool,
                      evicted: str | None) -> tuple[ModelPlan, bool, bool]:
    """(state, whether it needs a download Job, whether its finished Job should go)."""
    base = ModelPlan(id=m.id, state="Pending", priority=m.priority, retention=m.retention,
                     job=job_name, revision=(prev or {}).get("revision"),
                     size_bytes=_int((prev or {}).get("sizeBytes")),
                     last_used_time=(prev or {}).get("lastUsedTime"))
    p = prev or {}
    if evicted is not None:
        return (_replace(base, state="Evicted", size_bytes=None,
                         job_uid=job.uid if job else p.get("jobUid"),
                         message=f"removed by cleanup ({evicted or 'evicted'}); downloaded "
                                 "again when an endpoint in the namespace uses it"),
                False, job is not None and not job.active)
    if job is not None:
        if p.get("state") == "Evicted" and p.get("jobUid") == job.uid:
            kept = _replace(base, state="Evicted", size_bytes=None, job_uid=job.uid,
                            message=str(p.get("message") or "removed by cleanup"))
            return kept, False, in_use and not job.active
        if job.active:
            return (_replace(base, state="Downloading", job_uid=job.uid,
                             message=f"download Job {job.name} running"), False, False)
        report = job.report or {}
        if job.finished == "Complete":
            skipped = bool(report.get("skipped"))
            msg = str(report.get("message") or "") or (
                "already complete on the volume" if skipped else "downloaded")
            return (_replace(base, state="Ready", job_uid=job.uid, message=msg,
                             size_bytes=_int(report.get("sizeBytes")) or base.size_bytes,
                             revision=str(report.get("revision") or "") or base.revision),
                    False, False)
        detail = str(report.get("message") or "") or job.pod_message or job.message
        return (_replace(base, state="Failed", job_uid=job.uid,
                         message=f"download Job {job.name} failed ({job.reason or 'Failed'})"
                                 + (f": {detail}" if detail else "")
                                 + "; retried once the Job is gone (delete it to retry now)"),
                False, False)
    if p.get("job") == job_name:
        state = p.get("state")
        if state == "Ready":
            return (_replace(base, state="Ready", job_uid=p.get("jobUid"),
                             message=str(p.get("message") or "")), False, False)
        if state == "Evicted" and not in_use:
            return (_replace(base, state="Evicted", size_bytes=None, job_uid=p.get("jobUid"),
                             message=str(p.get("message") or "removed by cleanup")),
                    False, False)
        if state == "Evicted":
            return _replace(base, size_bytes=None,
                            message="evicted, and an endpoint uses it again: queued"), True, False
        if state == "Failed":
            return _replace(base, message="queued again: the failed Job is gone"), True, False
    return _replace(base, size_bytes=None, message="queued"), True, False


def _replace(m: ModelPlan, **kw: Any) -> ModelPlan:
    return replace(m, **kw)


def decide(o: CacheObserved, settings: CacheJobSettings, max_concurrent: int) -> CachePlan:
    if o.cache is None:
        return CachePlan(invalid=o.invalid)
    cache = o.cache
    prev = _prev_models(o.status)
    news = cleanup_news(o.cleanup, o.status.get("lastCleanupTime"))
    evicted = dict(news.evicted) if news else {}
    last_used = dict(news.last_used) if news else {}
    conflicts: list[str] = []
    creates: set[tuple[str, str]] = set()
    delete: list[KubeObject] = []

    pvc = stamp_applied_hash(build_cache_volume_claim(cache))
    pvc_name = pvc["metadata"]["name"]
    pvc_conflict = o.pvc is not None and not o.pvc_owned
    if pvc_conflict:
        conflicts.append(f"PersistentVolumeClaim {pvc_name}")
    elif o.pvc is None:
        creates.add(("PersistentVolumeClaim", pvc_name))

    # Per model of the spec, in spec order.
    spec_ids = {m.id for m in cache.spec.models}
    plans: list[ModelPlan] = []
    queued: list[tuple[int, int, CachedModel]] = []
    for i, m in enumerate(cache.spec.models):
        name = download_job_name(o.name, download_key(m, cache))
        job = o.jobs.get(name)
        mp, needs_job, drop_job = _spec_model_state(
            m, name, job, prev.get(m.id), m.id.lower() in o.in_use,
            evicted.get(m.id) if m.id in evicted else None)
        if m.id in last_used:
            mp = _replace(mp, last_used_time=last_used[m.id])
        if drop_job and job is not None and job.obj is not None:
            delete.append(job.obj)
        if needs_job:
            queued.append((PRIORITY_RANK.get(m.priority, 1), i, m))
        plans.append(mp)

    # Models removed from the spec: kept while on the volume; their downloads stop.
    wanted_jobs = {p.job for p in plans}
    for job in o.jobs.values():
        if job.name not in wanted_jobs and job.active and job.obj is not None:
            delete.append(job.obj)
    removed: list[ModelPlan] = []
    for mid, p in prev.items():
        if mid in spec_ids or p.get("state") != "Ready" or mid in evicted:
            continue
        if cache.spec.cleanup.enabled:
            note = f"{REMOVED_KEPT} ({p.get('retention') or 'none: until evicted for space'})"
        else:
            note = f"{REMOVED_KEPT}; cleanup is disabled, so it stays until cleanup runs"
        removed.append(ModelPlan(
            id=mid, state="Ready", message=note, size_bytes=_int(p.get("sizeBytes")),
            revision=p.get("revision"), job=p.get("job"), job_uid=p.get("jobUid"),
            priority=p.get("priority"), retention=p.get("retention"), in_spec=False,
            last_used_time=last_used.get(mid, p.get("lastUsedTime"))))

    # Size guard, then the concurrency bound, in priority order.
    capacity = volume_capacity(cache, o.pvc if o.pvc_owned else None)
    expected = {m.id: expected_size(m, o.catalog) for m in cache.spec.models}
    kept_bytes = sum(r.size_bytes or 0 for r in removed)
    on_volume = {p.id: p.size_bytes if p.size_bytes is not None else expected[p.id].bytes
                 for p in plans if p.state in ("Ready", "Downloading")}
    used = kept_bytes + sum(v or 0 for v in on_volume.values())
    queued.sort(key=lambda t: (t[0], t[1]))
    blocked: list[str] = []
    room: dict[str, int] = {}
    admitted: list[CachedModel] = []
    needed = used
    for _rank, _i, m in queued:
        size = expected[m.id].bytes or 0
        needed += size
        if capacity is not None and used + size > capacity:
            blocked.append(m.id)
            room[m.id] = max(0, capacity - used)
            continue
        used += size
        admitted.append(m)
    per_model = tuple(
        (p.id, ExpectedSize(p.size_bytes, "status") if p.state == "Ready"
         and p.size_bytes is not None else expected[p.id])
        for p in plans if p.state != "Evicted" and p.state != "Failed")
    space = SpaceCheck(capacity, needed, per_model, tuple(blocked), kept_bytes)

    mode = cache.spec.storage.access_mode
    unwritable = None
    if mode == "ReadOnlyMany":
        limit = 0
        unwritable = ("storage.accessMode ReadOnlyMany: the download Jobs cannot write the "
                      "volume; use ReadWriteMany (or ReadWriteOnce)")
    else:
        limit = max_concurrent if mode == "ReadWriteMany" else 1
    running = sum(1 for j in o.jobs.values() if j.active and j.obj not in delete)
    slots = 0 if pvc_conflict else max(0, limit - running)
    starts: dict[str, dict[str, Any]] = {}
    for m in admitted[:slots]:
        new = stamp_applied_hash(build_download_job(cache, m, settings, expected[m.id].bytes))
        starts[m.id] = new
        creates.add(("Job", new["metadata"]["name"]))
    final: list[ModelPlan] = []
    queued_ids = {q[2].id for q in queued}
    for mp in plans:
        if mp.id in starts:
            mp = _replace(mp, start=starts[mp.id], message="starting its download Job")
        elif mp.id in room:
            want = expected[mp.id]
            mp = _replace(mp, message=f"waiting for space: needs "
                                      f"{human_bytes(want.bytes or 0)} ({want.source}), the "
                                      f"volume has {human_bytes(room[mp.id])} left for it")
        elif mp.state == "Pending" and mp.id in queued_ids:
            why = unwritable or (
                f"queued: {running} of at most {limit} downloads running" if not pvc_conflict
                else "waiting: the PVC's name is taken")
            mp = _replace(mp, message=why)
        final.append(mp)

    # Cleanup CronJob.
    cronjob = None
    apply_cronjob = False
    if cache.spec.cleanup.enabled:
        policy = policy_json(cleanup_policy(cache, [*final, *removed], o.in_use))
        cronjob = stamp_applied_hash(build_cleanup_cronjob(cache, settings, policy, capacity))
        if o.cronjob is not None and not o.cronjob_owned:
            conflicts.append(f"CronJob {cronjob['metadata']['name']}")
            cronjob = None
        else:
            apply_cronjob = needs_apply(cronjob, o.cronjob)
            if o.cronjob is None:
                creates.add(("CronJob", cronjob["metadata"]["name"]))
    elif o.cronjob is not None and o.cronjob_owned:
        delete.append(o.cronjob)

    return CachePlan(
        pvc=None if pvc_conflict else pvc,
        apply_pvc=not pvc_conflict and needs_apply(pvc, o.pvc),
        cronjob=cronjob, apply_cronjob=apply_cronjob, creates=frozenset(creates),
        delete=tuple(delete), models=(*final, *removed), conflicts=tuple(conflicts),
        space=space, cleanup=news, unwritable=unwritable, limit=limit,
    )
