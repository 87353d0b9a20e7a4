"""cache-clean on real directories: exactly what goes, and what the report says."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aim_controller.modelcache.clean import (
    CleanupRequest,
    PolicyError,
    clean,
    parse_policy,
)
from aim_controller.modelcache.layout import (
    DOWNLOAD_LOCK,
    DOWNLOAD_MARKER,
    MANIFEST_NAME,
    model_path,
    tmp_entry_name,
)
from aim_controller.modelcache.manifest import ModelManifest, read_manifest, write_manifest
from aim_controller.modelcache.policy import SpecEntry

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY = 86400.0
KB = 1000


def put_model(root: Path, model_id: str, size: int, days_idle: float) -> Path:
    """A complete model of ``size`` bytes in two files, last used ``days_idle`` ago."""
    d = Path(model_path(model_id, str(root)))
    (d / "sub").mkdir(parents=True)
    (d / "a.safetensors").write_bytes(b"x" * (size // 2))
    (d / "sub" / "b.bin").write_bytes(b"y" * (size - size // 2))
    t = NOW - timedelta(days=days_idle)
    write_manifest(str(d), ModelManifest(model_id, "c" * 40, size, t - timedelta(days=1), t))
    return d


def on_disk(root: Path, model_id: str) -> int:
    """What the model's directory takes: its files and its manifest."""
    d = Path(model_path(model_id, str(root)))
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def used(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def run(root: Path, request: CleanupRequest, capacity: int | None = None,
        dry_run: bool = False) -> dict[str, object]:
    return clean(str(root), request, capacity_bytes=capacity, dry_run=dry_run,
                 now=lambda: NOW).summary()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """Six models, 100 KB each except where said, idle for various days."""
    put_model(tmp_path, "org/kept-high", 100 * KB, 20)
    put_model(tmp_path, "org/short-retention", 100 * KB, 3)
    put_model(tmp_path, "org/old-no-retention", 100 * KB, 40)
    put_model(tmp_path, "org/stray", 50 * KB, 1)
    put_model(tmp_path, "org/low", 100 * KB, 2)
    put_model(tmp_path, "org/in-use", 200 * KB, 90)
    return tmp_path


SPEC = (
    SpecEntry("org/kept-high", "high", 30 * DAY),
    SpecEntry("org/short-retention", "medium", 2 * DAY),
    SpecEntry("org/old-no-retention", "medium", None),
    SpecEntry("org/low", "low", None),
    SpecEntry("org/in-use", "low", 1 * DAY),
)


def test_age_rules_remove_exactly_the_expired_models(cache: Path) -> None:
    old, short = on_disk(cache, "org/old-no-retention"), on_disk(cache, "org/short-retention")
    assert old == 100 * KB + len((Path(model_path("org/old-no-retention", str(cache)))
                                  / MANIFEST_NAME).read_bytes())
    out = run(cache, CleanupRequest(SPEC, frozenset({"org/in-use"}), 30 * DAY, None))
    assert out["removed"] == [
        {"id": "org/old-no-retention", "reason": "maxAge", "sizeBytes": old},
        {"id": "org/short-retention", "reason": "retention", "sizeBytes": short},
    ]
    assert out["freedBytes"] == old + short
    left = sorted(os.listdir(cache / "models"))
    assert left == ["org--in-use", "org--kept-high", "org--low", "org--stray"]
    assert [m["id"] for m in out["models"]] == [  # type: ignore[attr-defined,index]
        "org/in-use", "org/kept-high", "org/low", "org/stray"]
    assert out["shortfallBytes"] == 0 and out["tmpRemoved"] == 0
    assert os.listdir(cache / ".tmp") == []


def test_in_use_models_are_marked_used_now_and_never_removed(cache: Path) -> None:
    out = run(cache, CleanupRequest(SPEC, frozenset({"org/in-use", "org/not-on-disk"}),
                                    DAY, 10**9), capacity=10**9)
    assert "org/in-use" not in {r["id"] for r in out["removed"]}  # type: ignore[attr-defined]
    m = read_manifest(model_path("org/in-use", str(cache)))
    assert m is not None and m.last_used == NOW
    assert {"id": "org/in-use", "sizeBytes": on_disk(cache, "org/in-use"),
            "lastUsed": "2025-06-01T12:00:00Z"} in out["models"]  # type: ignore[operator]
    assert out["shortfallBytes"] == 10**9 - out["freeBytes"] > 0  # type: ignore[operator]
    assert not Path(model_path("org/not-on-disk", str(cache))).exists()


def test_space_eviction_by_priority_then_least_recent_with_a_capacity(cache: Path) -> None:
    total = used(cache)
    capacity = total + 10 * KB  # 10 KB free
    going = {i: on_disk(cache, i) for i in ("org/short-retention", "org/stray", "org/low")}
    out = run(cache, CleanupRequest(SPEC, frozenset({"org/in-use"}), None, 170 * KB),
              capacity=capacity)
    # No age rule without maxAge except retention: short-retention (3d > 2d) goes first;
    # then space: the stray (unlisted), then org/low (low); 10 + 100 + 50 + 100 >= 170.
    assert out["removed"] == [
        {"id": "org/short-retention", "reason": "retention",
         "sizeBytes": going["org/short-retention"]},
        {"id": "org/stray", "reason": "space", "sizeBytes": going["org/stray"]},
        {"id": "org/low", "reason": "space", "sizeBytes": going["org/low"]}]
    assert out["freedBytes"] == sum(going.values())
    assert out["usedBytes"] == used(cache) == total - sum(going.values())
    assert out["freeBytes"] == capacity - out["usedBytes"]  # type: ignore[operator]
    assert out["shortfallBytes"] == 0


def test_a_shortfall_is_reported_when_everything_removable_is_gone(cache: Path) -> None:
    total = used(cache)
    out = run(cache, CleanupRequest(SPEC, frozenset({"org/in-use"}), None, 10**6),
              capacity=total)
    assert sorted(os.listdir(cache / "models")) == ["org--in-use"]
    assert out["freeBytes"] == total - used(cache)
    assert out["shortfallBytes"] == 10**6 - out["freeBytes"]  # type: ignore[operator]


def test_a_model_removed_from_the_spec_waits_for_its_retention(tmp_path: Path) -> None:
    put_model(tmp_path, "org/gone-recent", 10 * KB, 1)
    put_model(tmp_path, "org/gone-old", 10 * KB, 8)
    entries = (SpecEntry("org/gone-recent", "high", 7 * DAY, in_spec=False),
               SpecEntry("org/gone-old", "high", 7 * DAY, in_spec=False))
    out = run(tmp_path, CleanupRequest(entries))
    assert [r["id"] for r in out["removed"]] == ["org/gone-old"]  # type: ignore[attr-defined]


def test_dry_run_reports_and_touches_nothing(cache: Path) -> None:
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    total = used(cache)
    request = CleanupRequest(SPEC, frozenset({"org/in-use"}), 30 * DAY, 400 * KB)
    dry = run(cache, request, capacity=total, dry_run=True)
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before
    assert dry["dryRun"] is True
    real = run(cache, request, capacity=total)
    assert dry["removed"] == real["removed"]
    for key in ("freedBytes", "usedBytes", "freeBytes", "shortfallBytes"):
        assert dry[key] == real[key], key
    assert [m["id"] for m in dry["models"]] == [m["id"] for m in real["models"]]  # type: ignore[attr-defined]


def test_incomplete_and_foreign_directories_are_left_alone(tmp_path: Path) -> None:
    put_model(tmp_path, "org/ok", 10 * KB, 100)
    broken = tmp_path / "models" / "org--broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text("{not json")
    (broken / "w").write_bytes(b"z" * 500)
    misnamed = put_model(tmp_path, "org/real", 10 * KB, 100)
    os.rename(misnamed, tmp_path / "models" / "elsewhere")
    out = run(tmp_path, CleanupRequest((), frozenset(), DAY, None), capacity=10**6)
    assert [r["id"] for r in out["removed"]] == ["org/ok"]  # type: ignore[attr-defined]
    assert sorted(os.listdir(tmp_path / "models")) == ["elsewhere", "org--broken"]
    assert out["usedBytes"] == used(tmp_path)


def tmp_entry(root: Path, name: str, size: int, mtime: float, *, locked: bool = False
              ) -> tuple[Path, int | None]:
    e = root / ".tmp" / name
    (e / "files").mkdir(parents=True)
    (e / "files" / "part").write_bytes(b"p" * size)
    (e / DOWNLOAD_MARKER).write_text("{}")
    fd = None
    if locked:
        import fcntl
        fd = os.open(e / DOWNLOAD_LOCK, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
    for p in (e, e / DOWNLOAD_MARKER):
        os.utime(p, (mtime, mtime))
    return e, fd


def test_tmp_leftovers_older_than_a_day_and_deletions_cut_short_are_removed(
        tmp_path: Path) -> None:
    old = (NOW - timedelta(days=2)).timestamp()
    fresh = (NOW - timedelta(hours=2)).timestamp()
    abandoned, _ = tmp_entry(tmp_path, tmp_entry_name("org/a", "aaaaaaaaaaaa"), 300, old)
    recent, _ = tmp_entry(tmp_path, tmp_entry_name("org/b", "bbbbbbbbbbbb"), 300, fresh)
    alive, fd = tmp_entry(tmp_path, tmp_entry_name("org/c", "cccccccccccc"), 300, old,
                          locked=True)
    deleting, _ = tmp_entry(tmp_path, "org--d-dddddddddddd.deleting", 200, fresh)
    stray_deleting = tmp_path / ".tmp" / "org--e-eeeeeeeeeeee.deleting"
    stray_deleting.write_bytes(b"s" * 7)  # a file: removed too
    stray_file = tmp_path / ".tmp" / "notes.txt"
    stray_file.write_bytes(b"n")
    os.utime(stray_file, (old, old))  # not a download: left alone
    try:
        out = run(tmp_path, CleanupRequest(), capacity=10**6)
    finally:
        assert fd is not None
        os.close(fd)
    assert not abandoned.exists() and not deleting.exists() and not stray_deleting.exists()
    assert recent.exists() and alive.exists() and stray_file.exists()
    assert (out["tmpRemoved"], out["tmpFreedBytes"]) == (3, 300 + 200 + 2 * len("{}") + 7)
    assert out["usedBytes"] == used(tmp_path)


def test_a_deletion_is_a_rename_first_so_no_half_model_is_ever_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the deletion after the rename (rmtree fails): the model is gone from models/
    at once, and the next cleanup finishes the job."""
    import shutil
    put_model(tmp_path, "org/x", 10 * KB, 100)
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)
    run(tmp_path, CleanupRequest((), frozenset(), DAY, None), capacity=10**6)
    assert os.listdir(tmp_path / "models") == []
    [trash] = os.listdir(tmp_path / ".tmp")
    assert trash.endswith(".deleting")
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    out = run(tmp_path, CleanupRequest(), capacity=10**6)
    assert os.listdir(tmp_path / ".tmp") == [] and out["tmpRemoved"] == 1


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        clean(str(tmp_path / "absent"), CleanupRequest())


def test_free_space_comes_from_the_filesystem_without_a_capacity(tmp_path: Path) -> None:
    put_model(tmp_path, "org/a", 10 * KB, 0)
    out = run(tmp_path, CleanupRequest())
    assert out["freeBytes"] > 0 and out["usedBytes"] == 10 * KB + len(  # type: ignore[operator]
        (Path(model_path("org/a", str(tmp_path))) / MANIFEST_NAME).read_bytes())


# --- the policy JSON -----------------------------------------------------------------

def test_the_policy_json_as_the_operator_sends_it() -> None:
    r = parse_policy(json.dumps({
        "models": [{"id": "a/b", "priority": "high", "retentionSeconds": 86400, "inSpec": True},
                   {"id": "c/d", "priority": "low", "retentionSeconds": None, "inSpec": False},
                   {"id": "e/f"}],
        "inUse": ["a/b"], "maxAgeSeconds": 2592000, "minFreeBytes": 107374182400}))
    assert r == CleanupRequest(
        (SpecEntry("a/b", "high", 86400.0, True), SpecEntry("c/d", "low", None, False),
         SpecEntry("e/f", "medium", None, True)),
        frozenset({"a/b"}), 2592000.0, 107374182400)
    assert parse_policy("{}") == CleanupRequest()
    assert parse_policy('{"models":null,"inUse":null,"maxAgeSeconds":null,'
                        '"minFreeBytes":null}') == CleanupRequest()


@pytest.mark.parametrize(("text", "words"), [
    ("nope", "not JSON"),
    ("[]", "JSON object"),
    ('{"modles":[]}', "unknown policy fields"),
    ('{"models":{}}', "models must be a list"),
    ('{"models":[{"priority":"low"}]}', "models[0] must be an object with an id"),
    ('{"models":[{"id":"a","priority":"urgent"}]}', "models[0].priority"),
    ('{"models":[{"id":"a","inSpec":"yes"}]}', "models[0].inSpec"),
    ('{"models":[{"id":"a","retentionSeconds":-1}]}', "models[0].retentionSeconds"),
    ('{"models":[{"id":"a","retentionSeconds":"1d"}]}', "models[0].retentionSeconds"),
    ('{"inUse":"a"}', "inUse"),
    ('{"inUse":[1]}', "inUse"),
    ('{"maxAgeSeconds":true}', "maxAgeSeconds"),
    ('{"minFreeBytes":1.5}', "whole number"),
])
def test_a_bad_policy_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(text)
