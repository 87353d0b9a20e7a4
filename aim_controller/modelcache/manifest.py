"""The manifest of one cached model: ``<root>/models/<dir>/.aim-model.json``.

Its presence is what makes a model directory *complete*: the download command writes
it last, before renaming the directory into place, so a reader that finds a valid
manifest finds every file. Reading is tolerant: a missing, unreadable or malformed
manifest means "incomplete model", never an exception.

JSON (camelCase), times RFC 3339 in UTC::

    {"id": "Qwen/Qwen3-32B", "revision": "<commit sha>", "requestedRevision": "main",
     "sizeBytes": 65536, "completedAt": "2025-01-01T00:00:00Z", "lastUsed": "2025-01-02T00:00:00Z"}

``revision`` is what is on disk (the commit the Hub resolved), ``requestedRevision`` what
was asked for (a branch, tag or commit; absent when none was).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .layout import MANIFEST_NAME

DEFAULT_REVISION = "main"
"""What the Hub serves when no revision is asked for."""


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds (as Kubernetes writes times)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: object) -> datetime | None:
    """An RFC 3339 time (Z or an offset) as an aware datetime, or None if it is not one."""
    if not isinstance(s, str):
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@dataclass(frozen=True)
class ModelManifest:
    """A complete model. Invariants: ``id`` non-empty, ``size_bytes >= 0``, times aware;
    ``last_used`` never before ``completed_at`` (a model is "used" when it lands)."""

    id: str
    revision: str | None
    size_bytes: int
    completed_at: datetime
    last_used: datetime
    requested_revision: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "revision": self.revision,
            "sizeBytes": self.size_bytes,
            "completedAt": format_time(self.completed_at),
            "lastUsed": format_time(self.last_used),
        }
        if self.requested_revision is not None:
            out["requestedRevision"] = self.requested_revision
        return out

    @classmethod
    def from_json(cls, data: object) -> ModelManifest | None:
        """The manifest in ``data``, or None when anything required is missing or wrong."""
        if not isinstance(data, dict):
            return None
        model_id, size = data.get("id"), data.get("sizeBytes")
        revision, requested = data.get("revision"), data.get("requestedRevision")
        completed = parse_time(data.get("completedAt"))
        if not isinstance(model_id, str) or not model_id or completed is None:
            return None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return None
        if revision is not None and not isinstance(revision, str):
            return None
        if requested is not None and not isinstance(requested, str):
            return None
        last_used = parse_time(data.get("lastUsed")) or completed
        return cls(model_id, revision, size, completed, max(last_used, completed), requested)

    def matches(self, revision: str | None) -> bool:
        """Whether this copy satisfies a request for ``revision``: None takes any copy; a
        name matches the commit on disk or the name it was asked for (none: "main")."""
        return revision is None or revision in (self.revision,
                                                self.requested_revision or DEFAULT_REVISION)

    def used_at(self, when: datetime) -> ModelManifest:
        return replace(self, last_used=max(when, self.completed_at))


def read_manifest(model_dir: str) -> ModelManifest | None:
    """The manifest of the model in ``model_dir``, or None: the model is incomplete."""
    try:
        with open(os.path.join(model_dir, MANIFEST_NAME), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return ModelManifest.from_json(data)


def write_manifest(model_dir: str, manifest: ModelManifest) -> None:
    """Write atomically: a temporary file in the same directory, fsynced, then os.replace,
    so a reader sees the old manifest or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=MANIFEST_NAME + ".", suffix=".tmp", dir=model_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest.to_json(), f, separators=(",", ":"))
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(model_dir, MANIFEST_NAME))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(model_dir)


def fsync_dir(path: str) -> None:
    """Make a rename or create in ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
