"""The operator's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

Bind addresses are controller-runtime style: ``"host:port"``, ``":port"``
(all interfaces), ``"[::1]:port"``; ``"0"`` (or empty) disables the server and
port ``0`` picks a free port (tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from aim_controller.machinery.health import HealthCheck, HealthChecks
from aim_controller.machinery.minihttp import MiniHTTPServer, Request, Response, Router


@dataclass(frozen=True)
class BindAddress:
    """A parsed bind address; ``port`` 0 means any free port."""

    host: str | None  # None: all interfaces
    port: int


def parse_bind_address(address: str) -> BindAddress | None:
    """Parse ``host:port`` / ``:port``; ``None`` when the address disables serving."""
    address = address.strip()
    if address in ("", "0"):
        return None
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"bind address {address!r} is not of the form host:port or :port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"bind address {address!r}: port out of range")
    host = host.removeprefix("[").removesuffix("]")
    return BindAddress(host or None, port)


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[Request], Awaitable[Response]]:
    """A handler exposing ``registry`` (text format, or OpenMetrics if asked)."""

    async def handle(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.header("Accept"))
        # Verbatim: the prometheus content type carries its own parameters.
        return Response(encoder(registry), content_type=content_type)

    return handle


class HTTPServer:
    """One HTTP server on one bind address.

    Invariants: a disabled server (address ``"0"``) accepts routes but never
    listens and has ``port is None``; ``port`` is the actually bound port once
    started; ``stop`` is idempotent.
    """

    def __init__(self, bind_address: str) -> None:
        self.bind = parse_bind_address(bind_address)
        self.router = Router()
        self._server: MiniHTTPServer | None = None
        self.port: int | None = None

    @property
    def enabled(self) -> bool:
        return self.bind is not None

    async def start(self) -> None:
        if self.bind is None or self._server is not None:
            return
        server = MiniHTTPServer(self.router)
        await server.start(self.bind.host, self.bind.port)
        self._server = server
        self.port = server.port

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()


class ServingEndpoints:
    """``/metrics`` and the health probes, on one server or two (controller-runtime layout).

    Invariants: when both bind addresses are equal one server serves all three
    paths; a disabled address serves nothing; checks may be added before or
    after ``start``.
    """

    def __init__(
        self,
        *,
        metrics_bind_address: str = ":8080",
        health_probe_bind_address: str = ":8081",
        registry: CollectorRegistry | None = None,
        check_timeout: float = 10.0,
    ) -> None:
        self.healthz = HealthChecks("healthz", timeout=check_timeout)
        self.readyz = HealthChecks("readyz", timeout=check_timeout)
        self.metrics_server = HTTPServer(metrics_bind_address)
        health_bind = parse_bind_address(health_probe_bind_address)
        # Port 0 means "any free port", so two ":0" addresses are two servers.
        same = (
            health_bind is not None
            and health_bind.port != 0
            and (health_bind == self.metrics_server.bind)
        )
        self.health_server = self.metrics_server if same else HTTPServer(health_probe_bind_address)
        self.metrics_server.router.add_get(
            "/metrics", metrics_handler(REGISTRY if registry is None else registry)
        )
        self.healthz.add_routes(self.health_server.router)
        self.readyz.add_routes(self.health_server.router)

    def add_healthz_check(self, name: str, check: HealthCheck) -> None:
        self.healthz.add_check(name, check)

    def add_readyz_check(self, name: str, check: HealthCheck) -> None:
        self.readyz.add_check(name, check)

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port

    @property
    def health_port(self) -> int | None:
        return self.health_server.port

    async def start(self) -> None:
        await self.metrics_server.start()
        try:
            await self.health_server.start()
        except BaseException:
            await self.metrics_server.stop()
            raise

    async def stop(self) -> None:
        await self.health_server.stop()
        await self.metrics_server.stop()
