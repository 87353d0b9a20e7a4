"""machinery.httpclient against a raw asyncio server that answers byte for byte as told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.machinery.httpclient import HttpClient, Timeout, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = Timeout(total=5, sock_connect=5)


class Server:
    """Counts connections and requests; ``handler`` answers each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self.handler(reader, writer)
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request (head and Content-Length body); None at EOF."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    srv = Server(handler)
    srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.server.close()


def keep_alive_answers(answers: list[bytes], srv_box: list[Server]) -> Handler:
    """Answers requests on one connection in turn with the given raw responses."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await read_request(reader)) is not None:
            srv_box[0].requests.append(req)
            writer.write(answers.pop(0))
            await writer.drain()

    return handler


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def chunked(*chunks: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for c in chunks:
        out += b"%x\r\n%s\r\n" % (len(c), c)
    return out + b"0\r\n\r\n"


async def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    box: list[Server] = []
    async with serving(keep_alive_answers([ok(b"one"), chunked(b"tw", b"o"), ok(b"")], box)) as s:
        box.append(s)
        async with HttpClient() as http:
            for want in (b"one", b"two", b""):
                async with await http.request("GET", s.url + "/x?a=%20b", timeout=T) as r:
                    assert r.status == 200
                    assert await r.read() == want
        assert s.connections == 1
        assert s.requests[0].startswith(b"GET /x?a=%20b HTTP/1.1\r\n")


async def test_request_carries_body_length_and_headers() -> None:
    box: list[Server] = []
    async with serving(keep_alive_answers([ok(b"{}")], box)) as s:
        box.append(s)
        async with HttpClient() as http:
            r = await http.request("PATCH", s.url + "/p", data=b'{"a":1}', timeout=T,
                                   headers={"Content-Type": "application/apply-patch+yaml"})
            assert await r.read() == b"{}"
        req = s.requests[0]
        assert b"Content-Length: 7\r\n" in req and req.endswith(b'\r\n\r\n{"a":1}')
        assert b"Content-Type: application/apply-patch+yaml\r\n" in req
        assert b"Host: 127.0.0.1:" in req


async def test_chunks_stream_as_they_come() -> None:
    """A watch: each chunk reaches the reader before the stream ends."""
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    async with serving(handler) as s, HttpClient() as http:
        r = await http.request("GET", s.url + "/w", timeout=T)
        chunks = r.iter_chunks()
        assert await anext(chunks) == b"first"
        release.set()
        assert [c async for c in chunks] == [b"second"]
        r.release()


async def test_a_body_to_the_end_of_the_connection_is_read_and_not_pooled() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with serving(handler) as s, HttpClient() as http:
        for _ in range(2):
            async with await http.request("GET", s.url, timeout=T) as r:
                assert await r.read() == b"all of it"
        assert s.connections == 2


async def test_an_unread_body_closes_its_connection() -> None:
    box: list[Server] = []
    async with serving(keep_alive_answers([ok(b"x" * 1000), ok(b"y")], box)) as s:
        box.append(s)
        async with HttpClient() as http:
            (await http.request("GET", s.url, timeout=T)).release()  # body left unread
            async with await http.request("GET", s.url, timeout=T) as r:
                assert await r.read() == b"y"
        assert s.connections == 2  # the second request did not read the first's body


async def test_a_stale_pooled_connection_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request, then closes as the next one arrives (an idle timeout).
        await read_request(reader)
        writer.write(ok(b"a"))
        await writer.drain()
        await reader.read(1)

    async with serving(handler) as s, HttpClient() as http:
        assert await (await http.request("GET", s.url, timeout=T)).read() == b"a"
        assert await (await http.request("GET", s.url, timeout=T)).read() == b"a"
        assert s.connections == 2


async def test_a_fresh_connection_that_answers_nothing_is_a_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serving(handler) as s, HttpClient() as http:
        with pytest.raises(TransportError):
            await http.request("GET", s.url, timeout=T)


async def test_a_body_cut_short_is_a_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()

    async with serving(handler) as s, HttpClient() as http:
        r = await http.request("GET", s.url, timeout=T)
        with pytest.raises(TransportError):
            await r.read()


async def test_the_total_timeout_covers_the_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with serving(handler) as s, HttpClient() as http:
        r = await http.request("GET", s.url, timeout=Timeout(total=0.3))
        with pytest.raises(TimeoutError):
            await r.read()


async def test_refused_connection_is_a_transport_error_and_an_oserror() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    async with HttpClient() as http:
        with pytest.raises(TransportError) as err:
            await http.request("GET", f"http://127.0.0.1:{port}/", timeout=T)
        assert isinstance(err.value, OSError)


async def test_concurrent_requests_never_exceed_the_limit() -> None:
    active = peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        while await read_request(reader) is not None:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            writer.write(ok(b"k"))
            await writer.drain()

    async with serving(handler) as s, HttpClient(limit=3) as http:

        async def one() -> bytes:
            async with await http.request("GET", s.url, timeout=T) as r:
                return await r.read()

        assert await asyncio.gather(*(one() for _ in range(12))) == [b"k"] * 12
        assert peak <= 3
        assert s.connections <= 3


async def test_headers_are_matched_without_case() -> None:
    answer = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
    box: list[Server] = []
    async with serving(keep_alive_answers([answer], box)) as s:
        box.append(s)
        async with HttpClient() as http, await http.request("GET", s.url, timeout=T) as r:
            assert (r.status, r.reason) == (429, "Too Many Requests")
            assert r.headers["retry-after"] == r.headers.get("Retry-After") == "2"
            assert await r.read() == b""


async def test_a_header_value_with_a_line_break_is_refused() -> None:
    async with HttpClient() as http:
        with pytest.raises(ValueError):
            await http.request("GET", "http://127.0.0.1:1/", headers={"X": "a\r\nB: c"},
                               timeout=T)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=0, max_size=8),
       st.integers(min_value=1, max_value=50))
async def test_any_chunking_reads_back_the_same_bytes(chunks: list[bytes], split: int) -> None:
    """Chunk boundaries and TCP segments that split them anywhere lose nothing."""
    raw = chunked(*chunks)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(0, len(raw), split):
            writer.write(raw[i:i + split])
            await writer.drain()

    async with (serving(handler) as s, HttpClient() as http,
                await http.request("GET", s.url, timeout=T) as r):
        assert await r.read() == b"".join(chunks)


async def test_expired_idle_connections_of_any_key_are_closed() -> None:
    box: list[Server] = []
    async with serving(keep_alive_answers([ok(b"1"), ok(b"2")], box)) as s:
        box.append(s)
        async with HttpClient(keepalive_timeout=0.05) as http:
            assert await (await http.request("GET", s.url, timeout=T)).read() == b"1"
            (conn,) = http._idle[next(iter(http._idle))]
            await asyncio.sleep(0.1)
            other = s.url.replace("127.0.0.1", "localhost")  # another pool key
            assert await (await http.request("GET", other, timeout=T)).read() == b"2"
            assert conn.writer.is_closing()
            assert all(c is not conn for conns in http._idle.values() for c in conns)
