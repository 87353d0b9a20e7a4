"""Prometheus collectors for the machinery, under client-go / controller-runtime names.

One :class:`MachineryMetrics` owns every collector of one ``CollectorRegistry``
(prometheus-client refuses to register a name twice, so create it once per
registry; :func:`default_metrics` is the process-wide one on the global
``REGISTRY``). Queues and controllers get small per-name recorders from it.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

Clock = Callable[[], float]

# controller-runtime's workqueue buckets: 10ns .. 1000s, one per decade.
WORKQUEUE_DURATION_BUCKETS: Final = tuple(10.0**e for e in range(-8, 4))
# controller-runtime's reconcile_time_seconds buckets.
RECONCILE_TIME_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
    0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
    15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
)  # fmt: skip
# client-go (component-base) rest_client_request_duration_seconds buckets.
REST_LATENCY_BUCKETS: Final = (
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
)  # fmt: skip

RECONCILE_RESULTS: Final = ("success", "error", "requeue", "requeue_after")
ERROR_CODE: Final = "<error>"  # client-go's code label when no HTTP status was received


class QueueMetricsRecorder:
    """What a work queue reports; this base class records nothing.

    Call protocol (client-go ``queueMetrics``): ``add`` when a key becomes
    dirty, ``get`` when it is handed to a worker, ``done`` when the worker
    finishes, ``retry`` on every delayed re-add.
    """

    def add(self, item: Hashable) -> None:
        return None

    def get(self, item: Hashable) -> None:
        return None

    def done(self, item: Hashable) -> None:
        return None

    def retry(self) -> None:
        return None


class QueueMetrics(QueueMetricsRecorder):
    """Recorder for one named queue.

    Invariants: ``depth`` rises on ``add`` and falls on ``get`` (so it counts
    dirty keys, including those re-added while being processed); a key's queue
    latency runs from its first ``add`` to ``get``, its work duration from
    ``get`` to ``done``; the in-flight gauges are computed at scrape time from
    the start times of keys between ``get`` and ``done``.
    """

    def __init__(self, name: str, owner: MachineryMetrics) -> None:
        self.name = name
        self._clock = owner.clock
        self._depth = owner.workqueue_depth.labels(name)
        self._adds = owner.workqueue_adds.labels(name)
        self._latency = owner.workqueue_queue_duration.labels(name)
        self._work = owner.workqueue_work_duration.labels(name)
        self._retries = owner.workqueue_retries.labels(name)
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}

    def add(self, item: Hashable) -> None:
        self._adds.inc()
        self._depth.inc()
        self._added_at.setdefault(item, self._clock())

    def get(self, item: Hashable) -> None:
        self._depth.dec()
        now = self._clock()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._latency.observe(now - added)
        self._started_at[item] = now

    def done(self, item: Hashable) -> None:
        started = self._started_at.pop(item, None)
        if started is not None:
            self._work.observe(self._clock() - started)

    def retry(self) -> None:
        self._retries.inc()

    def unfinished_work_seconds(self) -> float:
        now = self._clock()
        return sum(now - t for t in self._started_at.values())

    def longest_running_processor_seconds(self) -> float:
        now = self._clock()
        return max((now - t for t in self._started_at.values()), default=0.0)


class ControllerMetricsRecorder:
    """What a controller reports; this base class records nothing."""

    def set_max_concurrent_reconciles(self, n: int) -> None:
        return None

    def worker_active(self, delta: int) -> None:
        return None

    def reconcile_finished(self, result: str, seconds: float) -> None:
        return None

    def reconcile_error(self, *, terminal: bool) -> None:
        return None


class ControllerMetrics(ControllerMetricsRecorder):
    """Recorder for one named controller (controller-runtime ``controller_runtime_*``).

    Invariants: every ``result`` label of ``reconcile_total`` and the error
    counters exist (at 0) from construction, as controller-runtime does, so
    ``rate()`` works from the first scrape; ``result`` is one of
    :data:`RECONCILE_RESULTS`.
    """

    def __init__(self, name: str, owner: MachineryMetrics) -> None:
        self.name = name
        self._clock = owner.clock
        self._total = {r: owner.reconcile_total.labels(name, r) for r in RECONCILE_RESULTS}
        self._errors = owner.reconcile_errors.labels(name)
        self._terminal = owner.terminal_reconcile_errors.labels(name)
        self._time = owner.reconcile_time.labels(name)
        self._active = owner.active_workers.labels(name)
        self._max = owner.max_concurrent_reconciles.labels(name)

    def set_max_concurrent_reconciles(self, n: int) -> None:
        self._max.set(n)

    def worker_active(self, delta: int) -> None:
        self._active.inc(delta)

    def reconcile_finished(self, result: str, seconds: float) -> None:
        self._total[result].inc()
        self._time.observe(seconds)

    def reconcile_error(self, *, terminal: bool) -> None:
        self._errors.inc()
        if terminal:
            self._terminal.inc()


class ReflectorMetricsRecorder:
    """What a reflector reports; this base class records nothing."""

    def stalled_watch(self) -> None:
        return None


class ReflectorMetrics(ReflectorMetricsRecorder):
    """Recorder for one named reflector (client-go's ``reflector_*`` family, ``name`` label).

    Invariant: its series exist (at 0) from construction, so ``rate()`` works from
    the first scrape.
    """

    def __init__(self, name: str, owner: MachineryMetrics) -> None:
        self.name = name
        self._stalled = owner.reflector_stalled_watches.labels(name)

    def stalled_watch(self) -> None:
        self._stalled.inc()


class MachineryMetrics:
    """Every collector of the machinery, registered on one registry.

    Invariants: constructing it registers each metric name exactly once on
    ``registry`` (a second instance on the same registry raises
    ``ValueError``); recorders handed out for the same name share series.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.clock = clock
        reg = self.registry

        self.workqueue_depth = Gauge(
            "workqueue_depth", "Current depth of workqueue", ["name"], registry=reg
        )
        self.workqueue_adds = Counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue", ["name"],
            registry=reg,
        )  # fmt: skip
        self.workqueue_queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name"], buckets=WORKQUEUE_DURATION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.workqueue_work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            ["name"], buckets=WORKQUEUE_DURATION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.workqueue_retries = Counter(
            "workqueue_retries_total", "Total number of retries handled by workqueue", ["name"],
            registry=reg,
        )  # fmt: skip
        self._queues: weakref.WeakSet[QueueMetrics] = weakref.WeakSet()
        reg.register(_InFlightCollector(self._queues))

        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller", ["controller", "result"],
            registry=reg,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller", ["controller"],
            registry=reg,
        )  # fmt: skip
        self.terminal_reconcile_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller", ["controller"],
            registry=reg,
        )  # fmt: skip
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller", ["controller"],
            buckets=RECONCILE_TIME_BUCKETS, registry=reg,
        )  # fmt: skip
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller", ["controller"], registry=reg,
        )  # fmt: skip
        self.max_concurrent_reconciles = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller", ["controller"],
            registry=reg,
        )  # fmt: skip

        self.rest_requests = Counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"], registry=reg,
        )  # fmt: skip
        self.rest_request_duration = Histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb, and host.",
            ["verb", "host"], buckets=REST_LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip

        self.rest_rate_limiter_duration = Histogram(
            "rest_client_rate_limiter_duration_seconds",
            "Client side rate limiter latency in seconds. Broken down by verb, and host.",
            ["verb", "host"], buckets=REST_LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip

        # Beside client-go's (since removed) reflector_short_watches_total.
        self.reflector_stalled_watches = Counter(
            "reflector_stalled_watches_total",
            "Total number of watches dropped because nothing, not even a bookmark, "
            "arrived for the stall timeout", ["name"], registry=reg,
        )  # fmt: skip

    def queue(self, name: str) -> QueueMetrics:
        """A recorder for the queue called ``name``."""
        recorder = QueueMetrics(name, self)
        self._queues.add(recorder)
        return recorder

    def controller(self, name: str) -> ControllerMetrics:
        """A recorder for the controller called ``name``."""
        return ControllerMetrics(name, self)

    def reflector(self, name: str) -> ReflectorMetrics:
        """A recorder for the reflector called ``name``."""
        return ReflectorMetrics(name, self)

    def observe_request(self, verb: str, host: str, code: str, seconds: float) -> None:
        """Count one HTTP request to the API server (client-go ``rest_client_*``)."""
        self.rest_requests.labels(code, verb, host).inc()
        self.rest_request_duration.labels(verb, host).observe(seconds)


class _InFlightCollector:
    """Computes the in-flight work gauges at scrape time, so no ticker task is needed."""

    def __init__(self, queues: weakref.WeakSet[QueueMetrics]) -> None:
        self._queues = queues

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        unfinished, longest = self._families()
        totals: dict[str, float] = {}
        longest_by_name: dict[str, float] = {}
        # Queues sharing a name share series: in-flight work adds up, the longest wins.
        for q in list(self._queues):
            totals[q.name] = totals.get(q.name, 0.0) + q.unfinished_work_seconds()
            longest_by_name[q.name] = max(
                longest_by_name.get(q.name, 0.0), q.longest_running_processor_seconds()
            )
        for name, value in sorted(totals.items()):
            unfinished.add_metric([name], value)
            longest.add_metric([name], longest_by_name[name])
        return [unfinished, longest]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't "
                "been observed by work_duration. Large values indicate stuck threads.",
                labels=["name"],
            ),
            GaugeMetricFamily(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                labels=["name"],
            ),
        )


