"""Step 4 of an AIMCache reconcile: report. The pure half: from what was observed,
planned and applied, the status to write and the Events that explain the change.

Conditions: ``StorageReady`` (the PVC is Bound), ``ModelsReady`` (every model of the
spec is Ready; else why not: InsufficientSpace, DownloadFailed, Downloading, ...),
``Ready`` (both, and no child name taken by somebody else's object: ChildConflict).
Phase: Ready; Degraded (a download failed, a model does not fit, a name conflict);
Failed (the PVC's name is somebody else's, or the spec is invalid); Pending (the
volume is not bound and nothing runs yet); Provisioning otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .cache_decide import CachePlan, ModelPlan
from .cache_observe import CacheObserved
from .cache_size import human_bytes
from .conditions import FALSE, TRUE, Cond, find, merge_conditions

__all__ = [
    "CHILD_CONFLICT",
    "INSUFFICIENT_SPACE",
    "IN_USE",
    "MODELS_READY",
    "READY",
    "STORAGE_READY",
    "CacheApplied",
    "EventNote",
    "cache_events",
    "cache_status",
    "deletion_status",
    "invalid_status",
    "status_equal",
]

STORAGE_READY = "StorageReady"
MODELS_READY = "ModelsReady"
READY = "Ready"
CHILD_CONFLICT = "ChildConflict"
INSUFFICIENT_SPACE = "InsufficientSpace"
IN_USE = "InUse"


@dataclass(frozen=True)
class CacheApplied:
    """Step 3's outcome: Jobs created, names found taken on the create path, errors."""

    started: frozenset[str] = frozenset()
    conflicts: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventNote:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class _Summary:
    conds: list[Cond] = field(default_factory=list)
    phase: str = "Pending"


def _final_models(plan: CachePlan, applied: CacheApplied) -> list[ModelPlan]:
    out: list[ModelPlan] = []
    for m in plan.models:
        if m.start is not None:
            name = m.start["metadata"]["name"]
            if name in applied.started:
                m = replace(m, state="Downloading", message=f"download Job {name} started")
            elif f"Job {name}" in applied.conflicts:
                m = replace(m, message=f"not started: a Job named {name} is not this cache's")
            else:
                m = replace(m, message=f"not started: {next(iter(applied.errors), 'retrying')}")
        out.append(replace(m, start=None))
    return out


def _storage(o: CacheObserved, plan: CachePlan, conflicts: Sequence[str]) -> Cond:
    pvc_name = f"aimcache PVC of {o.name}"
    if plan.pvc is not None:
        pvc_name = plan.pvc["metadata"]["name"]
    if any(c.startswith("PersistentVolumeClaim ") for c in conflicts):
        return Cond(STORAGE_READY, FALSE, CHILD_CONFLICT,
                    f"a PersistentVolumeClaim named {pvc_name} exists and is not this cache's;"
                    " it is left as is")
    pvc = o.pvc if o.pvc_owned else None
    phase = ((pvc or {}).get("status") or {}).get("phase")
    if phase == "Bound":
        cap = ((pvc or {}).get("status") or {}).get("capacity", {}).get("storage")
        return Cond(STORAGE_READY, TRUE, "Bound", f"PersistentVolumeClaim {pvc_name} is Bound"
                    + (f" ({cap})" if cap else ""))
    if pvc is None:
        return Cond(STORAGE_READY, FALSE, "Creating",
                    f"PersistentVolumeClaim {pvc_name} is being created")
    sc = (pvc.get("spec") or {}).get("storageClassName")
    return Cond(STORAGE_READY, FALSE, str(phase or "Pending"),
                f"PersistentVolumeClaim {pvc_name} is {phase or 'Pending'}"
                + (f" (storage class {sc})" if sc else "")
                + "; downloads start once a volume is bound (or with the first pod, for "
                  "WaitForFirstConsumer classes)")


def _models_cond(plan: CachePlan, models: Sequence[ModelPlan]) -> Cond:
    spec = [m for m in models if m.in_spec]
    ready = sum(m.state == "Ready" for m in spec)
    if ready == len(spec):
        return Cond(MODELS_READY, TRUE, "AllModelsReady", f"{ready}/{len(spec)} models ready")
    failed = [m for m in spec if m.state == "Failed"]
    head = f"{ready}/{len(spec)} models ready"
    if plan.unwritable:
        return Cond(MODELS_READY, FALSE, "UnwritableStorage", f"{head}; {plan.unwritable}")
    if plan.space is not None and plan.space.blocked:
        return Cond(MODELS_READY, FALSE, INSUFFICIENT_SPACE, f"{head}; {plan.space.message}")
    if failed:
        return Cond(MODELS_READY, FALSE, "DownloadFailed",
                    f"{head}; failed: " + "; ".join(f"{m.id}: {m.message}" for m in failed))
    downloading = [m.id for m in spec if m.state == "Downloading"]
    pending = [m.id for m in spec if m.state == "Pending"]
    evicted = [m.id for m in spec if m.state == "Evicted"]
    parts = [head]
    if downloading:
        parts.append("downloading: " + ", ".join(downloading))
    if pending:
        parts.append("queued: " + ", ".join(pending))
    if evicted:
        parts.append("evicted by cleanup: " + ", ".join(evicted))
    reason = "Downloading" if downloading or pending else "ModelsEvicted"
    return Cond(MODELS_READY, FALSE, reason, "; ".join(parts))


