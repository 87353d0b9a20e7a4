"""The entry point: flags -> kube client -> informers, controllers, serving -> run.

The process exits 0 on SIGTERM/SIGINT after draining its workers and releasing
the leader lease, and non-zero when it lost the lease (the Pod restarts and
campaigns again, so a half-stopped replica never overlaps a new leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from prometheus_client import CollectorRegistry

from .builders.cache_objects import CacheJobSettings
from .builders.settings import DEFAULT_IMAGES, FIELD_MANAGER, OperatorSettings
from .logconfig import configure_logging
from .machinery import gctune
from .machinery.clientlimit import throttle_api_client
from .machinery.controller import Controller
from .machinery.events import EventRecorder
from .machinery.httpserver import ServingEndpoints
from .machinery.informer import InformerFactory
from .machinery.kubeclient import KubeClient, load_incluster_config, load_kubeconfig
from .machinery.manager import LeaderElectionConfig, Manager
from .machinery.metrics import MachineryMetrics, default_metrics, instrument_api_client
from .machinery.resource import EVENTS
from .machinery.writer import DEFAULT_FIELD_VALIDATION, ObjectWriter, RESTMapper
from .modelcache.cli import COMMANDS as CACHE_COMMANDS
from .modelcache.cli import main as cache_main
from .options import Options, parse
from .reconcilers import cache, endpoint, recipe_status
from .reconcilers.canary_metrics import Thresholds
from .reconcilers.context import ControllerContext

log = structlog.get_logger(__name__)

@dataclass
class App:
    manager: Manager
    api_client: KubeClient
    metrics: MachineryMetrics
    controllers: list[Controller]
    recorder: EventRecorder

    async def close(self) -> None:
        # Events still queued are worth a moment: they explain the last changes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.recorder.flush(), 5.0)
        await self.recorder.close()
        await self.api_client.close()


def kube_client(opts: Options) -> KubeClient:
    """From ``--kubeconfig`` (its current context), else the Pod's service account."""
    return KubeClient(load_kubeconfig(opts.kubeconfig) if opts.kubeconfig
                      else load_incluster_config())


def operator_settings(opts: Options) -> OperatorSettings:
    return OperatorSettings(
        images={**DEFAULT_IMAGES, **opts.backend_images},
        field_manager=FIELD_MANAGER,
        gpu_metrics_prometheus_url=opts.gpu_metrics_prometheus_url,
    )


async def build_app(
    opts: Options, *, registry: CollectorRegistry | None = None,
    only: Collection[str] | None = None,
    field_validation: str = DEFAULT_FIELD_VALIDATION,
) -> App:
    """Everything wired, nothing started. ``registry``: a private metrics registry
    (tests); ``only``: the names of the controllers to run (tests; default all);
    ``field_validation``: the writes' directive (the tests use ``Strict``, see
    machinery/writer.py)."""
    metrics = MachineryMetrics(registry) if registry is not None else default_metrics()
    # The throttle wraps the instrumentation, so request latencies exclude its wait.
    api = throttle_api_client(
        instrument_api_client(kube_client(opts), metrics),
        opts.kube_api_qps, opts.kube_api_burst, metrics)
    informers = InformerFactory(
        api, namespaces=opts.namespaces or None,
        resync_period=opts.resync_period if opts.resync_period > 0 else None,
        stall_timeout=opts.watch_stall_timeout,
        metrics=metrics,
    )
    # Each controller's builder maps the kinds it declares (optional ones once served);
    # Events are the recorder's.
    writer = ObjectWriter(api, RESTMapper([EVENTS]), FIELD_MANAGER,
                          field_validation=field_validation)
    ctx = ControllerContext(
        informers=informers,
        writer=writer,
        recorder=EventRecorder(writer, "aim-controller", opts.identity),
        metrics=metrics,
        settings=operator_settings(opts),
        operator_namespace=opts.operator_namespace,
        max_concurrent_reconciles=opts.max_concurrent_reconciles,
        unschedulable_grace=timedelta(seconds=opts.unschedulable_grace),
        cache_wait_timeout=timedelta(seconds=opts.cache_wait_timeout),
        canary_prometheus_url=opts.canary_prometheus_url,
        canary_thresholds=Thresholds(opts.canary_max_error_rate_increase,
                                     opts.canary_max_latency_ratio),
    )
    registrations: dict[str, Callable[[ControllerContext], Controller]] = {
        endpoint.CONTROLLER_NAME: endpoint.register,
        recipe_status.CONTROLLER_NAME: recipe_status.register,
        cache.CONTROLLER_NAME: functools.partial(
            cache.register, settings=CacheJobSettings(image=opts.operator_image),
            max_concurrent=opts.cache_max_concurrent_downloads),
    }
    controllers = [register(ctx) for name, register in registrations.items()
                   if only is None or name in only]
    serving = ServingEndpoints(
        metrics_bind_address=opts.metrics_bind_address,
        health_probe_bind_address=opts.health_probe_bind_address,
        registry=metrics.registry,
    )
    election = None
    if opts.leader_elect:
        election = LeaderElectionConfig(
            namespace=opts.leader_election_namespace or opts.operator_namespace,
            name=opts.leader_election_id, identity=opts.identity,
            lease_duration=opts.lease_duration, renew_deadline=opts.renew_deadline,
            retry_period=opts.retry_period,
        )
    manager = Manager(api, informers, serving, leader_election=election)
    for c in controllers:
        manager.add_controller(c)
    manager.runnables.extend(ctx.runnables)
    log.info("operator configured", namespaces=opts.namespaces or "all",
             leader_elect=opts.leader_elect, identity=opts.identity)
    return App(manager, api, metrics, controllers, ctx.recorder)


async def run(opts: Options) -> int:
    gctune.tune()
    app = await build_app(opts)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.manager.stop)
    # The informers start with the manager; their first lists are then frozen.
    freeze = asyncio.create_task(gctune.freeze_when_synced(app.manager.informers.informers()))
    try:
        await app.manager.run()
    finally:
        freeze.cancel()
        await app.close()
    if app.manager.lost_leadership:
        log.error("exiting after losing leadership")
        return 1
    log.info("stopped cleanly")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CACHE_COMMANDS:  # the cache Jobs: no operator, no API server
        sys.exit(cache_main(args))
    opts = parse(args)
    configure_logging(opts.log_level, "console" if opts.log_format == "console" else "json")
    sys.exit(asyncio.run(run(opts)))


if __name__ == "__main__":
    main()
