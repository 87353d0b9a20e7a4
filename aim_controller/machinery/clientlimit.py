"""Client-side request throttling (client-go's ``rest.Config`` QPS and Burst).

A token bucket in front of every request a ``KubeClient`` sends, so a burst of
reconciles (a thousand endpoints applied at once, a relist after an outage)
cannot flood the API server: requests beyond the burst wait for tokens that
refill at ``qps`` per second. Time spent waiting is observed as
``rest_client_rate_limiter_duration_seconds`` (client-go's name).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from .metrics import MachineryMetrics
from .ratelimiter import BucketRateLimiter


def throttle_api_client(
    api_client: Any, qps: float, burst: int, metrics: MachineryMetrics | None = None
) -> Any:
    """Wraps ``api_client``'s requests in a token bucket; idempotent; returns ``api_client``."""
    if getattr(api_client, "_aim_throttled", False):
        return api_client
    bucket = BucketRateLimiter(qps, burst)
    original = api_client.request

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        delay = bucket.when(None)
        if delay > 0:
            await asyncio.sleep(delay)
        if metrics is not None:
            metrics.rest_rate_limiter_duration.labels(
                method.upper(), urlsplit(url).netloc).observe(delay)
        return await original(method, url, *args, **kwargs)

    api_client.request = request
    api_client._aim_throttled = True
    return api_client
