"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go ``tools/leaderelection``).

Why not ``kubernetes_asyncio.leaderelection`` (36.x): it never releases the
lease on shutdown (a standby waits a full lease duration); a renew request
that hangs is not bounded by the renew deadline, so ``onstopped_leading``
can come long after the lease was lost; it measures expiry with the wall
clock and writes naive local times suffixed ``Z``; it does not keep
``leaseTransitions``. This module does what client-go does:

- optimistic concurrency: every write is a PUT carrying the resourceVersion
  last read, so two candidates can never both win the same round;
- a candidate takes the lease only when the holder is empty (released) or
  the record has not changed for ``leaseDurationSeconds`` *by the
  candidate's own monotonic clock since it last saw it change* (clock skew
  between nodes never matters);
- the leader renews every ``retry_period``; if it cannot renew within
  ``renew_deadline`` of its last successful renewal (or sees another holder),
  it stops leading at once: ``is_leader()`` turns False and
  ``on_stopped_leading`` is called before anything else is awaited;
- on a clean stop (cancellation or :meth:`LeaderElector.release`) the leader
  writes an empty holder with ``leaseDurationSeconds: 1`` so a standby takes
  over on its next retry instead of after a full lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from aim_controller.machinery.kubeclient import ApiException, KubeClient
from aim_controller.machinery.resource import LEASES, Obj, request_json

JITTER_FACTOR: Final = 1.2  # client-go's: waits between acquire attempts are in [retry, 2.2*retry)


