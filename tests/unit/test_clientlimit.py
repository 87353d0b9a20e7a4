"""Client-side QPS/burst throttling of the API client."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from aim_controller.machinery.clientlimit import throttle_api_client
from aim_controller.machinery.metrics import MachineryMetrics


async def test_requests_beyond_the_burst_wait_for_tokens() -> None:
    sent: list[str] = []

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> str:
        sent.append(method)
        return "ok"

    client = SimpleNamespace(request=request)
    metrics = MachineryMetrics(CollectorRegistry())
    throttle_api_client(client, qps=50.0, burst=2, metrics=metrics)
    throttle_api_client(client, qps=50.0, burst=2, metrics=metrics)  # idempotent
    for _ in range(4):
        assert await client.request("GET", "https://h:1/api") == "ok"
    assert sent == ["GET"] * 4
    samples = {s.name: s.value for m in metrics.registry.collect()
               if m.name == "rest_client_rate_limiter_duration_seconds" for s in m.samples
               if not s.labels.get("le")}
    assert samples["rest_client_rate_limiter_duration_seconds_count"] == 4
    # Two went through at once; the later ones had to wait for refilled tokens.
    assert samples["rest_client_rate_limiter_duration_seconds_sum"] > 0.015
