"""cache-download for real, against a small Hub on 127.0.0.1 (modelcache_hub.py) that
speaks the protocol huggingface_hub uses: the model lands whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from modelcache_hub import FakeHub, FakeRepo, serve
from support import eventually

from aim_controller.modelcache.download import (
    EXIT_NO_SPACE,
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    HubFetcher,
    download_model,
)
from aim_controller.modelcache.layout import (
    DOWNLOAD_FILES,
    DOWNLOAD_LOCK,
    DOWNLOAD_MARKER,
    MANIFEST_NAME,
    model_path,
    tmp_entry_name,
)
from aim_controller.modelcache.manifest import ModelManifest, read_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[2]
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def tiny_repo(model_id: str = "org/tiny", **kw: object) -> FakeRepo:
    rnd = random.Random(model_id)
    files = {"config.json": b'{"architectures": ["TinyForCausalLM"]}',
             "tokenizer/vocab.txt": b"a\nb\nc\n",
             SHARD1: rnd.randbytes(200_000), SHARD2: rnd.randbytes(150_000)}
    return FakeRepo(model_id, files, lfs=frozenset({SHARD1, SHARD2}), **kw)  # type: ignore[arg-type]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve(FakeHub()) as h:
        h.add(tiny_repo())
        yield h


def files_of(root: Path, model_id: str) -> dict[str, bytes]:
    base = Path(model_path(model_id, str(root)))
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*")
            if p.is_file() and p.name != MANIFEST_NAME}


def tmp_entries(root: Path) -> list[str]:
    return sorted(os.listdir(root / ".tmp")) if (root / ".tmp").exists() else []


def assert_complete(root: Path, repo: FakeRepo) -> ModelManifest:
    assert files_of(root, repo.id) == repo.files
    m = read_manifest(model_path(repo.id, str(root)))
    assert m is not None
    assert (m.id, m.revision, m.size_bytes) == (repo.id, repo.commit, repo.size)
    assert m.last_used == m.completed_at
    assert tmp_entries(root) == [], "nothing left in .tmp"
    return m


async def test_a_model_lands_whole_with_its_manifest_and_only_then(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    hub.hold[SHARD2] = threading.Event()
    task = asyncio.create_task(asyncio.to_thread(
        download_model, str(tmp_path), repo.id, endpoint=hub.url))
    await eventually(lambda: SHARD2 in hub.held and hub.held[SHARD2].is_set(),
                     what="the last shard being fetched")
    # Mid-download: nothing under models/, everything under .tmp/<dir>-<token>/files.
    assert "models" not in os.listdir(tmp_path) or os.listdir(tmp_path / "models") == []
    [entry] = tmp_entries(tmp_path)
    assert entry.startswith("org--tiny-")
    marker = json.loads((tmp_path / ".tmp" / entry / DOWNLOAD_MARKER).read_text())
    assert (marker["id"], marker["revision"], marker["pid"]) == (repo.id, None, os.getpid())
    hub.hold[SHARD2].set()
    result = await task
    assert (result.state, result.exit_code, result.skipped) == ("Ready", 0, False)
    assert (result.size_bytes, result.revision) == (repo.size, repo.commit)
    assert_complete(tmp_path, repo)
    assert not (Path(model_path(repo.id, str(tmp_path))) / ".cache").exists()
    assert result.summary() == {"model": "org/tiny", "state": "Ready", "sizeBytes": repo.size,
                                "revision": repo.commit, "skipped": False,
                                "message": "downloaded"}


def test_a_complete_model_is_skipped_without_asking_the_hub(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    assert download_model(str(tmp_path), repo.id, endpoint=hub.url).state == "Ready"
    before = len(hub.requests)
    again = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert (again.state, again.skipped, again.size_bytes, again.exit_code) == (
        "Ready", True, repo.size, 0)
    same_rev = download_model(str(tmp_path), repo.id, repo.commit, endpoint=hub.url)
    assert same_rev.skipped
    assert len(hub.requests) == before


def test_another_revision_replaces_the_copy_and_a_failed_one_keeps_it(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    assert download_model(str(tmp_path), repo.id, endpoint=hub.url).state == "Ready"
    assert download_model(str(tmp_path), repo.id, "main", endpoint=hub.url).skipped, (
        "no revision means main")
    bad = download_model(str(tmp_path), repo.id, "v9", endpoint=hub.url)
    assert (bad.state, bad.exit_code) == ("Failed", EXIT_PERMANENT)
    assert "revision 'v9'" in bad.message and "not found" in bad.message
    assert_complete(tmp_path, repo)
    # A new commit on the Hub, asked for by its sha: fetched, and it replaces the copy.
    repo.commit = "f" * 40
    repo.files = {**repo.files, "config.json": b'{"v": 2}'}
    new = download_model(str(tmp_path), repo.id, repo.commit, endpoint=hub.url)
    assert (new.state, new.skipped, new.revision) == ("Ready", False, repo.commit)
    m = assert_complete(tmp_path, repo)
    assert m.requested_revision == repo.commit


def test_the_token_goes_to_the_hub_as_a_bearer_header_and_not_to_the_cdn(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.add(tiny_repo("org/private", token="hf_secret"))
    result = download_model(str(tmp_path), repo.id, token="hf_secret", endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert_complete(tmp_path, repo)
    to_hub = [r for r in hub.requests if not r.path.startswith("/cdn/")]
    assert {r.headers.get("authorization") for r in to_hub} == {"Bearer hf_secret"}
    assert any("/resolve/" in r.path for r in to_hub)
    to_cdn = [r for r in hub.requests if r.path.startswith("/cdn/")]
    assert to_cdn and all("authorization" not in r.headers for r in to_cdn)


@pytest.mark.parametrize(("token", "words"), [
    (None, ["HTTP 401", "no token"]),
    ("hf_wrong", ["HTTP 401", "token (HF_TOKEN)", "valid"]),
])
def test_401_fails_for_good_and_leaves_no_model(
        tmp_path: Path, hub: FakeHub, token: str | None, words: list[str]) -> None:
    hub.add(tiny_repo("org/private", token="hf_secret"))
    result = download_model(str(tmp_path), "org/private", token=token, endpoint=hub.url)
    assert (result.state, result.exit_code, result.size_bytes) == ("Failed", EXIT_PERMANENT, 0)
    for w in words:
        assert w in result.message
    assert not Path(model_path("org/private", str(tmp_path))).exists()
    assert tmp_entries(tmp_path) == []


def test_403_gated_says_to_accept_the_terms(tmp_path: Path, hub: FakeHub) -> None:
    hub.add(tiny_repo("org/gated", gated=True))
    result = download_model(str(tmp_path), "org/gated", token="hf_x", endpoint=hub.url)
    assert (result.state, result.exit_code) == ("Failed", EXIT_PERMANENT)
    assert "gated" in result.message and "HTTP 403" in result.message
    assert "accept" in result.message
    assert not Path(model_path("org/gated", str(tmp_path))).exists()


def test_404_unknown_model(tmp_path: Path, hub: FakeHub) -> None:
    result = download_model(str(tmp_path), "org/nope", endpoint=hub.url)
    assert (result.state, result.exit_code) == ("Failed", EXIT_PERMANENT)
    assert result.message == f"model org/nope not found at {hub.url} (HTTP 404)"
    assert not Path(model_path("org/nope", str(tmp_path))).exists()
    assert tmp_entries(tmp_path) == []


def test_an_unreachable_hub_is_worth_retrying(tmp_path: Path) -> None:
    with serve(FakeHub()) as gone:
        url = gone.url
    result = download_model(str(tmp_path), "org/tiny", endpoint=url)
    assert (result.state, result.exit_code) == ("Failed", EXIT_RETRYABLE)
    assert result.message.startswith(f"cannot reach {url}")


def test_an_invalid_id_fails_without_a_request(tmp_path: Path, hub: FakeHub) -> None:
    result = download_model(str(tmp_path), "org/has space", endpoint=hub.url)
    assert (result.state, result.exit_code) == ("Failed", EXIT_PERMANENT)
    assert hub.requests == []


def test_no_space_fails_before_downloading_with_the_numbers(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    result = download_model(str(tmp_path), repo.id, endpoint=hub.url,
                            free_bytes=lambda _: 1000)
    assert (result.state, result.exit_code) == ("Failed", EXIT_NO_SPACE)
    assert f"needs {repo.size} more bytes, 1000 are free" in result.message
    assert not any("/resolve/" in r.path for r in hub.requests)
    assert tmp_entries(tmp_path) == []


def test_a_cut_connection_resumes_with_a_range_request(tmp_path: Path, hub: FakeHub) -> None:
    """The connection drops halfway through a shard bigger than huggingface_hub's 10 MiB
    write chunk: the client asks for the rest with a Range header, not the whole file."""
    big = hub.add(FakeRepo("org/big", {"w.safetensors": random.Random(1).randbytes(24 << 20)},
                           lfs=frozenset({"w.safetensors"})))
    hub.cut_next_get.add("w.safetensors")
    result = download_model(str(tmp_path), big.id, endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert_complete(tmp_path, big)
    gets = [r for r in hub.requests if r.method == "GET" and r.path.startswith("/cdn/")]
    assert len(gets) == 2 and "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 12 << 20


def test_a_failed_attempt_is_resumed_by_the_next_without_refetching_finished_files(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    hub.fail_next_get[SHARD2] = 500
    first = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert (first.state, first.exit_code) == ("Failed", EXIT_RETRYABLE)
    assert "HTTP 500" in first.message
    assert not Path(model_path(repo.id, str(tmp_path))).exists()
    assert len(tmp_entries(tmp_path)) == 1  # kept for the next attempt, its lock released
    assert hub.served.count(SHARD1) == 1
    second = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert second.state == "Ready", second.message
    assert_complete(tmp_path, repo)
    assert hub.served.count(SHARD1) == 1, "the finished shard was not fetched again"
    assert hub.served.count(SHARD2) == 1


def make_stale_entry(root: Path, model_id: str, token: str, revision: str | None,
                     files: dict[str, bytes] | None = None, *, locked: bool = False) -> Path:
    """A .tmp entry as a killed attempt leaves it (or a live one, ``locked``)."""
    entry = root / ".tmp" / tmp_entry_name(model_id, token)
    (entry / DOWNLOAD_FILES).mkdir(parents=True)
    (entry / DOWNLOAD_MARKER).write_text(json.dumps({"id": model_id, "revision": revision}))
    for name, data in (files or {}).items():
        (entry / DOWNLOAD_FILES / name).parent.mkdir(parents=True, exist_ok=True)
        (entry / DOWNLOAD_FILES / name).write_bytes(data)
    if locked:
        import fcntl
        fd = os.open(entry / DOWNLOAD_LOCK, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _LIVE.append(fd)
    return entry


_LIVE: list[int] = []


@pytest.fixture(autouse=True)
def _release_live_locks() -> Iterator[None]:
    yield
    while _LIVE:
        os.close(_LIVE.pop())


def test_stale_entries_of_the_model_are_cleaned_live_ones_and_others_left(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    other_rev = make_stale_entry(tmp_path, repo.id, "aaaaaaaaaaaa", "v0", {"junk": b"x" * 99})
    live = make_stale_entry(tmp_path, repo.id, "bbbbbbbbbbbb", None, locked=True)
    other_model = make_stale_entry(tmp_path, "org/tiny-2", "cccccccccccc", None)
    result = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert files_of(tmp_path, repo.id) == repo.files
    assert not other_rev.exists()
    assert live.exists() and other_model.exists()
    assert tmp_entries(tmp_path) == sorted([live.name, other_model.name])


def test_a_stale_entry_of_the_same_revision_is_adopted(tmp_path: Path, hub: FakeHub) -> None:
    """A killed attempt had finished shard 1: the next one takes its entry over (renamed,
    so the old name is gone), and huggingface_hub finds the shard's content matches the
    Hub's sha256, so it is not fetched again."""
    repo = hub.repos["org/tiny"]
    stale = make_stale_entry(tmp_path, repo.id, "dddddddddddd", None,
                             {SHARD1: repo.files[SHARD1]})
    result = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert not stale.exists()
    assert hub.served.count(SHARD1) == 0
    assert hub.served.count(SHARD2) == 1
    assert_complete(tmp_path, repo)


