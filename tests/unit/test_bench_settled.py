"""The bench also times both runs until settled: writes done and every Deployment
rolled out, to check that the ratio's two windows hold the same pod work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.benchmark import ratios
from aimbench.observer import Observer
from aimbench.workload import deployment_available


def _deployment(name: str = "ep-0000", *, generation: int = 1, replicas: int = 1,
                observed: int = 1, updated: int = 1, available: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation, "labels": {}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "availableReplicas": available}}


def test_a_deployment_is_available_once_every_desired_replica_is_updated_and_available() -> None:
    assert deployment_available(_deployment())
    assert not deployment_available(_deployment(available=0))
    assert not deployment_available(_deployment(replicas=2, available=1, updated=2))
    # an old ReplicaSet's available pod does not count before the new one rolled out
    assert not deployment_available(_deployment(updated=0))
    # the controller has not seen the current spec yet
    assert not deployment_available(_deployment(generation=2, observed=1))
    # a fresh Deployment with no status yet
    assert not deployment_available({"metadata": {"name": "x", "generation": 1},
                                     "spec": {"replicas": 1}})


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _observer(clock: _Clock) -> tuple[Observer, Any]:
    obs = Observer(None, "bench", clock=clock)  # type: ignore[arg-type]  # never started
    return obs, obs._child_handler("Deployment")


def test_settled_is_when_the_last_deployment_first_rolled_out() -> None:
    clock = _Clock()
    obs, on_deployment = _observer(clock)
    on_deployment("ADDED", _deployment("a", available=0))
    clock.now = 2.0
    on_deployment("MODIFIED", _deployment("a"))
    assert obs.settled_at({"a", "b"}) is None  # b not rolled out yet
    clock.now = 5.0
    on_deployment("ADDED", _deployment("b"))
    assert obs.all_available({"a", "b"})
    assert obs.settled_at({"a", "b"}) == 5.0
    # a later blip does not move the first time; it is no longer available meanwhile
    clock.now = 9.0
    on_deployment("MODIFIED", _deployment("a", available=0))
    assert not obs.all_available({"a", "b"})
    on_deployment("MODIFIED", _deployment("a"))
    assert obs.settled_at({"a", "b"}) == 5.0
    on_deployment("DELETED", _deployment("b"))
    assert not obs.all_available({"b"})


def test_settled_waits_for_the_endpoints_to_converge_too() -> None:
    clock = _Clock()
    obs, on_deployment = _observer(clock)
    clock.now = 3.0
    on_deployment("ADDED", _deployment("a"))
    obs.converged_at["a"] = 7.0
    assert obs.settled_at({"a"}, {"a"}) == 7.0
    assert obs.settled_at({"a"}, {"a", "missing"}) is None


def test_the_goal_ratio_is_over_the_writes_and_the_settled_one_stands_beside_it() -> None:
    run = {"convergedSeconds": 80.0, "settledSeconds": 82.0,
           "cpuToConvergence": {"apiserver": 90.0, "aim-controller": 14.0, "total": 160.0},
           "cpuToSettled": {"apiserver": 91.0, "aim-controller": 14.0, "total": 162.0}}
    raw = {"seconds": 60.0, "settledSeconds": 75.0,
           "cpu": {"apiserver": 65.0, "total": 115.0},
           "cpuToSettled": {"apiserver": 80.0, "total": 145.0}}
    r = ratios(run, raw)
    assert r["ratio"] == round(80 / 60, 3)
    assert r["cpuRatio"] == {"total": round(160 / 115, 3),
                             "withoutOperator": round(146 / 115, 3),
                             "operatorShare": round(14 / 115, 3)}
    assert r["ratioSettled"] == round(82 / 75, 3)
    assert r["cpuRatioSettled"] == {"total": round(162 / 145, 3),
                                    "withoutOperator": round(148 / 145, 3),
                                    "operatorShare": round(14 / 145, 3)}


def test_no_settled_ratio_when_a_run_never_settled() -> None:
    r = ratios({"convergedSeconds": 80.0, "settledSeconds": None},
               {"seconds": 60.0, "settledSeconds": 75.0})
    assert r["ratioSettled"] is None and r["cpuRatioSettled"] is None
    assert r["ratio"] == round(80 / 60, 3)
