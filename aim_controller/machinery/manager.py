"""The manager: runs informers, controllers, serving endpoints and leader election.

Order of life, as controller-runtime's manager does it:
1. ``/metrics``, ``/healthz`` and ``/readyz`` start serving;
2. informers start on every replica (a standby keeps warm caches, so it can
   take over at once);
3. with leader election, the replica campaigns for the Lease; controllers'
   workers run only while it leads; without it they run at once;
4. each controller's workers start once its own sources have synced (an
   informer another controller needs, stuck listing, holds up only that one);
   readiness = every informer synced (whether or not this replica leads);
5. losing the lease stops the workers at once and ends ``run()`` with
   ``lost_leadership`` set (the entry point exits non-zero, so a restarted
   process never overlaps a half-stopped one); a clean stop drains the
   workers, then releases the Lease so a standby takes over immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from .controller import Controller
from .httpserver import ServingEndpoints
from .informer import InformerFactory
from .kubeclient import KubeClient
from .leaderelection import LeaderElector

log = structlog.get_logger(__name__)


@dataclass
class LeaderElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass
class Manager:
    api_client: KubeClient
    informers: InformerFactory
    serving: ServingEndpoints
    leader_election: LeaderElectionConfig | None = None
    cache_sync_timeout: float = 300.0
    controllers: list[Controller] = field(default_factory=list)
    # Extra long-running tasks started with the workers (leader only).
    runnables: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    lost_leadership: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _elector: LeaderElector | None = None

    def add_controller(self, controller: Controller) -> None:
        self.controllers.append(controller)

    def stop(self) -> None:
        """Asks ``run()`` to shut down cleanly (safe from a signal handler)."""
        self._stop.set()

    def caches_synced(self) -> bool:
        return all(inf.has_synced() for inf in self.informers.informers())

    def is_leader(self) -> bool:
        return self._elector.is_leader() if self._elector else True

    async def run(self) -> None:
        self.serving.add_readyz_check("informers-synced", self.caches_synced)
        await self.serving.start()
        self.informers.start()
        try:
            if self.leader_election is None:
                await self._run_until_stopped(self._lead())
            else:
                cfg = self.leader_election
                self._elector = LeaderElector(
                    self.api_client, cfg.namespace, cfg.name, cfg.identity,
                    lease_duration=cfg.lease_duration, renew_deadline=cfg.renew_deadline,
                    retry_period=cfg.retry_period,
                    on_started_leading=self._lead, on_stopped_leading=self._stopped_leading,
                )
                await self._run_until_stopped(self._elector.run())
        finally:
            await self.informers.stop()
            await self.serving.stop()

    async def _run_until_stopped(self, main: Awaitable[None]) -> None:
        task = asyncio.ensure_future(main)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            task.result()
            return
        # Clean stop: drain the workers first, then give the lease up.
        await self._stop_controllers()
        if self._elector is not None:
            await self._elector.release()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _lead(self) -> None:
        log.info("starting controllers", controllers=[c.name for c in self.controllers])
        tasks = [asyncio.create_task(c.run(), name=f"controller:{c.name}")
                 for c in self.controllers]
        tasks += [asyncio.create_task(r()) for r in self.runnables]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stopped_leading(self) -> None:
        if self._stop.is_set():
            return
        log.error("leader election lost; stopping work")
        self.lost_leadership = True
        self._stop.set()

    async def _stop_controllers(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.controllers), return_exceptions=True)
