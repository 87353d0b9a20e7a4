"""Leader election on a real Lease: one leader; on a clean stop the standby takes
the released lease at its next look; after a crash only once the lease expired;
and a leader cut off from the API server steps down before anyone else leads.

Every claim is a fact about the Lease records, the candidates' requests or the
order of their callbacks, never a number of seconds measured by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from support import eventually
from support.kube import Relay, RequestLog, api_client

from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.leaderelection import LeaderElector
from aim_controller.machinery.resource import LEASES, request_json

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
LEADER_PROC = Path(__file__).with_name("leader_proc.py")

Timeline = list[tuple[str, str]]


class Candidate:
    """An in-process elector with its own client, recording its callbacks (also into a
    timeline shared with other candidates) and every request it sends."""

    def __init__(self, api: KubeClient, lease: str, identity: str,
                 timing: tuple[float, float, float], timeline: Timeline | None = None) -> None:
        self.api = api
        self.identity = identity
        self.requests = RequestLog(api)
        self.timeline: Timeline = [] if timeline is None else timeline
        self.started = 0
        self.stopped = 0
        self.work_cancelled = False
        self.leader_when_stopped: bool | None = None
        self.elector = LeaderElector(
            api, "default", lease, identity,
            lease_duration=timing[0], renew_deadline=timing[1], retry_period=timing[2],
            on_started_leading=self._lead, on_stopped_leading=self._stopped,
        )
        self.task: asyncio.Task[None] = asyncio.create_task(self.elector.run())

    async def _lead(self) -> None:
        self.started += 1
        self.timeline.append((self.identity, "started"))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    def _stopped(self) -> None:
        self.stopped += 1
        self.timeline.append((self.identity, "stopped"))
        self.leader_when_stopped = self.elector.is_leader()

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def close(self) -> None:
        await self.cancel()
        await self.api.close()


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
            await cand.close()


async def read_lease(c: LocalCluster, name: str) -> dict[str, Any]:
    async with await api_client(c) as api:
        return await request_json(api, "GET", LEASES.object_path(name, "default"))


def micro_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_one_leader_and_a_clean_stop_hands_over_at_the_standbys_next_look(
    api_cluster: LocalCluster,
) -> None:
    lease = f"le-{uuid.uuid4().hex[:6]}"
    async with candidates(api_cluster, lease, 2, lease_duration=15, renew_deadline=10,
                          retry_period=2) as (a, b):
        await eventually(lambda: a.elector.is_leader() or b.elector.is_leader(),
                         what="a leader")
        leader, standby = (a, b) if a.elector.is_leader() else (b, a)
        # Watch renewal rounds: the leader renews three times while the standby looks
        # at the lease twice; never two leaders, never a second start.
        renewed, looked = len(leader.requests), len(standby.requests)
        both = False

        def rounds() -> bool:
            nonlocal both
            both = both or (a.elector.is_leader() and b.elector.is_leader())
            return (len(leader.requests.since(renewed, "PUT")) >= 3
                    and len(standby.requests.since(looked, "GET")) >= 2)

        await eventually(rounds, what="three renewals and two looks", interval=0.02)
        assert not both
        assert (leader.started, standby.started) == (1, 0)
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseDurationSeconds"] == 15
        assert standby.elector.leader == leader.identity

        await leader.cancel()  # clean shutdown: releases the lease
        after_release = len(standby.requests)
        assert leader.stopped == 1 and leader.work_cancelled
        assert leader.leader_when_stopped is False
        released = (await read_lease(api_cluster, lease))["spec"]
        assert released.get("holderIdentity") in ("", None) or (
            released["holderIdentity"] == standby.identity)

        await eventually(standby.elector.is_leader, what="the standby leads")
        # At its next look: the first read after the release found the lease free (an
        # unreleased one would have taken several reads over its 15 s). A read already
        # on its way when the release landed may have found it free too.
        reads = standby.requests.since(after_release, "GET")
        assert len(reads) <= 1, standby.requests.since(after_release)
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == standby.identity
        assert spec["leaseTransitions"] >= 1


async def test_a_leader_cut_off_steps_down_before_anyone_else_leads(
    api_cluster: LocalCluster,
) -> None:
    lease = f"cut-{uuid.uuid4().hex[:6]}"
    timing = (6.0, 4.0, 1.0)  # lease duration, renew deadline, retry period
    timeline: Timeline = []
    relay = Relay(api_cluster.ports["apiserver"])
    await relay.start()
    made: list[Candidate] = []
    try:
        cut_off = Candidate(await api_client(api_cluster, relay.url), lease, "cut-off", timing,
                            timeline)
        made.append(cut_off)
        await eventually(cut_off.elector.is_leader, what="the first candidate leads")
        other = Candidate(await api_client(api_cluster), lease, "other", timing, timeline)
        made.append(other)
        await eventually(lambda: other.elector.leader == cut_off.identity,
                         what="the other sees the lease held")
        await relay.cut()  # the leader cannot renew; the other still reaches the API server
        # on_started_leading runs as a task (client-go: a goroutine): is_leader() turns
        # True a loop iteration before the callback records its start.
        await eventually(lambda: ("other", "started") in timeline, what="the other leads")
        assert other.elector.is_leader()
        # The leader stopped by its renew deadline, before the lease could expire for the
        # other: never two leaders, even in a partition.
        assert timeline == [("cut-off", "started"), ("cut-off", "stopped"),
                            ("other", "started")]
        assert cut_off.leader_when_stopped is False and not cut_off.elector.is_leader()
        await eventually(cut_off.task.done, what="run() returned after losing the lease")
        assert cut_off.task.exception() is None and cut_off.work_cancelled
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == "other"
    finally:
        for cand in made:
            await cand.close()
        with contextlib.suppress(AssertionError):
            await relay.cut()


class Proc:
    """A ``leader_proc.py`` child, its stdout lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, identity: str) -> None:
        self.proc = proc
        self.identity = identity
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, c: LocalCluster, lease: str, identity: str, *,
                    frozen_clock: bool = False) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LEADER_PROC), str(c.kubeconfig), "default", lease, identity,
            "15", "10", "2", *(["frozen"] if frozen_clock else []),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(proc, identity)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())

    def said(self, line: str) -> bool:
        return line in self.lines

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
    procs = [await Proc.spawn(api_cluster, lease, f"p{i}") for i in range(2)]
    try:
        await eventually(lambda: all(p.said("READY") for p in procs), what="both up")
        await eventually(lambda: any(p.said("LEADING") for p in procs), what="a leader")
        leader, standby = procs if procs[0].said("LEADING") else procs[::-1]
        # The standby saw the lease held, then the leader renewed it three times (more
        # than the standby's longest wait between looks): still one leader.
        await eventually(lambda: standby.said(f"OBSERVED {leader.identity}"),
                         what="the standby sees the holder")
        renewals: set[str] = set()

        async def renewed() -> bool:
            renewals.add((await read_lease(api_cluster, lease))["spec"]["renewTime"])
            return len(renewals) > 3

        await eventually(renewed, what="three renewals", interval=0.2)
        assert [p.said("LEADING") for p in procs].count(True) == 1

        # kill -9: no release; the standby takes over only once the lease expired.
        leader.kill()
        assert await leader.wait() == -signal.SIGKILL
        held = (await read_lease(api_cluster, lease))["spec"]  # the dead leader's last word
        assert held["holderIdentity"] == leader.identity
        await eventually(lambda: standby.said("LEADING"), what="the standby takes over")
        taken = (await read_lease(api_cluster, lease))["spec"]
        assert taken["holderIdentity"] == standby.identity
        assert taken["leaseTransitions"] == held["leaseTransitions"] + 1
        expired = (micro_time(held["renewTime"])
                   + timedelta(seconds=held["leaseDurationSeconds"]))
        assert micro_time(taken["acquireTime"]) >= expired, (held, taken)

        # A clean stop releases: a fresh candidate whose clock stands still (so a held
        # lease never expires for it) takes it over.
        third = await Proc.spawn(api_cluster, lease, "p2", frozen_clock=True)
        procs.append(third)
        await eventually(lambda: third.said(f"OBSERVED {standby.identity}"),
                         what="the third sees the holder")
        assert not third.said("LEADING")
        standby.proc.send_signal(signal.SIGTERM)
        assert await standby.wait() == 0
        assert standby.lines[-3:] == ["LEADING", "STOPPED", "EXIT"]
        await eventually(lambda: third.said("LEADING"), what="the third takes the free lease")
        spec = (await read_lease(api_cluster, lease))["spec"]
        assert spec["holderIdentity"] == third.identity
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            await p.wait()
