"""The corpus of objects the API server must reject (cases.yaml) and its loader."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CASES_FILE = Path(__file__).with_name("cases.yaml")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass(frozen=True)
class Case:
    """One invalid object.

    `obj` is what is created; when `updated` is set, `obj` itself is valid and creating
    it must succeed, and updating it to `updated` must be rejected. `expect[0]` is the
    path of the offending field.
    """

    id: str
    kind: str
    obj: dict[str, Any]
    updated: dict[str, Any] | None
    expect: tuple[str, ...]
    cel_only: bool

    @property
    def field_path(self) -> str:
        return self.expect[0]


def _name(case_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", case_id.lower())[:63].strip("-")


def load_cases() -> list[Case]:
    doc = yaml.safe_load(CASES_FILE.read_text())
    cases = []
    for raw in doc["cases"]:
        obj = merge_patch(doc["bases"][raw["base"]], raw.get("patch") or {})
        obj["metadata"]["name"] = _name(raw["id"])
        updated = merge_patch(obj, raw["update"]) if "update" in raw else None
        cases.append(
            Case(
                id=raw["id"],
                kind=obj["kind"],
                obj=obj,
                updated=updated,
                expect=tuple(raw["expect"]),
                cel_only=bool(raw.get("cel", False)),
            )
        )
    return cases
