"""``aim-controller cache-clean``: carry out the cleanup policy on the cache volume.

1. Mark the in-use models used now (their manifests' ``lastUsed``), so age counts from
   the last time an endpoint ran them, as seen by the operator.
2. Remove ``.tmp`` leftovers: ``.deleting`` entries at once, downloads whose owner is
   gone (lock free) and that were silent for ``TMP_MAX_AGE_SECONDS``.
3. Read the disk: the complete models (valid manifests), the bytes the cache uses, and
   the free bytes (``shutil.disk_usage``, or ``capacity - used`` when the capacity is
   given: for tests, and for volumes that report the node's whole disk).
4. Apply ``policy.plan_cleanup`` and delete (rename into ``.tmp`` first, then remove, so a
   half-deleted model is never seen as complete), then report.

The policy JSON (what the operator knows and the disk does not)::

    {"models": [{"id": "org/name", "priority": "high"|"medium"|"low",
                 "retentionSeconds": 86400 | null, "inSpec": true}],
     "inUse": ["org/name"], "maxAgeSeconds": 2592000 | null, "minFreeBytes": 1e11 | null}
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from .layout import DELETING_SUFFIX, model_dir_name, model_path, models_root, tmp_root
from .manifest import ModelManifest, format_time, read_manifest, write_manifest
from .policy import PRIORITY_RANK, CachedCopy, CleanupPlan, Priority, SpecEntry, plan_cleanup
from .tmpdirs import discard, last_activity, remove_path, take_lock, tree_bytes

log = structlog.get_logger(__name__)

TMP_MAX_AGE_SECONDS = 86400.0
"""A download silent (and unowned) for this long is abandoned."""


class PolicyError(ValueError):
    """The policy JSON is not what the operator should send."""


@dataclass(frozen=True)
class CleanupRequest:
    entries: tuple[SpecEntry, ...] = ()
    in_use: frozenset[str] = frozenset()
    max_age_seconds: float | None = None
    min_free_bytes: int | None = None


def _number(v: object, what: str, *, integer: bool = False) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v:
        raise PolicyError(f"{what} must be a number >= 0 or null, got {v!r}")
    if integer and v != int(v):
        raise PolicyError(f"{what} must be a whole number of bytes, got {v!r}")
    return float(v)


def parse_policy(text: str) -> CleanupRequest:
    """The request in ``text`` (see the module), or PolicyError saying what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PolicyError(f"policy is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise PolicyError("policy must be a JSON object")
    unknown = set(data) - {"models", "inUse", "maxAgeSeconds", "minFreeBytes"}
    if unknown:
        raise PolicyError(f"unknown policy fields: {sorted(unknown)}")
    entries = []
    models = data.get("models")
    models = [] if models is None else models
    if not isinstance(models, list):
        raise PolicyError("models must be a list")
    for i, m in enumerate(models):
        if not isinstance(m, dict) or not isinstance(m.get("id"), str) or not m["id"]:
            raise PolicyError(f"models[{i}] must be an object with an id")
        priority = m.get("priority", "medium")
        if priority not in PRIORITY_RANK:
            raise PolicyError(f"models[{i}].priority must be high, medium or low, got "
                              f"{priority!r}")
        in_spec = m.get("inSpec", True)
        if not isinstance(in_spec, bool):
            raise PolicyError(f"models[{i}].inSpec must be true or false")
        p: Priority = priority
        entries.append(SpecEntry(m["id"], p, _number(m.get("retentionSeconds"),
                                                      f"models[{i}].retentionSeconds"), in_spec))
    in_use = data.get("inUse")
    in_use = [] if in_use is None else in_use
    if not isinstance(in_use, list) or not all(isinstance(x, str) for x in in_use):
        raise PolicyError("inUse must be a list of model ids")
    min_free = _number(data.get("minFreeBytes"), "minFreeBytes", integer=True)
    return CleanupRequest(tuple(entries), frozenset(in_use),
                          _number(data.get("maxAgeSeconds"), "maxAgeSeconds"),
                          int(min_free) if min_free is not None else None)


@dataclass(frozen=True)
class DiskState:
    models: dict[str, ModelManifest]
    used_bytes: int
    free_bytes: int
    sizes: dict[str, int] = field(default_factory=dict)
    """Bytes each model's directory takes (files and manifest): what deleting it frees."""


@dataclass
class CleanResult:
    plan: CleanupPlan
    removed: list[tuple[str, str, int]]
    """(id, reason, bytes) of what was deleted (or would be, in a dry run)."""
    after: DiskState
    tmp_removed: int = 0
    tmp_freed_bytes: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    min_free_bytes: int | None = None

    @property
    def shortfall_bytes(self) -> int:
        """How far the free space (as measured after the deletions) is below the minimum."""
        if self.min_free_bytes is None:
            return 0
        return max(0, self.min_free_bytes - self.after.free_bytes)

    def summary(self) -> dict[str, Any]:
        return {
            "removed": [{"id": i, "reason": r, "sizeBytes": b} for i, r, b in self.removed],
            "freedBytes": sum(b for _, _, b in self.removed),
            "usedBytes": self.after.used_bytes,
            "freeBytes": self.after.free_bytes,
            "shortfallBytes": self.shortfall_bytes,
            "dryRun": self.dry_run,
            "tmpRemoved": self.tmp_removed,
            "tmpFreedBytes": self.tmp_freed_bytes,
            "models": [{"id": m.id, "sizeBytes": self.after.sizes.get(m.id, m.size_bytes),
                        "lastUsed": format_time(m.last_used)}
                       for m in sorted(self.after.models.values(), key=lambda m: m.id)],
        }


def read_models(root: str) -> dict[str, ModelManifest]:
    """The complete models: directories with a valid manifest whose id names them.
    Anything else (no manifest, a corrupt one, a stray directory) is not a model: it is
    neither used nor removed, only counted in the bytes used."""
    out: dict[str, ModelManifest] = {}
    try:
        names = sorted(os.listdir(models_root(root)))
    except FileNotFoundError:
        return out
    for name in names:
        m = read_manifest(os.path.join(models_root(root), name))
        if m is None or model_dir_name(m.id) != name:
            log.info("not a complete model, left alone", dir=name)
            continue
        out[m.id] = m
    return out


def measure(root: str, capacity_bytes: int | None) -> tuple[int, int]:
    """(bytes used by the cache, bytes free for it)."""
    used = tree_bytes(root)
    if capacity_bytes is not None:
        return used, max(0, capacity_bytes - used)
    return used, shutil.disk_usage(root).free


def mark_in_use(root: str, in_use: frozenset[str], now: datetime) -> int:
    """Set lastUsed=now in the manifests of the in-use models on disk; how many."""
    n = 0
    for model_id in sorted(in_use):
        path = model_path(model_id, root)
        m = read_manifest(path)
        if m is None or m.id != model_id:
            continue
        write_manifest(path, m.used_at(now))
        n += 1
    return n


def _file_bytes(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def remove_stale_tmp(root: str, now: datetime, max_age_seconds: float = TMP_MAX_AGE_SECONDS,
                     *, dry_run: bool = False) -> tuple[int, int]:
    """Remove ``.deleting`` leftovers and abandoned downloads: (entries, bytes)."""
    tmp = tmp_root(root)
    try:
        names = sorted(os.listdir(tmp))
    except FileNotFoundError:
        return 0, 0
    count = freed = 0
    for name in names:
        path = os.path.join(tmp, name)
        if name.endswith(DELETING_SUFFIX):
            size = tree_bytes(path) if os.path.isdir(path) else _file_bytes(path)
            if not dry_run:
                remove_path(path)
            count, freed = count + 1, freed + size
            continue
        if now.timestamp() - last_activity(path) <= max_age_seconds:
            continue
        if not os.path.isdir(path) or os.path.islink(path):
            continue  # not a download: left alone
        fd = take_lock(path, now=now.timestamp())
        if fd is None:
            continue  # a live download, however old
        try:
            size = tree_bytes(path)
            if not dry_run:
                discard(path, root)
            log.info("removed an abandoned download", entry=name, bytes=size)
            count, freed = count + 1, freed + size
        finally:
            os.close(fd)
    return count, freed


def clean(
    root: str,
    request: CleanupRequest,
    *,
    capacity_bytes: int | None = None,
    dry_run: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CleanResult:
    """Run cleanup on the cache at ``root`` (see the module)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"cache root {root} is not a directory")
    t = now()
    if not dry_run:
        mark_in_use(root, request.in_use, t)
    tmp_removed, tmp_freed = remove_stale_tmp(root, t, dry_run=dry_run)
    models = read_models(root)
    if dry_run:  # as if marked
        models = {i: (m.used_at(t) if i in request.in_use else m) for i, m in models.items()}
    used, free = measure(root, capacity_bytes)
    if dry_run:
        used, free = used - tmp_freed, free + tmp_freed
    # What deleting a model frees: its directory as it is on disk (files and manifest).
    sizes = {i: tree_bytes(model_path(i, root)) for i in models}
    plan = plan_cleanup(
        (CachedCopy(m.id, sizes[m.id], m.completed_at, m.last_used) for m in models.values()),
        request.entries, request.in_use, now=t, max_age_seconds=request.max_age_seconds,
        min_free_bytes=request.min_free_bytes, free_bytes=free,
    )
    removed: list[tuple[str, str, int]] = []
    notes: list[str] = []
    for r in plan.removals:
        if not dry_run and not discard(model_path(r.id, root), root):
            notes.append(f"{r.id} was already gone")
            continue
        log.info("removed a model" if not dry_run else "would remove a model",
                 model=r.id, reason=str(r.reason), bytes=r.size_bytes)
        removed.append((r.id, str(r.reason), r.size_bytes))
    remaining = {i: m for i, m in models.items() if i not in {x[0] for x in removed}}
    if dry_run:
        after = DiskState(remaining, used - plan.freed_bytes, plan.free_bytes_after, sizes)
    else:
        used_after, free_after = measure(root, capacity_bytes)
        left = read_models(root)
        after = DiskState(left, used_after, free_after,
                          {i: sizes.get(i) or tree_bytes(model_path(i, root)) for i in left})
    return CleanResult(plan, removed, after, tmp_removed, tmp_freed, dry_run, notes,
                       request.min_free_bytes)
