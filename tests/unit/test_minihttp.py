"""The small HTTP/1.1 server behind /metrics and the probes, spoken to over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aim_controller.machinery.minihttp import MiniHTTPServer, Request, Response, Router


@pytest.fixture
async def server() -> AsyncIterator[MiniHTTPServer]:
    router = Router()

    async def hello(request: Request) -> Response:
        verbose = "verbose" in request.query
        return Response.text(f"hello {','.join(request.query.get('x', []))} {verbose}")

    async def named(request: Request) -> Response:
        return Response.text(f"name={request.tail}")

    async def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    router.add_get("/hello", hello)
    router.add_get_prefix("/named", named)
    router.add_get("/broken", broken)
    srv = MiniHTTPServer(router, idle_timeout=2)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.stop()


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> tuple[
        int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    body = b"" if head_only else await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_keep_alive_serves_several_requests_on_one_connection(
        server: MiniHTTPServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /hello?x=1&x=2&verbose HTTP/1.1\r\nHost: a\r\n\r\n")
    writer.write(b"GET /named/informers HTTP/1.1\r\nHost: a\r\n\r\n")
    assert await read_response(reader) == (200, {
        "content-type": "text/plain; charset=utf-8", "content-length": "14",
        "connection": "keep-alive", "x-content-type-options": "nosniff"}, b"hello 1,2 True")
    status, headers, body = await read_response(reader)
    assert (status, body) == (200, b"name=informers")
    writer.write(b"HEAD /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
    status, headers, body = await read_response(reader, head_only=True)
    assert status == 200 and headers["connection"] == "close"
    assert int(headers["content-length"]) > 0
    assert await reader.read() == b""  # closed after the head, no body sent
    writer.close()


async def test_query_and_headers_reach_the_handler(server: MiniHTTPServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /hello?x=a%20b HTTP/1.0\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert (status, body) == (200, b"hello a b False")
    assert headers["connection"] == "close"  # HTTP/1.0 without keep-alive
    assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /nope HTTP/1.1\r\n\r\n", 404),
    (b"GET /named/a/b HTTP/1.1\r\n\r\n", 404),  # a prefix takes one segment only
    (b"POST /hello HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 405),
    (b"GET /broken HTTP/1.1\r\n\r\n", 500),
])
async def test_errors_answer_and_keep_the_connection(
        server: MiniHTTPServer, request_bytes: bytes, status: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_bytes)
    got, headers, _ = await read_response(reader)
    assert got == status
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    writer.write(b"GET /hello HTTP/1.1\r\n\r\n")  # still usable
    assert (await read_response(reader))[0] == 200
    writer.close()


@pytest.mark.parametrize("request_bytes", [
    b"NONSENSE\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nbad header line\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nContent-Length: many\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
])
async def test_requests_it_does_not_understand_get_400_and_a_close(
        server: MiniHTTPServer, request_bytes: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_bytes)
    status, headers, _ = await read_response(reader)
    assert status == 400 and headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()


async def test_idle_connections_are_closed_and_stop_closes_open_ones(
        server: MiniHTTPServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # Nothing sent: the idle timeout (2 s here) ends it.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /hello HTTP/1.1\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    assert server.port is None
    writer.close()
