"""What cleanup removes: a pure function of the models on disk, the spec, the in-use set,
the time and the free space. No I/O; ``clean.py`` reads the disk and carries it out.

The rules, in order (ages are ``now - last_used``; "past" means strictly greater):

(a) **retention**: a model whose entry has a ``retention`` is removed when its age is
    past it. A model's own retention wins over ``maxAge``, both ways (a 30d retention
    keeps a model that a 7d maxAge would remove, and a 1d retention removes it sooner).
(b) **maxAge**: a model whose entry has no retention is removed when its age is past
    ``maxAge``.
(c) **unlisted**: a model on disk that no entry names (neither in the spec nor recently
    removed from it) is removed when its age is past ``maxAge`` (reason ``unlisted``).
    Entries removed from the spec are passed with ``in_spec=False`` and their last
    retention, so they follow (a) and (b): removal from the spec is not eviction.
(d) **space**: then, while ``free < minFreeSpace``, evict the next model in this order
    (reason ``space``): unlisted models first, then those removed from the spec, then
    those in it; within each, lowest priority first (low, medium, high; unlisted ones
    have none), then least recently used, then id, so the order is total and the result
    never depends on the input order. Models of 0 bytes free nothing and are not
    evicted for space. When every candidate is gone and free is still short, the plan
    says by how much (``shortfall_bytes``).

A model in ``in_use`` (a running endpoint mounts it) is never removed, by any rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

Priority = Literal["high", "medium", "low"]
PRIORITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
"""Eviction order for space: lower ranks go first."""


class Reason(StrEnum):
    RETENTION = "retention"
    MAX_AGE = "maxAge"
    UNLISTED = "unlisted"
    SPACE = "space"


@dataclass(frozen=True)
class CachedCopy:
    """A complete model on disk (from its manifest)."""

    id: str
    size_bytes: int
    completed_at: datetime
    last_used: datetime | None = None
    """None: never used since it landed (its age counts from ``completed_at``)."""

    @property
    def last_activity(self) -> datetime:
        return self.last_used if self.last_used is not None else self.completed_at


@dataclass(frozen=True)
class SpecEntry:
    """A model the AIMCache names now (``in_spec``) or named until recently."""

    id: str
    priority: Priority = "medium"
    retention_seconds: float | None = None
    in_spec: bool = True


@dataclass(frozen=True)
class Removal:
    id: str
    reason: Reason
    size_bytes: int


@dataclass(frozen=True)
class CleanupPlan:
    """Removals in the order to carry them out: age rules (a)-(c) first, then space (d).
    ``free_bytes_after = free_bytes + sum of removed sizes``; ``shortfall_bytes`` is how
    far that stays below ``min_free_bytes`` (0 when it is reached or not asked)."""

    removals: tuple[Removal, ...]
    free_bytes_after: int
    shortfall_bytes: int

    @property
    def freed_bytes(self) -> int:
        return sum(r.size_bytes for r in self.removals)

    @property
    def removed_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.removals)


def age_verdict(
    model: CachedCopy, entry: SpecEntry | None, now: datetime, max_age_seconds: float | None
) -> Reason | None:
    """Rules (a)-(c) for one model that is not in use: why it expires, or None."""
    age = (now - model.last_activity).total_seconds()
    if entry is None:
        return Reason.UNLISTED if max_age_seconds is not None and age > max_age_seconds else None
    if entry.retention_seconds is not None:
        return Reason.RETENTION if age > entry.retention_seconds else None
    return Reason.MAX_AGE if max_age_seconds is not None and age > max_age_seconds else None


def eviction_key(model: CachedCopy, entry: SpecEntry | None) -> tuple[int, int, datetime, str]:
    """Rule (d)'s order: smaller keys are evicted first."""
    if entry is None:
        return (0, -1, model.last_activity, model.id)
    return (1 if not entry.in_spec else 2, PRIORITY_RANK[entry.priority], model.last_activity,
            model.id)


def plan_cleanup(
    models: Iterable[CachedCopy],
    entries: Iterable[SpecEntry],
    in_use: Iterable[str],
    *,
    now: datetime,
    max_age_seconds: float | None,
    min_free_bytes: int | None,
    free_bytes: int,
) -> CleanupPlan:
    """Decide what cleanup removes (see the module's rules).

    Model ids on disk must be distinct (ValueError otherwise). Should several entries name
    one id, the one in the spec wins, then a fixed order of their fields: never the
    input order."""
    by_id: dict[str, CachedCopy] = {}
    for m in models:
        if m.id in by_id:
            raise ValueError(f"model {m.id!r} is on disk twice")
        by_id[m.id] = m
    spec: dict[str, SpecEntry] = {}
    for e in sorted(entries, key=lambda e: (e.id, e.in_spec, e.priority, e.retention_seconds
                                            if e.retention_seconds is not None else -1.0)):
        spec[e.id] = e
    protected = frozenset(in_use)

    removals: list[Removal] = []
    kept: list[CachedCopy] = []
    # Age removals in a stable order: oldest activity first, then id.
    for m in sorted(by_id.values(), key=lambda m: (m.last_activity, m.id)):
        reason = None if m.id in protected else age_verdict(m, spec.get(m.id), now,
                                                             max_age_seconds)
        if reason is None:
            kept.append(m)
        else:
            removals.append(Removal(m.id, reason, m.size_bytes))

    free = free_bytes + sum(r.size_bytes for r in removals)
    if min_free_bytes is not None:
        candidates = sorted(
            (m for m in kept if m.id not in protected and m.size_bytes > 0),
            key=lambda m: eviction_key(m, spec.get(m.id)),
        )
        for m in candidates:
            if free >= min_free_bytes:
                break
            removals.append(Removal(m.id, Reason.SPACE, m.size_bytes))
            free += m.size_bytes
    shortfall = max(0, min_free_bytes - free) if min_free_bytes is not None else 0
    return CleanupPlan(tuple(removals), free, shortfall)
