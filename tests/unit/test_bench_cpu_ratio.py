"""The bench's CPU decomposition of the convergence ratio (what make bench prints)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.benchmark import cpu_ratio


def test_the_ratio_splits_into_the_floor_and_the_operators_share() -> None:
    run = {"apiserver": 94.7, "etcd": 14.7, "aim-controller": 14.9, "total": 174.5}
    raw = {"apiserver": 75.3, "etcd": 12.6, "total": 133.5}
    r = cpu_ratio(run, raw)
    assert r == {"total": 1.307, "withoutOperator": 1.196, "operatorShare": 0.112}
    # the two parts add up to the whole (to rounding)
    assert abs(r["withoutOperator"] + r["operatorShare"] - r["total"]) <= 0.002


def test_an_operator_that_used_no_cpu_sits_on_the_floor() -> None:
    r = cpu_ratio({"apiserver": 60.0, "total": 60.0}, {"apiserver": 50.0, "total": 50.0})
    assert r == {"total": 1.2, "withoutOperator": 1.2, "operatorShare": 0.0}


def test_no_ratio_without_both_runs() -> None:
    assert cpu_ratio({}, {"total": 1.0}) is None
    assert cpu_ratio({"total": 1.0}, {}) is None
