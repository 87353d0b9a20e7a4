"""A small HTTP/1.1 client on asyncio streams, with a keep-alive connection pool.

Why not aiohttp's client: importing it cost ~9 MB of an idle operator's RSS, and
its per-request machinery (cookie jar, tracing signals, multidicts, yarl URLs) was
a tenth of the operator's CPU during a burst, for a client that only ever sends
JSON to one API server (and PromQL queries to one Prometheus). What it needs, and
all this module does: requests with a body of bytes, TLS with the caller's
context, a pool of keep-alive connections, ``Content-Length``, chunked and
read-until-close bodies, a whole-request deadline, and streaming reads for watches.

Invariants:

- A connection is pooled again only after its response body was read to the end
  and neither side asked to close it; every other ending (an error, a timeout,
  cancellation, a body released unread) closes it, so a pooled connection never
  holds the rest of an old answer.
- At most ``limit`` requests hold a connection at once; more wait their turn.
- A request that fails on a *reused* connection before any byte of the answer
  came back (the server closed an idle connection as we sent) is sent once more on
  a new connection: the server cannot have acted on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final
from urllib.parse import urlencode, urlsplit

__all__ = ["Headers", "HttpClient", "Response", "Timeout", "TransportError"]

_BODYLESS: Final = frozenset({204, 304})
_MAX_HEADER_BYTES: Final = 64 * 1024
_READ_SIZE: Final = 64 * 1024


class TransportError(OSError):
    """No complete HTTP answer: the connection failed, closed early, or spoke nonsense."""


@dataclass(frozen=True)
class Timeout:
    """``total``: seconds for the whole exchange, body included (a watch's whole
    stream); ``sock_connect``: for opening the connection. None: no bound."""

    total: float | None = None
    sock_connect: float | None = None


class Headers(dict[str, str]):
    """Response headers; names are matched case-insensitively (stored lower-case)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


_PoolKey = tuple[str, str, int, int, str | None]


