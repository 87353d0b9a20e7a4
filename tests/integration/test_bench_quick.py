"""``make bench --quick`` inside ``make test``: 100 endpoints against the real operator
(the CLI, as a subprocess) on a private full control plane. Asserts correctness only
(convergence, zero writes at steady state, nothing lost, duplicated or orphaned),
never a wall-clock time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.benchmark import BenchOptions, run_one

pytestmark = [pytest.mark.fullcluster, pytest.mark.slow, pytest.mark.timeout(1200)]

N = 100


def test_bench_quick_converges_quietly_and_loses_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    opts = BenchOptions(ns=[N], quiet_seconds=15, latency_samples=10, out=tmp_path,
                        timeout=600, log=lines.append, paced_raw=True)
    r = run_one(N, opts)
    context = "\n".join(lines) + f"\nlog: {tmp_path}/operator-{N}.log"

    # the log reports each run, never the API server's metrics scraped for it (MBs)
    assert max(map(len, lines)) < 20_000, max(map(len, lines))
    assert r["convergedSeconds"] is not None, f"not every endpoint converged\n{context}"
    assert r["readySeconds"] is not None, f"not every endpoint became Ready\n{context}"
    assert len(r["curve"]) == N and len(r["readyCurve"]) == N
    # Every child is there exactly once, owned by a live endpoint, at the last spec.
    assert r["correct"]["ok"], f"{r['correct']['problems']}\n{context}"
    assert r["correct"]["counts"]["endpoints"] == N
    # Steady state: no writes, by the client's own count and by the API server's audit.
    assert r["quiet"]["writes"] == 0, r["quiet"]
    assert r["quiet"]["auditWrites"] == 0, r["quiet"]
    # Each spec change reached the Service; none was lost.
    assert r["specChangeLatency"]["timeouts"] == 0, r["specChangeLatency"]
    assert r["specChangeLatency"]["samples"] == 10
    # The operator wrote each endpoint's children at least once (the raw loop replays
    # exactly those), and the replay itself was accepted.
    assert r["writesPerEndpointAtConvergence"] >= 3
    assert r["raw"]["groups"] == N and r["raw"]["failures"] == 0, r["raw"]
    # ... with the same replicas (the control plane runs their pods during the replay).
    assert r["raw"]["deploymentsWithReplicas"] == N, r["raw"]
    # Both runs were also timed until settled: every Deployment rolled out, the
    # replay's too (its pods run after its writes), no earlier than the writes.
    assert r["settledSeconds"] is not None and r["settledSeconds"] >= r["convergedSeconds"]
    assert r["raw"]["settledSeconds"] is not None, r["raw"]
    assert r["raw"]["settledSeconds"] >= r["raw"]["seconds"], r["raw"]
    assert r["ratio"] is not None and r["ratioSettled"] is not None
    assert r["cpuRatio"] is not None and r["cpuRatioSettled"] is not None
    # kube-apiserver's own counts of each window: the operator's status writes are in
    # its run only, the children's applies in both.
    api = r["apiServerCounts"]
    assert api["run"].get("APPLY aimendpoints/status", 0) >= N, api["run"]
    assert "APPLY aimendpoints/status" not in api["raw"], api["raw"]
    assert api["raw"].get("APPLY deployments", 0) >= N, api["raw"]
    assert api["run"].get("APPLY deployments", 0) >= N, api["run"]
    # The paced raw loop: the same writes, spread over the operator's convergence time
    # (its groups cannot all start before that), every pod rolled out, its own window.
    paced = r["rawPaced"]
    assert paced["groups"] == N and paced["failures"] == 0, paced
    assert paced["spreadOver"] == r["convergedSeconds"]
    assert paced["seconds"] >= paced["spreadOver"] * (N - 1) / N, paced
    assert paced["settledSeconds"] is not None, paced
    assert paced["apiServerCounts"].get("APPLY deployments", 0) >= N, paced["apiServerCounts"]
    assert "APPLY aimendpoints/status" not in paced["apiServerCounts"]
    assert r["pacedComparison"] is not None and r["pacedComparison"]["ratio"] > 0
