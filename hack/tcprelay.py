"""A TCP relay to the API server that a test or a chaos scenario can cut, restore or
pause: the faults of a network or a proxy, without touching the API server."""

from __future__ import annotations

import asyncio
import contextlib

from localcluster import free_port


class Relay:
    """A TCP relay to the API server that the test can cut and restore, or pause.

    TLS passes through untouched: cutting it breaks the connections of a client
    pointed at :attr:`url` while the test keeps talking to the API server directly.
    Pausing it leaves those connections open but silent (a stalled peer or proxy).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: set[asyncio.Event] = set()  # one per live connection: set = forwarding
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        self._writers |= {w, uw}
        flowing = asyncio.Event()
        flowing.set()
        self._flowing.add(flowing)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    await flowing.wait()  # paused: hold the bytes, keep the socket open
                    dst.write(data)
                    await dst.drain()
            dst.close()  # either side closing closes the other, paused or not

        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        self._writers -= {w, uw}
        self._flowing.discard(flowing)

    def pause(self) -> int:
        """Stops forwarding on every open connection, in both directions, leaving them
        open; connections made later forward normally. Returns how many it paused."""
        for f in self._flowing:
            f.clear()
        return len(self._flowing)

    def resume(self) -> None:
        """Paused connections forward again, the bytes they held first."""
        for f in self._flowing:
            f.set()

    def drop_connections(self) -> None:
        """Resets every relayed connection (the listener stays up)."""
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def cut(self) -> None:
        """A partition: no listener (connection refused) and no live connection."""
        assert self._server is not None
        self._server.close()
        self.drop_connections()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()