def micro_time(now: datetime | None = None) -> str:
    """A ``metav1.MicroTime`` string (RFC 3339, microseconds, UTC)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaderElectionRecord:
    """The election-relevant part of a Lease spec (client-go ``LeaderElectionRecord``).

    Invariant: ``holder_identity == ""`` means nobody holds the lease.
    """

    holder_identity: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    lease_transitions: int

    @classmethod
    def from_lease(cls, lease: Obj) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder_identity=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            lease_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> Obj:
        spec: Obj = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


class LeaderElector:
    """Campaigns for one Lease and calls back when leadership starts and stops.

    Invariants:
    - ``is_leader()`` is True only between a successful acquire and the
      moment leadership ends (lost, released, or cancelled), and the last
      successful write is then less than ``renew_deadline`` old;
    - ``on_started_leading()`` runs as a task while leading and is cancelled
      when leadership ends; ``on_stopped_leading()`` is called exactly once
      per leadership, synchronously, before the task is awaited;
    - on a clean stop the lease is released only after that task has
      finished, so it must honour cancellation promptly (a standby never
      starts while our work still runs);
    - only one :meth:`run` at a time; after it returns, a new one may start.
    """

    def __init__(
        self,
        api_client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], Awaitable[Any]],
        on_stopped_leading: Callable[[], Any],
        on_new_leader: Callable[[str], Any] | None = None,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renew_deadline must be greater than retry_period * 1.2")
        if retry_period <= 0:
            raise ValueError("retry_period must be positive")
        self.api = api_client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self._clock = clock
        self._path = LEASES.object_path(name, namespace)
        self._lease: Obj | None = None  # last Lease read or written (for its resourceVersion)
        self._observed: LeaderElectionRecord | None = None
        self._observed_time = 0.0  # our clock when _observed last changed
        self._leading = False
        self._last_renew = 0.0  # our clock when the last successful write was sent
        self._running = False
        self._stop = asyncio.Event()  # release() asks run() to step down
        self._done = asyncio.Event()  # run() has finished stepping down
        self._log = structlog.get_logger(__name__).bind(
            lease=f"{namespace}/{name}", identity=identity
        )

    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str:
        """The holder we last observed (``""``: none)."""
        return self._observed.holder_identity if self._observed else ""

    # -- main loop -------------------------------------------------------------
    async def run(self) -> None:
        """Campaigns, leads while the lease holds, then returns.

        Returns when leadership is lost (callers usually exit the process, so
        that the new leader never overlaps with a half-stopped old one), after
        :meth:`release`, or when ``on_started_leading`` returns (its work is
        done, so the lease is released). On cancellation, a leader releases
        the lease first (``release_on_cancel``), then the cancellation
        propagates. If ``on_started_leading`` raises, the lease is released
        and the error re-raised here.
        """
        if self._running:
            raise RuntimeError("LeaderElector.run() is already running")
        self._running = True
        self._stop.clear()
        self._done.clear()
        leading: asyncio.Task[Any] | None = None
        release = False
        try:
            if not await self._acquire():
                return
            self._leading = True
            self._log.info("started leading")
            leading = asyncio.create_task(self._lead(), name=f"leading:{self.name}")
            release = await self._renew_until_done(leading)
        except asyncio.CancelledError:
            release = self.release_on_cancel
            raise
        finally:
            await self._step_down(leading, release)
            self._running = False
            self._done.set()
        if leading is not None and not leading.cancelled():
            error = leading.exception()
            if error is not None:
                raise error

    async def release(self) -> bool:
        """Stops leading and gives the lease up; True if we held it and the write succeeded.

        With :meth:`run` active, asks it to stop (it releases as it returns);
        otherwise releases directly if the last record we saw names us.
        """
        if self._running:
            was_leader = self._leading
            self._stop.set()
            await self._done.wait()
            return was_leader and self.leader == ""
        return await self._release_lease()

    async def _lead(self) -> None:
        await self.on_started_leading()

    async def _acquire(self) -> bool:
        """Retries until we hold the lease (True) or a stop is requested (False)."""
        while not self._stop.is_set():
            if await self._attempt():
                return True
            delay = self.retry_period * (1 + JITTER_FACTOR * random.random())
            await self._sleep_or_stop(delay)
        return False

    async def _renew_until_done(self, leading: asyncio.Task[Any]) -> bool:
        """Renews until leadership ends; returns whether to release the lease."""
        while True:
            await self._sleep_or_stop(self.retry_period, leading)
            if self._stop.is_set() or leading.done():
                return True  # clean stop, or our work ended: let a standby have it
            while True:
                remaining = self._last_renew + self.renew_deadline - self._clock()
                if remaining <= 0:
                    self._log.warning("failed to renew lease within the renew deadline")
                    return False
                if await self._attempt(remaining):
                    break
                if self.leader and self.leader != self.identity:
                    self._log.warning("lease taken by another holder", holder=self.leader)
                    return False
                await self._sleep_or_stop(min(self.retry_period, remaining), leading)
                if self._stop.is_set():
                    return True

    async def _step_down(self, leading: asyncio.Task[Any] | None, release: bool) -> None:
        was_leader, self._leading = self._leading, False
        if was_leader:
            self._log.info("stopped leading")
            try:
                result = self.on_stopped_leading()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._log.exception("on_stopped_leading failed")
        if leading is not None:
            leading.cancel()
            # Wait for the work to wind down before a standby may start.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([leading])
            if not leading.cancelled() and leading.exception() is not None:
                self._log.error("on_started_leading failed", error=repr(leading.exception()))
        if was_leader and release:
            await self._release_lease()

    async def _sleep_or_stop(self, delay: float, leading: asyncio.Task[Any] | None = None) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._stop.wait())]
        if leading is not None:
            waits.append(leading)
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waits[0].cancel()

    # -- one round -------------------------------------------------------------
    async def _attempt(self, budget: float | None = None) -> bool:
        """One try_acquire_or_renew bounded by ``budget`` seconds (default renew_deadline)."""
        sent = self._clock()
        try:
            async with asyncio.timeout(budget or self.renew_deadline):
                ok = await self._try_acquire_or_renew()
        except Exception as e:  # includes TimeoutError; the caller retries
            self._log.info("lease attempt failed", error=f"{type(e).__name__}: {e}")
            return False
        if ok:
            # The send time, not the reply time: others measure expiry from
            # when they saw our write, which is after we sent it.
            self._last_renew = sent
        return ok

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_time()
        # Fast path (client-go): a leader renews straight from its cached Lease.
        if (
            self._leading
            and self._lease is not None
            and self._observed is not None
            and await self._update(self._ours(self._observed, now))
        ):
            return True
        try:
            lease = await request_json(self.api, "GET", self._path)
        except ApiException as e:
            if e.status != 404:
                raise
            return await self._create(now)
        self._lease = lease
        record = LeaderElectionRecord.from_lease(lease)
        self._observe(record)
        duration = record.lease_duration_seconds or self.lease_duration
        if (
            record.holder_identity
            and record.holder_identity != self.identity
            and self._observed_time + duration > self._clock()
        ):
            return False  # held by someone else and not expired by our clock
        return await self._update(self._ours(record, now))

    def _ours(self, current: LeaderElectionRecord, now: str) -> LeaderElectionRecord:
        renewing = current.holder_identity == self.identity
        return LeaderElectionRecord(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self.lease_duration),
            acquire_time=current.acquire_time if renewing else now,
            renew_time=now,
            lease_transitions=current.lease_transitions + (0 if renewing else 1),
        )

    def _observe(self, record: LeaderElectionRecord) -> None:
        if record == self._observed:
            return
        old = self._observed.holder_identity if self._observed else None
        self._observed, self._observed_time = record, self._clock()
        if record.holder_identity != old and record.holder_identity:
            self._log.info("new leader observed", holder=record.holder_identity)
            if self.on_new_leader is not None:
                try:
                    self.on_new_leader(record.holder_identity)
                except Exception:
                    self._log.exception("on_new_leader failed")

    async def _create(self, now: str) -> bool:
        record = LeaderElectionRecord(self.identity, math.ceil(self.lease_duration), now, now, 0)
        body = {
            "apiVersion": LEASES.api_version, "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec(),
        }
        try:
            self._lease = await request_json(
                self.api, "POST", LEASES.collection_path(self.namespace), body=body
            )
        except ApiException as e:
            if e.status == 409:
                return False  # someone else created it first
            raise
        self._observe(record)
        return True

    async def _update(self, record: LeaderElectionRecord) -> bool:
        assert self._lease is not None
        body = dict(self._lease)
        body["spec"] = record.to_spec()  # metadata keeps resourceVersion: optimistic lock
        try:
            self._lease = await request_json(self.api, "PUT", self._path, body=body)
        except ApiException as e:
            if e.status == 409:
                return False  # changed since we read it; the next round re-reads it
            raise
        self._observe(record)
        return True

    async def _release_lease(self) -> bool:
        if self._lease is None or self.leader != self.identity:
            return False
        now = micro_time()
        released = LeaderElectionRecord(
            "", 1, now, now, self._observed.lease_transitions if self._observed else 0
        )
        try:
            async with asyncio.timeout(self.renew_deadline):
                ok = await self._update(released)
        except Exception as e:  # includes TimeoutError; the lease then simply expires
            self._log.warning("failed to release lease", error=f"{type(e).__name__}: {e}")
            return False
        if ok:
            self._log.info("released lease")
        return ok
