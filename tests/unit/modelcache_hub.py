"""A small Hugging Face Hub on 127.0.0.1 for the cache-download tests: the endpoints
``huggingface_hub.snapshot_download`` and ``HfApi`` call, with the headers the client
relies on, serving repositories held in memory.

    GET  /api/models/<repo>[/revision/<rev>]      model info: sha, siblings
    GET  /api/models/<repo>/tree/<rev>?recursive  file listing (size, oid, lfs)
    HEAD /<repo>/resolve/<rev>/<path>             X-Repo-Commit, ETag, Content-Length;
                                                  LFS files: 302 to <cdn>/cdn/<sha256>
                                                  (another origin) with X-Linked-Etag
                                                  and X-Linked-Size
    GET  /<repo>/resolve/<rev>/<path>, <cdn>/cdn/<sha256>   the bytes, with Range support

Errors as the Hub sends them: 401 (missing or bad token), 403 + ``X-Error-Code:
GatedRepo``, 404 + ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound``. Faults on
demand: a 500 on a file's next GET, a connection cut halfway through a body, or a GET
held until released. Every request is logged with its headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    id: str
    files: dict[str, bytes]
    lfs: frozenset[str] = frozenset()
    """Paths served as LFS objects (a redirect to the CDN, as the Hub does)."""
    commit: str = ""
    token: str | None = None
    """When set, only ``Authorization: Bearer <token>`` may read the repository."""
    gated: bool = False

    def __post_init__(self) -> None:
        if not self.commit:
            self.commit = hashlib.sha1(self.id.encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lower case."""


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    fail_next_get: dict[str, int] = field(default_factory=dict)
    """file path -> HTTP status to answer its next GET with (once)."""
    cut_next_get: set[str] = field(default_factory=set)
    """file paths whose next GET sends half the body, then drops the connection."""
    hold: dict[str, threading.Event] = field(default_factory=dict)
    """file path -> event: a GET of the file waits for it before sending the body."""
    held: dict[str, threading.Event] = field(default_factory=dict)
    """file path -> event set when a GET of it is waiting on ``hold``."""
    served: list[str] = field(default_factory=list)
    """Paths of the file bodies sent in full."""
    url: str = ""
    cdn_url: str = ""
    """Where LFS files are served from: another origin, like the Hub's CDN."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.id] = repo
        return repo


_REVISION = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"",
              send_body: bool = True) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(status, {"Content-Type": "application/json", **(headers or {})}, body,
                   self.command != "HEAD")

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _authorize(self, repo: FakeRepo) -> bool:
        auth = self.headers.get("Authorization")
        if repo.token is not None and auth is None:
            self._error(401, None, "Unauthorized")
            return False
        if repo.token is not None and auth != f"Bearer {repo.token}":
            self._error(401, None, "Invalid credentials in Authorization header")
            return False
        if repo.gated:
            self._error(403, "GatedRepo", "Access to this model is restricted: accept the terms")
            return False
        return True

    def _repo(self, repo_id: str, rev: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if not self._authorize(repo):
            return None
        if rev not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            return None
        return repo

    def _serve(self, body: bool) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        path = unquote(url.path)
        with hub.lock:
            hub.requests.append(Request(self.command, path,
                                        {k.lower(): v for k, v in self.headers.items()}))
        if m := _REVISION.match(path):
            if repo := self._repo(m["repo"], m["rev"] or "main"):
                self._json(200, {
                    "_id": "0" * 24, "id": repo.id, "modelId": repo.id, "sha": repo.commit,
                    "private": repo.token is not None, "gated": repo.gated,
                    "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                    "lastModified": "2025-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                })
            return
        if m := _TREE.match(path):
            if repo := self._repo(m["repo"], m["rev"]):
                entries: list[dict[str, object]] = []
                dirs = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
                entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d}
                            for d in dirs]
                for p, data in sorted(repo.files.items()):
                    e: dict[str, object] = {"type": "file", "oid": git_oid(data),
                                            "size": len(data), "path": p}
                    if p in repo.lfs:
                        e["size"] = len(data)
                        e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "pointerSize": 134}
                    entries.append(e)
                self._json(200, entries)
            return
        if m := _RESOLVE.match(path):
            repo = self._repo(m["repo"], m["rev"])
            if repo is None:
                return
            file = m["path"]
            data = repo.files.get(file)
            if data is None:
                self._error(404, "EntryNotFound", "Entry not found")
                return
            common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
            if file in repo.lfs:
                sha = hashlib.sha256(data).hexdigest()
                self._send(302, {**common, "Location": f"{hub.cdn_url}/cdn/{sha}",
                                 "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                 "ETag": f'"{git_oid(data)}"'}, send_body=False)
                return
            self._file(file, data, {**common, "ETag": f'"{git_oid(data)}"'}, body)
            return
        if m := _CDN.match(path):
            for repo in hub.repos.values():
                for file, data in repo.files.items():
                    if hashlib.sha256(data).hexdigest() == m["sha"]:
                        self._file(file, data, {"ETag": f'"{m["sha"]}"',
                                                "Accept-Ranges": "bytes"}, body)
                        return
        self._error(404, None, "Not found: " + path)

    def _file(self, file: str, data: bytes, headers: dict[str, str], body: bool) -> None:
        hub = self.hub
        if not body:
            self._send(200, {**headers, "Content-Length": str(len(data))}, send_body=False)
            return
        with hub.lock:
            status = hub.fail_next_get.pop(file, None)
            cut = file in hub.cut_next_get
            hub.cut_next_get.discard(file)
        if status is not None:
            self._error(status, None, "injected failure")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(m[1])
        part = data[start:]
        headers = {**headers, "Content-Length": str(len(part))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if cut:
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if file in hub.hold:
            hub.held.setdefault(file, threading.Event()).set()
            self.wfile.write(part[:1])
            self.wfile.flush()
            hub.hold[file].wait(60)
            part = part[1:]
        self.wfile.write(part)
        with hub.lock:
            hub.served.append(file)


@contextmanager
def serve(hub: FakeHub) -> Iterator[FakeHub]:
    """Run the Hub and its CDN (the same handler on a second port: another origin, so the
    client does not follow the redirect on HEAD nor send the token there)."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    hub.url, hub.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield hub
    finally:
        for ev in hub.hold.values():
            ev.set()
        for s in servers:
            s.shutdown()
            s.server_close()
