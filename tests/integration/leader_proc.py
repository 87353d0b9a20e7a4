"""A leader-election candidate in its own process, for the handover tests.

Usage: leader_proc.py KUBECONFIG NAMESPACE LEASE IDENTITY [LEASE_S RENEW_S RETRY_S [frozen]]

Prints one line per transition, flushed: ``READY``, ``OBSERVED <holder>`` (a new
holder seen, itself included), ``LEADING``, ``STOPPED`` (on_stopped_leading ran),
``EXIT``. SIGTERM is a clean shutdown: the run is cancelled, which releases the
lease. ``frozen``: the elector's clock stands still, so a held lease never expires
for it; it can only take a free (released) one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from aim_controller.machinery.kubeclient import KubeClient, load_kubeconfig
from aim_controller.machinery.leaderelection import LeaderElector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`
from support import FakeClock


def say(word: str) -> None:
    print(word, flush=True)


async def main(argv: list[str]) -> None:
    # stdout carries only the transition lines; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    kubeconfig, namespace, lease, identity = argv[:4]
    lease_s, renew_s, retry_s = (float(x) for x in (argv[4:7] or ["15", "10", "2"]))
    frozen = argv[7:8] == ["frozen"]
    async with KubeClient(load_kubeconfig(kubeconfig)) as api:

        async def lead() -> None:
            say("LEADING")
            await asyncio.Event().wait()

        elector = LeaderElector(
            api, namespace, lease, identity,
            lease_duration=lease_s, renew_deadline=renew_s, retry_period=retry_s,
            on_started_leading=lead, on_stopped_leading=lambda: say("STOPPED"),
            on_new_leader=lambda holder: say(f"OBSERVED {holder}"),
            **({"clock": FakeClock()} if frozen else {}),
        )
        task = asyncio.create_task(elector.run())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        say("READY")
        with contextlib.suppress(asyncio.CancelledError):
            await task
    say("EXIT")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
