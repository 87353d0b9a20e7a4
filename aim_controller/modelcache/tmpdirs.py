"""Entries of ``<root>/.tmp``: who owns them, when they are stale, how they go.

A download owns its entry by holding an exclusive ``flock`` on the entry's lock file for
as long as it runs; the kernel (or the NFS/CephFS lock service) drops the lock when the
process dies, however it dies. So an entry whose lock can be taken is left over from a
dead attempt. Filesystems without locks fall back on a heartbeat: the owner touches its
marker file every ``HEARTBEAT_SECONDS``, and an entry untouched for ``STALE_AFTER_SECONDS``
is stale.

Deleting a tree is never done in place: it is first renamed to a ``.deleting`` entry
(atomic), then removed, so no reader ever sees a half-deleted model or download, and a
deletion cut short is finished by the next command that looks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field

from .layout import DELETING_SUFFIX, DOWNLOAD_LOCK, DOWNLOAD_MARKER, tmp_root

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def new_token() -> str:
    return secrets.token_hex(6)


def last_activity(entry: str) -> float:
    """When the entry's owner last showed life: its marker's mtime (the heartbeat), else
    the entry's own; 0 if neither can be read."""
    for p in (os.path.join(entry, DOWNLOAD_MARKER), entry):
        with contextlib.suppress(OSError):
            return os.stat(p).st_mtime
    return 0.0


def take_lock(entry: str, *, now: float | None = None,
              stale_after: float = STALE_AFTER_SECONDS, fresh: bool = False) -> int | None:
    """Take the entry's lock if no live process holds it: the open lock file's descriptor
    (keep it open to keep the lock), or None when the entry belongs to a live download.
    Without lock support, an entry counts as dead after ``stale_after`` seconds of silence,
    and a ``fresh`` one (just made under a random name) is ours without a lock."""
    silent = (now or time.time()) - last_activity(entry)  # before the lock file is made
    try:
        fd = os.open(os.path.join(entry, DOWNLOAD_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as e:
        if e.errno in _NO_LOCKS and (fresh or silent > stale_after):
            return fd
        os.close(fd)
        return None


def discard(path: str, root: str) -> bool:
    """Remove the tree at ``path``: rename it into ``.tmp`` as a ``.deleting`` entry, then
    remove that. False if ``path`` was already gone."""
    trash = os.path.join(tmp_root(root), f"{os.path.basename(path)}-{new_token()}{DELETING_SUFFIX}")
    os.makedirs(tmp_root(root), exist_ok=True)
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return False
    remove_path(trash)
    return True


def remove_path(path: str) -> None:
    """Remove a tree or a file, whatever is left of it."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def tree_bytes(path: str) -> int:
    """Bytes of the regular files under ``path`` (apparent sizes; symlinks not followed)."""
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


@dataclass
class Heartbeat:
    """Touches ``path`` every ``interval`` seconds until stopped (a daemon thread)."""

    path: str
    interval: float = HEARTBEAT_SECONDS
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aim-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
