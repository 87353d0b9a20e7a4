"""metav1.Condition bookkeeping, as apimachinery's ``meta.SetStatusCondition``.

A condition's ``lastTransitionTime`` changes only when its status changes, so
re-computing the same conditions yields the same status and no write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True, slots=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str = ""


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[Cond],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The new conditions list: ``desired`` in order, carrying over each
    condition's transition time when its status did not change."""
    old = {str(c.get("type")): c for c in existing or ()}
    out: list[dict[str, Any]] = []
    for c in desired:
        prev = old.get(c.type)
        changed = prev is None or prev.get("status") != c.status
        out.append({
            "type": c.type,
            "status": c.status,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed or not prev else prev.get(
                "lastTransitionTime", now),
            "reason": c.reason,
            "message": c.message[:32768],
        })
    return out


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for c in conditions or ():
        if c.get("type") == type_:
            return c
    return None
