"""/metrics, /healthz, /readyz over real HTTP on a free port; REST client instrumentation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aim_controller.machinery.controller import Controller
from aim_controller.machinery.health import ping
from aim_controller.machinery.httpclient import Timeout, TransportError
from aim_controller.machinery.httpserver import BindAddress, ServingEndpoints, parse_bind_address
from aim_controller.machinery.kubeclient import ApiException, ClientConfig, KubeClient
from aim_controller.machinery.metrics import MachineryMetrics, instrument_api_client
from aim_controller.machinery.workqueue import RateLimitingQueue


async def fetch(port: int | None, path: str) -> tuple[int, str]:
    assert port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


@pytest.fixture
async def endpoints() -> AsyncIterator[ServingEndpoints]:
    server = ServingEndpoints(
        metrics_bind_address="127.0.0.1:0",
        health_probe_bind_address="127.0.0.1:0",
        registry=CollectorRegistry(),
    )
    await server.start()
    yield server
    await server.stop()


def test_parse_bind_address() -> None:
    assert parse_bind_address(":8080") == BindAddress(None, 8080)
    assert parse_bind_address("127.0.0.1:9090") == BindAddress("127.0.0.1", 9090)
    assert parse_bind_address("[::1]:8443") == BindAddress("::1", 8443)
    assert parse_bind_address("0") is None
    assert parse_bind_address("") is None
    for bad in ["8080", "host:", "host:http", ":70000"]:
        with pytest.raises(ValueError):
            parse_bind_address(bad)


def test_equal_addresses_share_one_server_and_zero_disables() -> None:
    shared = ServingEndpoints(metrics_bind_address=":8080", health_probe_bind_address=":8080")
    assert shared.health_server is shared.metrics_server
    split = ServingEndpoints(metrics_bind_address=":0", health_probe_bind_address=":0")
    assert split.health_server is not split.metrics_server
    off = ServingEndpoints(metrics_bind_address="0", health_probe_bind_address=":8081")
    assert not off.metrics_server.enabled and off.health_server.enabled


async def test_disabled_server_never_listens() -> None:
    off = ServingEndpoints(metrics_bind_address="0", health_probe_bind_address="0")
    await off.start()
    assert off.metrics_port is None and off.health_port is None
    await off.stop()


async def test_metrics_endpoint_exposes_machinery_metrics_after_work() -> None:
    registry = CollectorRegistry()
    metrics = MachineryMetrics(registry)
    server = ServingEndpoints(
        metrics_bind_address="127.0.0.1:0", health_probe_bind_address="0", registry=registry
    )
    await server.start()
    try:
        queue: RateLimitingQueue[str] = RateLimitingQueue("widgets", metrics=metrics)
        done = asyncio.Event()

        async def reconcile(key: str) -> None:
            if key == "ns/last":
                done.set()

        controller = Controller(
            "widgets", reconcile, queue, max_concurrent_reconciles=2, metrics=metrics
        )
        run = asyncio.create_task(controller.run())
        for key in ["ns/a", "ns/b", "ns/last"]:
            queue.add(key)
        await asyncio.wait_for(done.wait(), timeout=10)
        await controller.stop()
        await run

        status, body = await fetch(server.metrics_port, "/metrics")
    finally:
        await server.stop()
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("workqueue_adds_total", (("name", "widgets"),))] == 3
    assert samples[("workqueue_depth", (("name", "widgets"),))] == 0
    assert samples[("workqueue_queue_duration_seconds_count", (("name", "widgets"),))] == 3
    assert samples[("workqueue_work_duration_seconds_count", (("name", "widgets"),))] == 3
    assert ("workqueue_retries_total", (("name", "widgets"),)) in samples
    assert samples[("workqueue_unfinished_work_seconds", (("name", "widgets"),))] == 0
    assert ("workqueue_longest_running_processor_seconds", (("name", "widgets"),)) in samples
    ok = (("controller", "widgets"), ("result", "success"))
    assert samples[("controller_runtime_reconcile_total", ok)] == 3
    for result in ["error", "requeue", "requeue_after"]:
        labels = (("controller", "widgets"), ("result", result))
        assert samples[("controller_runtime_reconcile_total", labels)] == 0
    cw = (("controller", "widgets"),)
    assert samples[("controller_runtime_reconcile_errors_total", cw)] == 0
    assert samples[("controller_runtime_reconcile_time_seconds_count", cw)] == 3
    assert samples[("controller_runtime_active_workers", cw)] == 0
    assert samples[("controller_runtime_max_concurrent_reconciles", cw)] == 2


async def test_healthz_without_checks_is_ok(endpoints: ServingEndpoints) -> None:
    assert await fetch(endpoints.health_port, "/healthz") == (200, "ok")
    assert await fetch(endpoints.health_port, "/readyz") == (200, "ok")


async def test_readyz_reports_failing_checks_like_kube_apiserver(
    endpoints: ServingEndpoints,
) -> None:
    synced = False

    async def informers() -> bool:
        return synced

    def broken() -> None:
        raise RuntimeError("secret detail")

    endpoints.add_healthz_check("ping", ping)
    endpoints.add_readyz_check("ping", ping)
    endpoints.add_readyz_check("informers", informers)
    port = endpoints.health_port

    status, body = await fetch(port, "/readyz")
    assert status == 500
    assert body.splitlines() == [
        "[+]ping ok",
        "[-]informers failed: reason withheld",
        "readyz check failed",
    ]
    assert await fetch(port, "/readyz?exclude=informers") == (200, "ok")
    status, body = await fetch(port, "/readyz?verbose&exclude=informers")
    assert (status, body.splitlines()) == (
        200,
        ["[+]ping ok", "[+]informers excluded: ok", "readyz check passed"],
    )
    assert (await fetch(port, "/readyz/informers"))[0] == 500
    assert await fetch(port, "/healthz") == (200, "ok")

    synced = True
    assert await fetch(port, "/readyz") == (200, "ok")
    status, body = await fetch(port, "/readyz?verbose")
    assert (status, body.splitlines()) == (
        200,
        ["[+]ping ok", "[+]informers ok", "readyz check passed"],
    )
    assert await fetch(port, "/readyz/informers") == (200, "ok")
    assert (await fetch(port, "/readyz/unknown"))[0] == 404

    endpoints.add_healthz_check("broken", broken)
    status, body = await fetch(port, "/healthz")
    assert status == 500
    assert "[-]broken failed: reason withheld" in body
    assert "secret detail" not in body
    assert body.rstrip().endswith("healthz check failed")


def test_duplicate_or_bad_check_names_are_rejected() -> None:
    server = ServingEndpoints(metrics_bind_address="0", health_probe_bind_address="0")
    server.add_readyz_check("ping", ping)
    with pytest.raises(ValueError):
        server.add_readyz_check("ping", ping)
    with pytest.raises(ValueError):
        server.add_healthz_check("a/b", ping)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_rest_client_requests_are_counted_by_verb_and_code(
    endpoints: ServingEndpoints,
) -> None:
    registry = CollectorRegistry()
    metrics = MachineryMetrics(registry)
    host = f"127.0.0.1:{endpoints.health_port}"
    timeout = Timeout(total=30)
    async with KubeClient(ClientConfig(server=f"http://{host}")) as api:
        assert instrument_api_client(api, metrics) is api
        instrument_api_client(api, metrics)  # idempotent: still counted once
        (await api.call("GET", "/healthz", request_timeout=timeout)).release()
        for _ in range(2):
            with pytest.raises(ApiException) as err:
                await api.call("GET", "/nope", request_timeout=timeout)
            assert err.value.status == 404
        (await api.call("HEAD", "/readyz", request_timeout=timeout)).release()
    dead_host = f"127.0.0.1:{closed_port()}"
    async with KubeClient(ClientConfig(server=f"http://{dead_host}")) as api:
        instrument_api_client(api, metrics)
        with pytest.raises(TransportError):
            await api.call("GET", "/healthz", request_timeout=timeout)

    def count(code: str, method: str, where: str = host) -> float | None:
        labels = {"code": code, "method": method, "host": where}
        return registry.get_sample_value("rest_client_requests_total", labels)

    assert count("200", "GET") == 1
    assert count("404", "GET") == 2
    assert count("200", "HEAD") == 1
    assert count("<error>", "GET", dead_host) == 1
    latency = registry.get_sample_value(
        "rest_client_request_duration_seconds_count", {"verb": "GET", "host": host}
    )
    assert latency == 3