class _Connection:
    __slots__ = ("idle_since", "key", "reader", "writer")

    def __init__(self, key: _PoolKey, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    def usable(self, now: float, keepalive: float) -> bool:
        return (now - self.idle_since < keepalive and not self.reader.at_eof()
                and not self.writer.is_closing())


class Response:
    """A response whose body is still on the wire. Read it with :meth:`read` or
    :meth:`iter_chunks`, then :meth:`release` it (or use ``async with``)."""

    def __init__(self, client: HttpClient, conn: _Connection, status: int, reason: str,
                 headers: Headers, *, keep_alive: bool, length: int | None, chunked: bool,
                 deadline: float | None) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._client = client
        self._conn: _Connection | None = conn
        self._keep_alive = keep_alive
        self._left = length  # bytes of a Content-Length body still unread
        self._chunked = chunked
        self._deadline = deadline
        self._done = length == 0

    async def read(self) -> bytes:
        """The whole body."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (for a chunked body, one item per chunk)."""
        try:
            while not self._done:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await self._next_chunk()
                if chunk:
                    yield chunk
        except BaseException:
            self._close()
            raise

    async def _next_chunk(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise TransportError("response already released")
        reader = conn.reader
        if self._chunked:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise TransportError("connection closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise TransportError(f"bad chunk size line {line[:40]!r}") from err
            if size == 0:
                while (trailer := await reader.readline()) not in (b"\r\n", b"\n"):
                    if not trailer:
                        raise TransportError("connection closed inside chunked trailers")
                self._finish()
                return b""
            data = await _read_exactly(reader, size)
            if await _read_exactly(reader, 2) != b"\r\n":
                raise TransportError("chunk not followed by CRLF")
            return data
        if self._left is None:  # the body runs to the end of the connection
            data = await reader.read(_READ_SIZE)
            if not data:
                self._keep_alive = False
                self._finish()
            return data
        data = await reader.read(min(self._left, _READ_SIZE))
        if not data:
            raise TransportError(f"connection closed with {self._left} body bytes unread")
        self._left -= len(data)
        if self._left == 0:
            self._finish()
        return data

    def _finish(self) -> None:
        self._done = True
        self.release()

    def release(self) -> None:
        """Gives the connection back: to the pool when the body was read to the end."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep_alive:
            self._client._give_back(conn)
        else:
            self._client._discard(conn)

    def _close(self) -> None:
        self._keep_alive = False
        self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as err:
        raise TransportError(f"connection closed after {len(err.partial)} of {n} bytes") from err


class HttpClient:
    """Sends HTTP/1.1 requests, reusing connections per (scheme, host, port, TLS context).

    Single event loop. ``close()`` closes the idle connections; responses still out
    close theirs when released.
    """

    def __init__(self, *, limit: int = 100, keepalive_timeout: float = 30.0,
                 user_agent: str = "aim-controller") -> None:
        self.keepalive_timeout = keepalive_timeout
        self._user_agent = user_agent
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[_PoolKey, list[_Connection]] = {}
        self._closed = False
        self._default_ssl: ssl_module.SSLContext | None = None
        self._next_sweep = time.monotonic() + keepalive_timeout

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,  # noqa: ASYNC109 - a deadline with a connect bound
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Response:
        """Sends one request; returns the response with its body unread.

        ``url`` is sent as given (its query already encoded); ``params`` are
        appended, encoded. ``ssl``: the context for an https URL (the system's
        default trust when None).
        """
        if self._closed:
            raise TransportError("client closed")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if params:
            target += ("&" if parts.query else "?") + urlencode(dict(params))
        context = (ssl or self._default_context()) if https else None
        key: _PoolKey = (parts.scheme, parts.hostname, port, id(context),
                         server_hostname if https else None)
        head = self._head(method, target, parts.netloc, headers, data)
        loop = asyncio.get_running_loop()
        deadline = (loop.time() + timeout.total
                    if timeout is not None and timeout.total is not None else None)
        await self._acquire_slot(deadline)
        try:
            for attempt in (0, 1):
                conn = self._pooled(key) if attempt == 0 else None
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(key, context, timeout, deadline)
                try:
                    return await self._exchange(conn, method, head, data, deadline)
                except _NothingBack as err:
                    self._discard(conn, slot=False)
                    if not reused:
                        raise TransportError(str(err)) from err
                except BaseException:
                    self._discard(conn, slot=False)
                    raise
            raise AssertionError("unreachable")
        except BaseException:
            self._slots.release()
            raise

    def _default_context(self) -> ssl_module.SSLContext:
        # Loading the system's trust store costs milliseconds: once per client.
        if self._default_ssl is None:
            self._default_ssl = ssl_module.create_default_context()
        return self._default_ssl

    async def _acquire_slot(self, deadline: float | None) -> None:
        async with asyncio.timeout_at(deadline):  # None: no bound
            await self._slots.acquire()

    def _head(self, method: str, target: str, host: str, headers: Mapping[str, str] | None,
              data: bytes | None) -> bytes:
        lines = [f"{method.upper()} {target} HTTP/1.1", f"Host: {host}",
                 f"User-Agent: {self._user_agent}", "Accept-Encoding: identity"]
        for name, value in (headers or {}).items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if data is not None or method.upper() in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(data or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _pooled(self, key: _PoolKey) -> _Connection | None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(now, self.keepalive_timeout):
                return conn
            conn.close()
        return None

    async def _connect(self, key: _PoolKey, context: ssl_module.SSLContext | None,
                       bounds: Timeout | None, deadline: float | None) -> _Connection:
        _, host, port, _, server_hostname = key
        opening = asyncio.open_connection(
            host, port, ssl=context,
            server_hostname=(server_hostname or host) if context is not None else None)
        bound = bounds.sock_connect if bounds is not None else None
        if deadline is not None:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            bound = left if bound is None else min(bound, left)
        try:
            async with asyncio.timeout(bound):
                reader, writer = await opening
        except ssl_module.SSLError:
            raise
        except OSError as err:
            raise TransportError(f"cannot connect to {host}:{port}: {err}") from err
        return _Connection(key, reader, writer)

    async def _exchange(self, conn: _Connection, method: str, head: bytes, data: bytes | None,
                        deadline: float | None) -> Response:
        async with asyncio.timeout_at(deadline):
            try:
                conn.writer.write(head + data if data else head)
                await conn.writer.drain()
                status_line = await conn.reader.readline()
            except (ConnectionError, asyncio.IncompleteReadError) as err:
                raise _NothingBack(f"connection lost before the answer: {err}") from err
            if not status_line:
                raise _NothingBack("connection closed before the answer")
            return await self._response(conn, method, status_line, deadline)

    async def _response(self, conn: _Connection, method: str, status_line: bytes,
                        deadline: float | None) -> Response:
        try:
            version, code, *rest = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            status = int(code)
        except ValueError as err:
            raise TransportError(f"bad status line {status_line[:60]!r}") from err
        if not version.startswith("HTTP/1."):
            raise TransportError(f"bad status line {status_line[:60]!r}")
        headers = Headers()
        size = 0
        while True:
            try:
                line = await conn.reader.readline()
            except ValueError as err:  # a line beyond the reader's limit
                raise TransportError("header line too long") from err
            size += len(line)
            if not line.endswith(b"\n") or size > _MAX_HEADER_BYTES:
                raise TransportError("connection closed or headers too long")
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise TransportError(f"bad header line {line[:60]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        connection = (headers.get("connection") or "").lower()
        keep_alive = "close" not in connection and (version != "HTTP/1.0"
                                                     or "keep-alive" in connection)
        chunked = "chunked" in (headers.get("transfer-encoding") or "").lower()
        length: int | None = None
        if method.upper() == "HEAD" or status in _BODYLESS or 100 <= status < 200:
            length = 0
        elif not chunked and "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as err:
                raise TransportError("bad Content-Length") from err
        return Response(self, conn, status, rest[0] if rest else "", headers,
                        keep_alive=keep_alive, length=length, chunked=chunked and length is None,
                        deadline=deadline)

    def _sweep(self, now: float) -> None:
        """Closes expired idle connections of every key: those of a TLS context no
        longer used (a rotated client certificate) would otherwise stay open."""
        self._next_sweep = now + self.keepalive_timeout
        for key in list(self._idle):
            alive = []
            for conn in self._idle[key]:
                if conn.usable(now, self.keepalive_timeout):
                    alive.append(conn)
                else:
                    conn.close()
            if alive:
                self._idle[key] = alive
            else:
                del self._idle[key]

    def _give_back(self, conn: _Connection) -> None:
        self._slots.release()
        if self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)

    def _discard(self, conn: _Connection, *, slot: bool = True) -> None:
        if slot:
            self._slots.release()
        conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


class _NothingBack(Exception):
    """The connection failed before any byte of the answer arrived."""
