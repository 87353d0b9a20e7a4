"""Backoff for configurations an endpoint moved away from because its pods stayed
unschedulable, so the next move does not go straight back to the one just left.

The n-th abandonment of a configuration keeps it out of selection for
``min(5 min x 2^(n-1), 1 h)``. Entries are part of the ``status.recipe`` record
(``abandoned``), so an operator restart keeps them; an entry is forgotten one
maximum backoff after it expired, and the count starts again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aim_controller.api.v1alpha1 import MAX_ABANDONED

from .identity import ConfigId

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "Abandoned",
    "abandon",
    "backoff",
    "parse_abandoned",
    "parse_time",
]

BACKOFF_BASE = timedelta(minutes=5)
BACKOFF_MAX = timedelta(hours=1)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def backoff(count: int) -> timedelta:
    """How long the ``count``-th abandonment keeps a configuration out."""
    factor: int = 2 ** min(max(count - 1, 0), 16)
    return min(BACKOFF_BASE * factor, BACKOFF_MAX)


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as the API writes it (``...Z``), or None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Abandoned:
    """Invariant: ``count`` >= 1; ``until`` is timezone-aware."""

    id: ConfigId
    count: int
    until: datetime

    def active(self, now: datetime) -> bool:
        return now < self.until

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipe": self.id.name}
        if self.id.namespace:
            out["recipeNamespace"] = self.id.namespace
        out |= {"source": self.id.source, "gpuCount": self.id.gpu_count, "count": self.count,
                "until": self.until.strftime(_TIME_FORMAT)}
        return out

    @classmethod
    def from_record(cls, rec: object) -> Abandoned | None:
        if not isinstance(rec, Mapping):
            return None
        cid = ConfigId.from_record({**rec, "recipeName": rec.get("recipe")})
        until = parse_time(rec.get("until"))
        count = rec.get("count", 1)
        if cid is None or until is None or isinstance(count, bool) or not isinstance(count, int):
            return None
        return cls(cid, max(count, 1), until)


def parse_abandoned(record: Mapping[str, Any] | None) -> tuple[Abandoned, ...]:
    """The entries of a ``status.recipe`` record (malformed ones are dropped)."""
    raw = (record or {}).get("abandoned")
    if not isinstance(raw, list):
        return ()
    return tuple(a for a in map(Abandoned.from_record, raw) if a is not None)


def abandon(
    entries: Iterable[Abandoned], now: datetime, moved_from: ConfigId | None = None
) -> tuple[Abandoned, ...]:
    """``entries`` without the forgotten ones, plus ``moved_from`` abandoned once more.

    At most :data:`MAX_ABANDONED` entries are kept (the latest to expire), in a fixed
    order, so equal inputs give equal records.
    """
    kept = {a.id: a for a in entries if now < a.until + BACKOFF_MAX}
    if moved_from is not None:
        count = kept[moved_from].count + 1 if moved_from in kept else 1
        kept[moved_from] = Abandoned(moved_from, count, now + backoff(count))
    latest = sorted(kept.values(), key=lambda a: (a.until, a.id), reverse=True)[:MAX_ABANDONED]
    return tuple(sorted(latest, key=lambda a: a.id))