def _summary(o: CacheObserved, plan: CachePlan, applied: CacheApplied,
             models: Sequence[ModelPlan]) -> _Summary:
    conflicts = (*plan.conflicts, *applied.conflicts)
    storage = _storage(o, plan, conflicts)
    mcond = _models_cond(plan, models)
    if conflicts:
        ready = Cond(READY, FALSE, CHILD_CONFLICT,
                     "objects of these names exist and are not this cache's (left as is): "
                     + ", ".join(sorted(set(conflicts))))
    elif applied.errors:
        ready = Cond(READY, FALSE, "ApplyFailed", "; ".join(applied.errors))
    elif storage.status != TRUE:
        ready = Cond(READY, FALSE, storage.reason, storage.message)
    elif mcond.status != TRUE:
        ready = Cond(READY, FALSE, mcond.reason, mcond.message)
    else:
        ready = Cond(READY, TRUE, "Ready", mcond.message)
    spec = [m for m in models if m.in_spec]
    if storage.reason == CHILD_CONFLICT:
        phase = "Failed"
    elif ready.status == TRUE:
        phase = "Ready"
    elif conflicts or applied.errors or mcond.reason in (
            INSUFFICIENT_SPACE, "DownloadFailed", "UnwritableStorage"):
        phase = "Degraded"
    elif storage.status != TRUE and not any(m.state in ("Downloading", "Ready") for m in spec):
        phase = "Pending"
    else:
        phase = "Provisioning"
    return _Summary([storage, mcond, ready], phase)


def cache_status(o: CacheObserved, plan: CachePlan, applied: CacheApplied,
                 now: str) -> dict[str, Any]:
    """The whole status of a valid AIMCache."""
    models = _final_models(plan, applied)
    s = _summary(o, plan, applied, models)
    spec = [m for m in models if m.in_spec]
    used = sum(m.size_bytes or 0 for m in models if m.state == "Ready")
    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "conditions": merge_conditions(o.status.get("conditions"), s.conds, o.generation, now),
        "phase": s.phase,
        "persistentVolumeClaim": plan.pvc["metadata"]["name"] if plan.pvc else None,
        "capacityBytes": plan.space.capacity if plan.space else None,
        "usedBytes": used,
        "used": human_bytes(used),
        "modelsReady": f"{sum(m.state == 'Ready' for m in spec)}/{len(spec)}",
        "models": [m.entry() for m in models],
        "lastCleanupTime": plan.cleanup.time if plan.cleanup else o.status.get(
            "lastCleanupTime"),
        "lastCleanup": plan.cleanup.summary if plan.cleanup else o.status.get("lastCleanup"),
    }
    return {k: v for k, v in status.items() if v is not None}


def invalid_status(o: CacheObserved, now: str) -> dict[str, Any]:
    assert o.invalid is not None
    conds = [Cond(READY, FALSE, "InvalidSpec", o.invalid)]
    kept = {k: v for k, v in o.status.items() if k not in ("conditions", "observedGeneration",
                                                           "phase")}
    return {**kept, "observedGeneration": o.generation, "phase": "Failed",
            "conditions": merge_conditions(o.status.get("conditions"), conds, o.generation,
                                           now)}


def deletion_status(o: CacheObserved, now: str) -> dict[str, Any]:
    """The status of a deleted AIMCache that AIMEndpoints still mount (``o.users``)."""
    names = ", ".join(o.users)
    conds = [Cond(READY, FALSE, IN_USE,
                  f"being deleted; waits for the AIMEndpoints that mount its volume: {names} "
                  "(they move off a cache being deleted)")]
    kept = {k: v for k, v in o.status.items() if k not in ("conditions", "observedGeneration")}
    old = list(o.status.get("conditions") or ())
    return {**kept, "observedGeneration": o.generation,
            "conditions": [*(dict(c) for c in old if c.get("type") != READY),
                           *merge_conditions(old, conds, o.generation, now)]}


def _normal(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _normal(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_normal(x) for x in v]
    return v


def status_equal(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change nothing (the server returns what was
    written; a model entry's defaults are filled in on the old side)."""
    old_n = _normal(dict(old))
    for m in old_n.get("models") or ():
        m.setdefault("inSpec", True)
        m.setdefault("message", "")
    return bool(_normal(dict(new)) == old_n)


_WARN = {(MODELS_READY, INSUFFICIENT_SPACE), (READY, CHILD_CONFLICT),
         (MODELS_READY, "UnwritableStorage")}


def cache_events(o: CacheObserved, plan: CachePlan, status: Mapping[str, Any]
                 ) -> list[EventNote]:
    """What a status write that changed the status tells: models that turned Ready or
    Failed, a new space shortage or name conflict, a cleanup run."""
    if o.invalid is not None:
        return [EventNote("Warning", "InvalidSpec", o.invalid)]
    out: list[EventNote] = []
    before = {str(m.get("id")): m for m in o.status.get("models") or ()}
    for m in status.get("models") or ():
        old = before.get(m["id"]) or {}
        if m["state"] == old.get("state"):
            continue
        if m["state"] == "Ready" and m.get("inSpec", True):
            size = m.get("sizeBytes")
            out.append(EventNote("Normal", "ModelReady", f"{m['id']} is in the cache"
                                 + (f" ({human_bytes(size)})" if size else "")))
        elif m["state"] == "Failed":
            out.append(EventNote("Warning", "DownloadFailed", f"{m['id']}: {m['message']}"))
    for c in status.get("conditions") or ():
        if (c["type"], c["reason"]) not in _WARN:
            continue
        prev = find(o.status.get("conditions"), c["type"])
        if prev is None or any(prev.get(k) != c.get(k) for k in ("status", "reason", "message")):
            out.append(EventNote("Warning", str(c["reason"]), str(c["message"])))
    if plan.cleanup is not None:
        if plan.cleanup.succeeded:
            out.append(EventNote("Normal", "CleanupCompleted", plan.cleanup.summary))
        else:
            out.append(EventNote("Warning", "CleanupFailed", plan.cleanup.summary))
    return out