def test_a_copy_that_landed_meanwhile_is_kept_and_ours_dropped(
        tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    real = HubFetcher(hub.url, None)

    class Racing:
        def resolve(self, model_id: str, revision: str | None) -> tuple[str, int | None]:
            return real.resolve(model_id, revision)

        def fetch(self, model_id: str, commit: str, dest: str, cache_dir: str) -> None:
            real.fetch(model_id, commit, dest, cache_dir)
            winner = Path(model_path(model_id, str(tmp_path)))
            winner.mkdir(parents=True)
            (winner / "w").write_bytes(b"theirs")
            t = datetime(2025, 1, 1, tzinfo=UTC)
            write_manifest(str(winner), ModelManifest(model_id, commit, 6, t, t))

    result = download_model(str(tmp_path), repo.id, fetcher=Racing())
    assert (result.state, result.size_bytes) == ("Ready", 6)
    assert "landed meanwhile" in result.message
    assert files_of(tmp_path, repo.id) == {"w": b"theirs"}
    assert tmp_entries(tmp_path) == []


def test_an_incomplete_directory_in_the_way_is_replaced(tmp_path: Path, hub: FakeHub) -> None:
    repo = hub.repos["org/tiny"]
    junk = Path(model_path(repo.id, str(tmp_path)))
    junk.mkdir(parents=True)
    (junk / "half.safetensors").write_bytes(b"x")
    (junk / MANIFEST_NAME).write_text("{corrupt")
    result = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert result.state == "Ready" and not result.skipped
    assert_complete(tmp_path, repo)


async def test_a_killed_download_is_resumed_by_the_next_attempt(
        tmp_path: Path, hub: FakeHub) -> None:
    """The command in its own process, SIGKILLed mid-download (as a Job's pod is): the
    next attempt takes over the entry, fetches only what was missing, and lands."""
    repo = hub.repos["org/tiny"]
    hub.hold[SHARD2] = threading.Event()
    env = {**os.environ, "HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
    env.pop("HF_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aim_controller.main", "cache-download", "--root",
        str(tmp_path), "--model", repo.id, "--report-file", "", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        def finished_others() -> bool:
            assert proc.returncode is None, f"the download exited ({proc.returncode})"
            entries = tmp_entries(tmp_path)
            if len(entries) != 1 or not (SHARD2 in hub.held and hub.held[SHARD2].is_set()):
                return False
            files = tmp_path / ".tmp" / entries[0] / DOWNLOAD_FILES
            return all((files / f).is_file() for f in repo.files if f != SHARD2)
        await eventually(finished_others, within=60, what="the other files on disk")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    [killed] = tmp_entries(tmp_path)
    del hub.hold[SHARD2]
    before = {f: hub.served.count(f) for f in repo.files}
    result = await asyncio.to_thread(download_model, str(tmp_path), repo.id,
                                     endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert_complete(tmp_path, repo)
    assert not (tmp_path / ".tmp" / killed).exists()
    fetched = {f for f in repo.files if hub.served.count(f) > before[f]}
    assert fetched == {SHARD2}


@pytest.mark.filterwarnings("ignore:flock not supported:UserWarning")
def test_without_file_locks_the_heartbeat_tells_dead_from_alive(
        tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that refuses flock: our own fresh entry needs no lock, an entry silent
    for longer than STALE_AFTER_SECONDS is dead (removed), a recently touched one is not."""
    import errno
    import fcntl
    import time

    from aim_controller.modelcache import tmpdirs

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    repo = hub.repos["org/tiny"]
    dead = make_stale_entry(tmp_path, repo.id, "eeeeeeeeeeee", "v0")
    silent = time.time() - tmpdirs.STALE_AFTER_SECONDS - 60
    for p in (dead, dead / DOWNLOAD_MARKER):
        os.utime(p, (silent, silent))
    alive = make_stale_entry(tmp_path, repo.id, "ffffffffffff", "v0")
    result = download_model(str(tmp_path), repo.id, endpoint=hub.url)
    assert result.state == "Ready", result.message
    assert files_of(tmp_path, repo.id) == repo.files
    assert not dead.exists() and alive.exists()
