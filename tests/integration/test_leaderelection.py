"""Leader election on a real Lease: one leader, fast handover on a clean stop,
handover after a crash within the lease, and stepping down at once when the
API server is unreachable past the renew deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import localcluster  # type: ignore[import-not-found]  # hack/, put on sys.path by conftest
import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from localcluster import LocalCluster

from aim_controller.machinery.leaderelection import LeaderElector
from aim_controller.machinery.resource import LEASES, request_json

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
LEADER_PROC = Path(__file__).with_name("leader_proc.py")


async def api_client(c: LocalCluster) -> ApiClient:
    cfg = Configuration()
    await config.load_kube_config(config_file=str(c.kubeconfig), client_configuration=cfg)
    return ApiClient(cfg)


async def eventually(pred: Callable[[], bool], limit: float = 60.0) -> None:
    """Polls ``pred`` until true; ``limit`` seconds only bound a failing test."""
    async with asyncio.timeout(limit):
        while True:
            if pred():
                return
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def api_cluster() -> Iterator[LocalCluster]:
    c = localcluster.temp_cluster(full=False)
    try:
        c.start()
        yield c
    finally:
        c.stop()


class Candidate:
    """An in-process elector with its own client, recording its callbacks."""

    def __init__(self, api: ApiClient, lease: str, identity: str, timing: tuple[float, float, float]
                 ) -> None:
        self.api = api
        self.identity = identity
        self.started = 0
        self.stopped = 0
        self.work_cancelled = False
        self.leader_when_stopped: bool | None = None
        self.stopped_at: float | None = None
        self.elector = LeaderElector(
            api, "default", lease, identity,
            lease_duration=timing[0], renew_deadline=timing[1], retry_period=timing[2],
            on_started_leading=self._lead, on_stopped_leading=self._stopped,
        )
        self.task: asyncio.Task[None] = asyncio.create_task(self.elector.run())

    async def _lead(self) -> None:
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    def _stopped(self) -> None:
        self.stopped += 1
        self.stopped_at = time.monotonic()
        self.leader_when_stopped = self.elector.is_leader()

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def candidates(c: LocalCluster, lease: str, n: int, *, lease_duration: float,
                     renew_deadline: float, retry_period: float
                     ) -> AsyncIterator[list[Candidate]]:
    timing = (lease_duration, renew_deadline, retry_period)
    made = [Candidate(await api_client(c), lease, f"cand-{i}", timing) for i in range(n)]
    try:
        yield made
    finally:
        for cand in made:
            await cand.cancel()
            await cand.api.close()


async def read_lease(c: LocalCluster, name: str) -> dict[str, Any]:
    async with await api_client(c) as api:
        return await request_json(api, "GET", LEASES.object_path(name, "default"))


async def test_one_leader_and_a_clean_stop_hands_over_at_once(api_cluster: LocalCluster) -> None:
    lease = f"le-{uuid.uuid4().hex[:6]}"
    retry = 2.0
    async with candidates(api_cluster, lease, 2, lease_duration=15, renew_deadline=10,
                          retry_period=retry) as (a, b):
        await eventually(lambda: a.elector.is_leader() or b.elector.is_leader())
        # Watch a few renewal rounds: never two leaders, never a second start.
        both = False
        for _ in range(int(3 * retry / 0.05)):
            both = both or (a.elector.is_leader() and b.elector.is_leader())
            await asyncio.sleep(0.05)
        assert not both
        leader, standby = (a, b) if a.elector.is_leader() else (b, a)
        assert (leader.started, standby.started) == (1, 0)
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseDurationSeconds"] == 15
        assert standby.elector.leader == leader.identity

        stop_sent = time.monotonic()
        await leader.cancel()  # clean shutdown: releases the lease
        assert leader.stopped == 1 and leader.work_cancelled
        assert leader.leader_when_stopped is False
        released = (await read_lease(api_cluster, lease))["spec"]
        assert released.get("holderIdentity") in ("", None) or (
            released["holderIdentity"] == standby.identity)

        await eventually(standby.elector.is_leader, limit=15)
        # "At once": on the standby's next retry, far sooner than the 15 s
        # an unreleased lease would need to expire.
        assert time.monotonic() - stop_sent < 3 * retry
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == standby.identity
        assert spec["leaseTransitions"] >= 1


async def test_leader_steps_down_at_once_when_it_cannot_renew(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c = make_cluster(full=False)
    lease_duration, renew_deadline = 6.0, 4.0
    async with candidates(c, "solo", 1, lease_duration=lease_duration,
                          renew_deadline=renew_deadline, retry_period=1) as (cand,):
        await eventually(cand.elector.is_leader)
        await asyncio.to_thread(c.stop_component, "apiserver", signal.SIGKILL)
        killed = time.monotonic()
        await eventually(lambda: cand.stopped == 1, limit=30)
        assert cand.stopped_at is not None
        # Stepped down by the renew deadline, i.e. before the lease could
        # expire for anyone else: no two leaders even during a partition.
        assert cand.stopped_at - killed < lease_duration
        assert cand.leader_when_stopped is False and not cand.elector.is_leader()
        await asyncio.wait_for(cand.task, 10)  # run() returns after losing the lease
        assert cand.work_cancelled


class Proc:
    """A ``leader_proc.py`` child, its stdout lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, c: LocalCluster, lease: str, identity: str) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LEADER_PROC), str(c.kubeconfig), "default", lease, identity,
            "15", "10", "2", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode().strip()))

    def said(self, word: str) -> float | None:
        return next((t for t, w in self.lines if w == word), None)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def wait(self) -> int:
        rc = await self.proc.wait()
        await self._reader
        return rc


async def test_handover_between_processes_on_crash_and_on_clean_stop(
    api_cluster: LocalCluster,
) -> None:
    lease = f"procs-{uuid.uuid4().hex[:6]}"
    lease_duration, renew_deadline, retry = 15.0, 10.0, 2.0
    procs = [await Proc.spawn(api_cluster, lease, f"p{i}") for i in range(2)]
    try:
        await eventually(lambda: all(p.said("READY") for p in procs))
        await eventually(lambda: any(p.said("LEADING") for p in procs))
        await asyncio.sleep(3 * retry)
        assert sum(p.said("LEADING") is not None for p in procs) == 1
        leader, standby = procs if procs[0].said("LEADING") else procs[::-1]

        # kill -9: no release; the standby takes over once the lease expires.
        leader.kill()
        killed = time.monotonic()
        assert await leader.wait() == -signal.SIGKILL
        await eventually(lambda: standby.said("LEADING") is not None,
                         limit=lease_duration + renew_deadline + 10)
        took_over = standby.said("LEADING")
        assert took_over is not None and took_over - killed >= 0

        # A clean stop releases: a fresh standby takes over on its next retry.
        third = await Proc.spawn(api_cluster, lease, "p2")
        procs.append(third)
        await eventually(lambda: third.said("READY") is not None)
        await asyncio.sleep(retry)  # let it observe the current holder
        assert third.said("LEADING") is None
        standby.proc.send_signal(signal.SIGTERM)
        stop_sent = time.monotonic()
        assert await standby.wait() == 0
        assert [w for _, w in standby.lines][-3:] == ["LEADING", "STOPPED", "EXIT"]
        await eventually(lambda: third.said("LEADING") is not None, limit=lease_duration)
        handed = third.said("LEADING")
        assert handed is not None and handed - stop_sent < 3 * retry
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            await p.wait()
