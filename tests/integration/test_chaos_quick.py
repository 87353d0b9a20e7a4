"""``make chaos --quick`` inside ``make test``: the shortest fault scenarios (kube-apiserver
stopped and restarted, the operator SIGKILLed and restarted) on a convergence of a few
dozen endpoints. Asserts the verdicts (everything converges to the final spec, nothing
lost, duplicated or orphaned, the controller goes quiet), never a wall-clock time."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.chaos import QUICK_SCENARIOS, ChaosOptions, run_chaos

pytestmark = [pytest.mark.fullcluster, pytest.mark.slow, pytest.mark.timeout(1200)]


def test_chaos_quick_scenarios_pass(tmp_path: Path) -> None:
    lines: list[str] = []
    opts = ChaosOptions(n=40, scenarios=list(QUICK_SCENARIOS), outage_seconds=10,
                        quiet_seconds=5, timeout=420, churn=3, out=tmp_path,
                        log=lines.append)
    results = asyncio.run(run_chaos(opts))
    report = "\n".join(lines + [r.line() for r in results])

    # Each scenario, then every namespace re-checked after all the faults.
    assert [r.name for r in results] == [*QUICK_SCENARIOS, "aftermath"], report
    for r in results:
        assert r.passed, f"{r.name}: {r.details.get('verdict')}\n{report}"
    for r in results[:-1]:
        # The disturbance really happened and every endpoint ended Ready.
        assert r.details["disturbance"]["updated"] > 0, report
        counts = r.details["verdict"]["counts"]
        assert counts["ready"] == counts["endpoints"] == 40, report
    assert results[-1].details["verdict"]["counts"]["ready"] == 40 * len(QUICK_SCENARIOS)
