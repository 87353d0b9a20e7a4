"""``aim-controller cache-download``: bring one model from the Hugging Face Hub into the
cache, atomically.

1. A complete copy (valid manifest, same revision when one is asked) is kept: skipped.
2. The download claims an entry ``<root>/.tmp/<dir>-<token>/`` and holds its lock. A
   stale entry of the same model and revision left by a killed attempt is adopted (its
   finished files are not fetched again); other stale entries of the model are removed.
3. ``huggingface_hub.snapshot_download`` fetches the files into ``<entry>/files`` (the
   Hub's protocol: revision resolution, per-file HEAD/GET with ETags, retries and HTTP
   range resumption, Xet storage, mirrors via ``HF_ENDPOINT``).
4. The size is summed, the manifest written, and ``<entry>/files`` renamed to
   ``<root>/models/<dir>``: one rename, so endpoints see the whole model or nothing. If a
   complete copy landed meanwhile (another attempt), it is kept and ours dropped.

The token comes from ``HF_TOKEN`` (the Job sets it from a Secret); this command never
talks to the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from .layout import (
    DOWNLOAD_FILES,
    DOWNLOAD_MARKER,
    MANIFEST_NAME,
    is_tmp_entry_of,
    model_path,
    models_root,
    tmp_entry_name,
    tmp_root,
)
from .manifest import ModelManifest, format_time, fsync_dir, read_manifest, write_manifest
from .tmpdirs import Heartbeat, discard, last_activity, new_token, take_lock, tree_bytes

log = structlog.get_logger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"

# Exit codes (the Job's pod failure policy can tell them apart).
EXIT_READY = 0
EXIT_RETRYABLE = 1
"""Network trouble, a 5xx or 429, a cut download: another attempt may succeed."""
EXIT_USAGE = 2
EXIT_PERMANENT = 3
"""401/403 (gated model, bad or missing token), 404 (unknown model or revision), bad id:
retrying cannot help until the spec or the Secret changes."""
EXIT_NO_SPACE = 4
"""The volume cannot hold the model."""


@dataclass(frozen=True)
class DownloadResult:
    model: str
    state: str
    """"Ready" or "Failed"."""
    size_bytes: int = 0
    revision: str | None = None
    skipped: bool = False
    message: str = ""
    exit_code: int = EXIT_READY

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "state": self.state, "sizeBytes": self.size_bytes,
                "revision": self.revision, "skipped": self.skipped, "message": self.message}


class DownloadError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Fetcher(Protocol):
    """Resolves ``revision`` and fetches the repository's files into ``dest``."""

    def resolve(self, model_id: str, revision: str | None) -> tuple[str, int | None]:
        """(commit, total bytes of the files when known)."""
        ...

    def fetch(self, model_id: str, commit: str, dest: str, cache_dir: str) -> None: ...


