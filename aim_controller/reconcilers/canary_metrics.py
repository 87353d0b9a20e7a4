"""The metric analysis of canaries (operator flag ``--canary-prometheus-url``): the
canary's error rate and p95 latency against the stable pods', over the canary's
``duration``, from the Prometheus that scrapes the engines.

Series (the engines' own metrics, scraped through the endpoint's ServiceMonitor, so
with the Prometheus Operator's ``namespace`` and ``pod`` target labels):

* error rate: ``http_requests_total`` (the OpenAI API server's requests, by ``status``
  class ``2xx`` ... ``5xx``): the share of ``5xx``;
* latency: ``histogram_quantile(0.95, ...)`` of ``vllm:e2e_request_latency_seconds``.

The canary's pods are ``<name>-canary-<hash>-<suffix>``, the stable's
``<name>-<hash>-<suffix>`` (the generated suffixes never contain "canary"'s vowels,
so the stable regex never matches a canary pod).

:func:`judge` is the pure decision; :class:`CanaryAnalyzer` is the I/O: a loop that
queries Prometheus for the canaries the reconciles registered (never from a
reconcile itself, which reads only caches), keeps each one's verdict in memory and
enqueues the endpoint when its verdict changes. No verdict (not queried yet, or
Prometheus unreachable) holds a canary at the end of its analysis: it is not
promoted on evidence that was not looked at.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from aim_controller.builders.canary import canary_name
from aim_controller.builders.promql import pod_name_regex
from aim_controller.machinery.httpclient import HttpClient, Timeout

from .endpoint_canary import MetricVerdict

__all__ = [
    "DEFAULT_MAX_ERROR_RATE_INCREASE",
    "DEFAULT_MAX_LATENCY_RATIO",
    "CanaryAnalyzer",
    "MetricSample",
    "Thresholds",
    "judge",
    "queries",
]

log = structlog.get_logger(__name__)

DEFAULT_MAX_ERROR_RATE_INCREASE = 0.01
"""The canary's 5xx share may exceed the stable's by at most this (1 point)."""
DEFAULT_MAX_LATENCY_RATIO = 1.2
"""The canary's p95 latency may be at most this times the stable's."""
MIN_WINDOW_SECONDS = 30
ANALYSIS_INTERVAL = 5.0


@dataclass(frozen=True)
class Thresholds:
    max_error_rate_increase: float = DEFAULT_MAX_ERROR_RATE_INCREASE
    max_latency_ratio: float = DEFAULT_MAX_LATENCY_RATIO


@dataclass(frozen=True)
class MetricSample:
    """One side's numbers over the window; None: no requests (no series, or NaN)."""

    error_rate: float | None
    p95_seconds: float | None


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(namespace: str, pods_regex: str, window_seconds: float) -> dict[str, str]:
    """The PromQL of one side's error rate and p95 latency."""
    sel = f'namespace="{_q(namespace)}",pod=~"{_q(pods_regex)}"'
    w = f"{max(math.ceil(window_seconds), MIN_WINDOW_SECONDS)}s"
    return {
        "error_rate": (f'sum(rate(http_requests_total{{{sel},status="5xx"}}[{w}])) / '
                       f"sum(rate(http_requests_total{{{sel}}}[{w}]))"),
        "p95": ("histogram_quantile(0.95, sum by (le) "
                f"(rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[{w}])))"),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def judge(canary: MetricSample, stable: MetricSample, t: Thresholds) -> MetricVerdict:
    """Failed when the canary's error rate exceeds the stable's by more than the
    allowance, or its p95 latency is more than the ratio times the stable's. A side
    without requests is not compared (said in the message)."""
    said: list[str] = []
    if canary.error_rate is not None:
        base = stable.error_rate or 0.0
        limit = base + t.max_error_rate_increase
        if canary.error_rate > limit:
            return MetricVerdict(True, f"error rate {_pct(canary.error_rate)} against the "
                                 f"stable's {_pct(base)} (at most {_pct(limit)})")
        said.append(f"error rate {_pct(canary.error_rate)} (stable {_pct(base)})")
    if canary.p95_seconds is not None and stable.p95_seconds is not None:
        limit = stable.p95_seconds * t.max_latency_ratio
        if canary.p95_seconds > limit:
            return MetricVerdict(True, f"p95 latency {canary.p95_seconds:.3g}s against the "
                                 f"stable's {stable.p95_seconds:.3g}s (at most "
                                 f"{t.max_latency_ratio:g}x: {limit:.3g}s)")
        said.append(f"p95 latency {canary.p95_seconds:.3g}s (stable "
                    f"{stable.p95_seconds:.3g}s)")
    if not said:
        return MetricVerdict(False, "no requests to compare in the window")
    return MetricVerdict(False, ", ".join(said) + " within the thresholds")


class CanaryAnalyzer:
    """Queries Prometheus for the registered canaries; single event loop.

    Invariant: ``verdict(key)`` is the last verdict of a canary registered with
    ``want`` and not ``forget``-ten since; ``enqueue(key)`` is called when it changes.
    """

    def __init__(self, url: str, enqueue: Callable[[str], None],
                 thresholds: Thresholds | None = None,
                 interval: float = ANALYSIS_INTERVAL) -> None:
        self.url = url.rstrip("/")
        self.thresholds = thresholds or Thresholds()
        self.interval = interval
        self._enqueue = enqueue
        self._wanted: dict[str, tuple[str, str, float]] = {}
        self._verdicts: dict[str, MetricVerdict] = {}

    def want(self, key: str, namespace: str, name: str, window_seconds: float) -> None:
        self._wanted[key] = (namespace, name, window_seconds)

    def forget(self, key: str) -> None:
        self._wanted.pop(key, None)
        self._verdicts.pop(key, None)

    def verdict(self, key: str) -> MetricVerdict | None:
        return self._verdicts.get(key)

    async def run(self) -> None:
        async with HttpClient(limit=4) as session:
            while True:
                for key, (ns, name, window) in list(self._wanted.items()):
                    try:
                        verdict = await self._analyze(session, ns, name, window)
                    except (OSError, TimeoutError, ValueError, KeyError) as err:
                        log.info("canary metric analysis failed", key=key, error=str(err))
                        continue
                    if key in self._wanted and self._verdicts.get(key) != verdict:
                        self._verdicts[key] = verdict
                        log.info("canary metric verdict", key=key, failed=verdict.failed,
                                 message=verdict.message)
                        self._enqueue(key)
                await asyncio.sleep(self.interval)

    async def _analyze(self, session: HttpClient, ns: str, name: str,
                       window: float) -> MetricVerdict:
        sides = []
        for regex in (pod_name_regex(canary_name(name)), pod_name_regex(name)):
            q = queries(ns, regex, window)
            sides.append(MetricSample(await self._scalar(session, q["error_rate"]),
                                      await self._scalar(session, q["p95"])))
        return judge(sides[0], sides[1], self.thresholds)

    async def _scalar(self, session: HttpClient, promql: str) -> float | None:
        async with await session.request("GET", f"{self.url}/api/v1/query",
                                          params={"query": promql},
                                          timeout=Timeout(total=10)) as resp:
            data = await resp.read()
        if resp.status != 200:
            raise ValueError(f"Prometheus answered {resp.status}: {data[:200]!r}")
        body = json.loads(data)
        if body.get("status") != "success":
            raise ValueError(str(body.get("error") or body))
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value
