"""The per-model manifest, the .tmp bookkeeping and the report line, on real directories."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aim_controller.modelcache.layout import (
    DELETING_SUFFIX,
    DOWNLOAD_LOCK,
    DOWNLOAD_MARKER,
    MANIFEST_NAME,
    is_tmp_entry_of,
    manifest_path,
    model_dir_name,
    model_path,
    tmp_entry_name,
)
from aim_controller.modelcache.manifest import (
    ModelManifest,
    format_time,
    parse_time,
    read_manifest,
    write_manifest,
)
from aim_controller.modelcache.report import REPORT_LIMIT, clip, emit
from aim_controller.modelcache.tmpdirs import discard, last_activity, take_lock, tree_bytes

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def manifest(**kw: object) -> ModelManifest:
    base: dict[str, object] = {"id": "org/m", "revision": "a" * 40, "size_bytes": 42,
                               "completed_at": T0, "last_used": T0 + timedelta(hours=1)}
    return ModelManifest(**{**base, **kw})  # type: ignore[arg-type]


def test_manifest_json_is_camel_case_and_round_trips(tmp_path: Path) -> None:
    m = manifest(requested_revision="main")
    write_manifest(str(tmp_path), m)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data == {"id": "org/m", "revision": "a" * 40, "requestedRevision": "main",
                    "sizeBytes": 42, "completedAt": "2025-01-02T03:04:05Z",
                    "lastUsed": "2025-01-02T04:04:05Z"}
    assert read_manifest(str(tmp_path)) == m


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_manifest(str(tmp_path), manifest())
    write_manifest(str(tmp_path), manifest(size_bytes=7))
    assert os.listdir(tmp_path) == [MANIFEST_NAME]
    assert read_manifest(str(tmp_path)).size_bytes == 7  # type: ignore[union-attr]


@pytest.mark.parametrize("content", [
    None,  # missing
    "", "{", "[]", "null", '"x"', "\xff\xfe",
    '{"revision":"r","sizeBytes":1,"completedAt":"2025-01-01T00:00:00Z"}',  # no id
    '{"id":"","sizeBytes":1,"completedAt":"2025-01-01T00:00:00Z"}',
    '{"id":"a/b","sizeBytes":-1,"completedAt":"2025-01-01T00:00:00Z"}',
    '{"id":"a/b","sizeBytes":"1","completedAt":"2025-01-01T00:00:00Z"}',
    '{"id":"a/b","sizeBytes":true,"completedAt":"2025-01-01T00:00:00Z"}',
    '{"id":"a/b","sizeBytes":1}',  # no completedAt
    '{"id":"a/b","sizeBytes":1,"completedAt":"yesterday"}',
    '{"id":"a/b","sizeBytes":1,"completedAt":"2025-01-01T00:00:00"}',  # no zone
    '{"id":"a/b","sizeBytes":1,"completedAt":"2025-01-01T00:00:00Z","revision":5}',
])
def test_a_bad_or_missing_manifest_means_incomplete_never_a_crash(
        tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / MANIFEST_NAME).write_bytes(content.encode("latin-1"))
    assert read_manifest(str(tmp_path)) is None
    assert read_manifest(str(tmp_path / "absent")) is None


def test_last_used_falls_back_to_completion_and_never_precedes_it(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text(
        '{"id":"a/b","sizeBytes":1,"completedAt":"2025-01-01T00:00:00+02:00","revision":null}')
    m = read_manifest(str(tmp_path))
    assert m is not None and m.last_used == m.completed_at == datetime(2024, 12, 31, 22,
                                                                        tzinfo=UTC)
    assert m.used_at(m.completed_at - timedelta(days=1)).last_used == m.completed_at


def test_revision_matching() -> None:
    m = manifest(requested_revision="v1")
    assert m.matches(None) and m.matches("a" * 40) and m.matches("v1")
    assert not m.matches("main")
    assert manifest(requested_revision=None).matches("main"), "none asked for is main"


def test_times_are_rfc3339_utc() -> None:
    assert format_time(datetime(2025, 1, 1, 1, tzinfo=UTC) + timedelta(microseconds=5)) == (
        "2025-01-01T01:00:00Z")
    assert parse_time("2025-01-01T01:00:00Z") == datetime(2025, 1, 1, 1, tzinfo=UTC)
    assert parse_time(3) is None and parse_time("x") is None


# --- layout additions ----------------------------------------------------------------

def test_tmp_entries_belong_to_exactly_one_model() -> None:
    name = tmp_entry_name("org/llama", "0123456789ab")
    assert name == "org--llama-0123456789ab"
    assert is_tmp_entry_of(name, "org/llama")
    assert not is_tmp_entry_of(tmp_entry_name("org/llama-2", "0123456789ab"), "org/llama")
    assert not is_tmp_entry_of(name + DELETING_SUFFIX, "org/llama")
    assert not is_tmp_entry_of("org--llama-0123456789ab-ffffffffffff", "org/llama")
    with pytest.raises(ValueError):
        tmp_entry_name("org/llama", "xyz")
    assert manifest_path(model_path("a/b", "/c/")) == f"/c/models/{model_dir_name('a/b')}/" \
        + MANIFEST_NAME


# --- .tmp entries --------------------------------------------------------------------

def test_a_held_lock_means_a_live_download(tmp_path: Path) -> None:
    entry = tmp_path / "e"
    entry.mkdir()
    fd = os.open(entry / DOWNLOAD_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert take_lock(str(entry)) is None
    os.close(fd)  # the owner died
    mine = take_lock(str(entry))
    assert mine is not None
    assert take_lock(str(entry)) is None, "and now it is ours"
    os.close(mine)


def test_last_activity_is_the_heartbeat(tmp_path: Path) -> None:
    entry = tmp_path / "e"
    entry.mkdir()
    (entry / DOWNLOAD_MARKER).write_text("{}")
    os.utime(entry / DOWNLOAD_MARKER, (5000, 5000))
    os.utime(entry, (9000, 9000))  # a file made in it: not a sign of life
    assert last_activity(str(entry)) == 5000
    (entry / DOWNLOAD_MARKER).unlink()
    os.utime(entry, (7000, 7000))
    assert last_activity(str(entry)) == 7000, "no marker yet: the entry's own time"
    assert last_activity(str(tmp_path / "absent")) == 0


def test_discard_renames_into_tmp_then_removes(tmp_path: Path) -> None:
    model = tmp_path / "models" / "org--m"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w").write_bytes(b"x" * 10)
    (model / "a").write_bytes(b"y" * 5)
    os.symlink("/etc/passwd", model / "link")  # counted as nothing, never followed
    assert tree_bytes(str(model)) == 15
    assert discard(str(model), str(tmp_path))
    assert not model.exists() and os.listdir(tmp_path / ".tmp") == []
    assert not discard(str(model), str(tmp_path))


# --- the report line -----------------------------------------------------------------

def test_a_long_report_is_clipped_to_valid_json_under_the_limit() -> None:
    summary = {"removed": [{"id": f"org/model-{i:04}", "reason": "space", "sizeBytes": 10**12}
                           for i in range(300)],
               "freedBytes": 1,
               "models": [{"id": f"org/kept-{i:04}", "sizeBytes": 1, "lastUsed": "x"}
                          for i in range(300)]}
    line = clip(summary, ("removed", "models"))
    assert len(line.encode()) <= REPORT_LIMIT
    out = json.loads(line)
    assert out["models"] == [] and out["modelsOmitted"] == 300
    assert 0 < len(out["removed"]) < 300
    assert len(out["removed"]) + out["removedOmitted"] == 300
    assert out["removed"] == summary["removed"][: len(out["removed"])]
    assert len(clip(dict(summary, removed=out["removed"][:3], models=[]),
                    ("removed", "models"))) < REPORT_LIMIT


def test_a_long_message_is_shortened() -> None:
    line = clip({"model": "m", "message": "é" * 10_000})
    assert len(line.encode()) <= REPORT_LIMIT and json.loads(line)["message"].endswith("…")
    short = {"model": "m", "message": "fine"}
    assert json.loads(clip(short)) == short


def test_emit_prints_one_line_and_writes_the_report_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "termination-log"
    line = emit({"a": 1}, str(path))
    assert capsys.readouterr().out == line + "\n" == '{"a":1}\n'
    assert path.read_text() == line
    emit({"a": 2}, str(tmp_path / "no" / "such" / "dir"))  # logged, not fatal
    assert capsys.readouterr().out.startswith('{"a":2}\n')