@dataclass
class HubFetcher:
    """The real one: the Hugging Face Hub (or a mirror) through ``huggingface_hub``."""

    endpoint: str
    token: str | None
    max_workers: int = 8

    def resolve(self, model_id: str, revision: str | None) -> tuple[str, int | None]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.endpoint, token=self.token or False)
        info = api.model_info(model_id, revision=revision)
        if not info.sha:
            raise DownloadError(f"{self.endpoint} did not say which commit {revision or 'main'}"
                                f" of {model_id} is", EXIT_RETRYABLE)
        total = 0
        for f in api.list_repo_tree(model_id, recursive=True, revision=info.sha):
            if isinstance(f, RepoFile):
                total += f.lfs.size if f.lfs is not None else f.size
        return info.sha, total

    def fetch(self, model_id: str, commit: str, dest: str, cache_dir: str) -> None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils.tqdm import disable_progress_bars

        disable_progress_bars()  # the Job's log is JSON lines, not a terminal
        snapshot_download(model_id, revision=commit, local_dir=dest, cache_dir=cache_dir,
                          token=self.token or False, endpoint=self.endpoint,
                          max_workers=self.max_workers)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _free_bytes(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass
class _Claim:
    """Our ``.tmp`` entry, its lock held and its heartbeat running."""

    path: str
    lock_fd: int
    adopted: str | None
    heartbeat: Heartbeat = field(init=False)

    def __post_init__(self) -> None:
        self.heartbeat = Heartbeat(os.path.join(self.path, DOWNLOAD_MARKER))
        self.heartbeat.start()

    @property
    def files(self) -> str:
        return os.path.join(self.path, DOWNLOAD_FILES)

    def release(self) -> None:
        self.heartbeat.stop()
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def _write_marker(entry: str, model_id: str, revision: str | None, now: datetime) -> None:
    marker = {"id": model_id, "revision": revision, "startedAt": format_time(now),
              "host": socket.gethostname(), "pid": os.getpid()}
    with open(os.path.join(entry, DOWNLOAD_MARKER), "w", encoding="utf-8") as f:
        json.dump(marker, f)


def _marker_revision(entry: str) -> tuple[bool, str | None]:
    """(readable, the revision the entry's download asked for)."""
    try:
        with open(os.path.join(entry, DOWNLOAD_MARKER), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False, None
    rev = data.get("revision") if isinstance(data, dict) else None
    return isinstance(data, dict), rev if isinstance(rev, str) else None


def claim_entry(root: str, model_id: str, revision: str | None, now: datetime) -> _Claim:
    """Claim a fresh ``.tmp`` entry for ``model_id``, adopting the most recent stale one of
    the same revision (its finished files count) and removing the model's other stale
    entries. Entries of live downloads are left alone."""
    tmp = tmp_root(root)
    os.makedirs(tmp, exist_ok=True)
    ours = os.path.join(tmp, tmp_entry_name(model_id, new_token()))
    candidates = []
    with contextlib.suppress(FileNotFoundError), os.scandir(tmp) as it:
        candidates = [e.path for e in it if e.is_dir(follow_symlinks=False)
                      and is_tmp_entry_of(e.name, model_id)]
    adopted: tuple[str, int] | None = None
    for entry in sorted(candidates, key=last_activity, reverse=True):
        fd = take_lock(entry, now=now.timestamp())
        if fd is None:
            log.info("another download of the model is running", entry=entry)
            continue
        readable, rev = _marker_revision(entry)
        if adopted is None and readable and rev == revision:
            try:
                os.rename(entry, ours)  # the lock moves with the inode: still ours
                adopted = (entry, fd)
                log.info("resuming a stale download", entry=entry)
                continue
            except OSError:
                pass
        log.info("removing a stale download", entry=entry)
        discard(entry, root)
        os.close(fd)
    if adopted is None:
        os.makedirs(ours)
        fd = take_lock(ours, now=now.timestamp(), fresh=True)
        if fd is None:  # cannot happen on a new, random name; fail loudly if it does
            raise DownloadError(f"cannot lock {ours}", EXIT_RETRYABLE)
        claim = _Claim(ours, fd, None)
    else:
        claim = _Claim(ours, adopted[1], adopted[0])
    _write_marker(ours, model_id, revision, now)
    os.makedirs(claim.files, exist_ok=True)
    return claim


def _publish(root: str, model_id: str, files: str, manifest: ModelManifest,
             revision: str | None) -> tuple[ModelManifest, bool]:
    """Rename ``files`` to the model's directory. Returns (the copy now in place, whether
    it is ours). A complete copy that satisfies ``revision`` and landed meanwhile wins;
    anything else in the way (an older revision, an incomplete directory) is replaced."""
    target = model_path(model_id, root)
    os.makedirs(models_root(root), exist_ok=True)
    for _ in range(5):
        try:
            os.rename(files, target)
            fsync_dir(models_root(root))
            return manifest, True
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        existing = read_manifest(target)
        if existing is not None and existing.id == model_id and existing.matches(revision):
            return existing, False
        log.info("replacing the copy in place", target=target,
                 revision=existing.revision if existing else None)
        discard(target, root)
    raise DownloadError(f"cannot move the model into {target}: it keeps reappearing",
                        EXIT_RETRYABLE)


def describe_error(e: BaseException, model_id: str, revision: str | None, endpoint: str,
                   has_token: bool) -> DownloadError:
    """Why the download failed, in words a user can act on, and how final it is."""
    if isinstance(e, DownloadError):
        return e
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"no space left on the cache volume for {model_id}: free space"
                             " (cleanup.minFreeSpace, fewer models) or grow storage.size",
                             EXIT_NO_SPACE)
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status: int | None = None
    if isinstance(e, HfHubHTTPError):
        with contextlib.suppress(AttributeError):
            status = e.response.status_code
    code = f"HTTP {status}" if status else "HTTP error"
    token = "the token (HF_TOKEN)" if has_token else "no token (set spec.source's token Secret)"
    if isinstance(e, RevisionNotFoundError):
        return DownloadError(f"revision {revision!r} of {model_id} not found at {endpoint}"
                             f" ({code})", EXIT_PERMANENT)
    if isinstance(e, GatedRepoError) or status == 403:
        return DownloadError(
            f"{model_id} is gated or forbidden for {token} ({code}): accept the model's"
            " terms on the Hub with the token's account, or use a token that can read it",
            EXIT_PERMANENT)
    if status == 401:
        return DownloadError(
            f"unauthorized ({code}): {model_id} is private or gated, or does not exist, and"
            f" {token} cannot read it" + (" (is the token valid?)" if has_token else ""),
            EXIT_PERMANENT)
    if isinstance(e, RepositoryNotFoundError) or status == 404:
        return DownloadError(f"model {model_id} not found at {endpoint} ({code})",
                             EXIT_PERMANENT)
    detail = " ".join(str(e).split())[:300]
    if isinstance(e, HfHubHTTPError):
        return DownloadError(f"{endpoint} answered {code} for {model_id}: {detail}",
                             EXIT_RETRYABLE)
    if isinstance(e, LocalEntryNotFoundError) or type(e).__module__.startswith("httpx"):
        return DownloadError(f"cannot reach {endpoint} for {model_id}: {detail}",
                             EXIT_RETRYABLE)
    return DownloadError(f"download of {model_id} failed: {type(e).__name__}: {detail}",
                         EXIT_RETRYABLE)


def download_model(
    root: str,
    model_id: str,
    revision: str | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    fetcher: Fetcher | None = None,
    now: Callable[[], datetime] = _utcnow,
    free_bytes: Callable[[str], int | None] = _free_bytes,
) -> DownloadResult:
    """Download ``model_id`` into the cache at ``root`` (see the module). Never raises for
    a download that fails: the result says why, with the exit code to use."""
    endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
    revision = revision or None
    if not model_id or any(c.isspace() for c in model_id):
        return DownloadResult(model_id, "Failed", message=f"invalid model id {model_id!r}",
                              exit_code=EXIT_PERMANENT)
    existing = read_manifest(model_path(model_id, root))
    if existing is not None and existing.id == model_id and existing.matches(revision):
        return DownloadResult(model_id, "Ready", existing.size_bytes, existing.revision,
                              skipped=True, message="already complete in the cache")
    fetch: Fetcher = fetcher or HubFetcher(endpoint, token)
    claim: _Claim | None = None
    keep_entry = False
    try:
        commit, total = fetch.resolve(model_id, revision)
        claim = claim_entry(root, model_id, revision, now())
        if total is not None:
            need = total - tree_bytes(claim.files)
            free = free_bytes(claim.path)
            if free is not None and need > free:
                raise DownloadError(
                    f"no space for {model_id} on the cache volume: it needs {need} more bytes,"
                    f" {free} are free: free space (cleanup.minFreeSpace, fewer models) or"
                    " grow storage.size", EXIT_NO_SPACE)
        log.info("downloading", model=model_id, revision=revision, commit=commit,
                 endpoint=endpoint, entry=claim.path, resumed_from=claim.adopted)
        try:
            fetch.fetch(model_id, commit, claim.files, os.path.join(claim.path, "hub-cache"))
        except BaseException:
            keep_entry = True  # finished files help the next attempt (unless final, below)
            raise
        # huggingface_hub's bookkeeping (metadata, locks) is not part of the model.
        shutil.rmtree(os.path.join(claim.files, ".cache"), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(claim.files, MANIFEST_NAME))
        done = now()
        manifest = ModelManifest(model_id, commit, tree_bytes(claim.files), done, done,
                                 requested_revision=revision)
        write_manifest(claim.files, manifest)
        placed, ours = _publish(root, model_id, claim.files, manifest, revision)
        message = "downloaded" if ours else "a complete copy landed meanwhile; kept it"
        log.info("model ready", model=model_id, size_bytes=placed.size_bytes, ours=ours)
        return DownloadResult(model_id, "Ready", placed.size_bytes, placed.revision,
                              message=message)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        err = describe_error(e, model_id, revision, endpoint, bool(token))
        if err.exit_code != EXIT_RETRYABLE:
            keep_entry = False  # nothing to resume, or space to give back
        log.warning("download failed", model=model_id, error=str(err), exit_code=err.exit_code,
                    cause=type(e).__name__)
        return DownloadResult(model_id, "Failed", revision=revision, message=str(err),
                              exit_code=err.exit_code)
    finally:
        if claim is not None:
            if not keep_entry:
                discard(claim.path, root)
            claim.release()
