"""A small HTTP/1.1 server on asyncio streams, for ``/metrics`` and the health probes.

Why not aiohttp.web: importing it costs ~2.2 MB of RSS for three GET routes that
Prometheus and the kubelet call a few times a minute. What it serves: GET and HEAD
on exact paths or one-segment prefixes (``/readyz/<name>``), keep-alive as HTTP/1.1
defines it, request heads up to 64 KiB, and an idle connection closed after
``idle_timeout`` seconds so a stuck client cannot hold it.

Invariants: a handler sees a parsed :class:`Request` and returns a :class:`Response`;
a handler that raises answers 500 and the connection stays usable; a request this
server does not understand (bad head, a body it will not read) answers 400 and closes
the connection; ``stop`` closes the listening sockets and every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

_log = structlog.get_logger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    tail: str = ""  # the segment after a prefix route's path

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, body: str, status: int = 200) -> Response:
        return cls(body.encode(), status, headers={"X-Content-Type-Options": "nosniff"})


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Exact paths, and prefixes that take exactly one more path segment."""

    def __init__(self) -> None:
        self._exact: dict[str, Handler] = {}
        self._prefix: dict[str, Handler] = {}

    def add_get(self, path: str, handler: Handler) -> None:
        self._exact[path] = handler

    def add_get_prefix(self, prefix: str, handler: Handler) -> None:
        """``handler`` answers ``<prefix>/<segment>`` with ``Request.tail == segment``."""
        self._prefix[prefix.rstrip("/")] = handler

    def resolve(self, path: str) -> tuple[Handler, str] | None:
        if path in self._exact:
            return self._exact[path], ""
        head, _, tail = path.rpartition("/")
        if tail and head in self._prefix:
            return self._prefix[head], tail
        return None


class _BadRequest(Exception):
    pass


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as err:
        raise _BadRequest("malformed request line") from err
    if not version.startswith("HTTP/1."):
        raise _BadRequest(f"unsupported version {version}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest("malformed header")
        headers[name.lower()] = value.strip()
    return method, target, version, headers


def _encode(response: Response, *, head_only: bool, close: bool) -> bytes:
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close" if close else "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in response.headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


class MiniHTTPServer:
    """Serves one :class:`Router` on one host/port (host ``None``: all interfaces)."""

    def __init__(self, router: Router, *, idle_timeout: float = 60.0) -> None:
        self.router = router
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str | None, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serves one request; ``True`` when the connection stays open for another."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, version, headers = _parse_head(head[:-4])
            if "transfer-encoding" in headers:
                raise _BadRequest("request bodies are not accepted")
            length = int(headers.get("content-length", "0") or "0")
            if not 0 <= length <= MAX_BODY:
                raise _BadRequest("request body too large")
            if length:
                async with asyncio.timeout(self.idle_timeout):
                    await reader.readexactly(length)
        except asyncio.IncompleteReadError as err:
            if err.partial:
                await self._send(writer, Response.text("bad request\n", 400), False, True)
            return False
        except (asyncio.LimitOverrunError, ValueError, _BadRequest) as err:
            # ValueError: a head over the stream limit, or a non-numeric length.
            _log.debug("bad http request", error=str(err))
            await self._send(writer, Response.text("bad request\n", 400), False, True)
            return False
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        response = await self._respond(method, target, headers)
        await self._send(writer, response, method == "HEAD", close)
        return not close

    async def _respond(self, method: str, target: str, headers: dict[str, str]) -> Response:
        if method not in ("GET", "HEAD"):
            response = Response.text("405: Method Not Allowed\n", 405)
            response.headers["Allow"] = "GET, HEAD"
            return response
        url = urlsplit(target)
        path = unquote(url.path)
        route = self.router.resolve(path)
        if route is None:
            return Response.text("404 page not found\n", 404)
        handler, tail = route
        request = Request(method, path, parse_qs(url.query, keep_blank_values=True), headers, tail)
        try:
            return await handler(request)
        except Exception:
            _log.exception("http handler failed", path=path)
            return Response.text("internal server error\n", 500)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: Response, head_only: bool,
                    close: bool) -> None:
        writer.write(_encode(response, head_only=head_only, close=close))
        await writer.drain()