@functools.cache
def default_metrics() -> MachineryMetrics:
    """The process-wide metrics on prometheus-client's global ``REGISTRY``."""
    return MachineryMetrics()


def _status_of(err: BaseException) -> str:
    # Our ApiException carries ``status``;
    # ApiException uses 0 for "never got a response".
    status = getattr(err, "status", None)
    if isinstance(status, int) and status > 0:
        return str(status)
    return ERROR_CODE


def instrument_api_client(api_client: Any, metrics: MachineryMetrics) -> Any:
    """Count every HTTP request ``api_client`` makes, by verb and status code.

    Wraps the instance's ``request`` coroutine, through which every call
    (including watches) goes. Failures without a
    response are counted with code ``<error>``; a cancelled request is not
    counted (it never completed). Idempotent; returns ``api_client``.
    """
    if getattr(api_client, "_aim_metrics_instrumented", False):
        return api_client
    original = api_client.request
    clock = metrics.clock

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        verb = method.upper()
        host = urlsplit(url).netloc
        start = clock()
        try:
            response = await original(method, url, *args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            metrics.observe_request(verb, host, _status_of(err), clock() - start)
            raise
        metrics.observe_request(verb, host, str(response.status), clock() - start)
        return response

    api_client.request = request
    api_client._aim_metrics_instrumented = True
    return api_client
