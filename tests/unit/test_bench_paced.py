"""The paced raw loop: the raw loop's writes spread over the operator's convergence
time, to tell the control plane's pace-dependent CPU from the operator's own."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.benchmark import paced_comparison
from aimbench.raw import start_offsets


def test_unpaced_groups_all_start_at_once() -> None:
    assert start_offsets(3, None) == [0.0, 0.0, 0.0]
    assert start_offsets(3, 0.0) == [0.0, 0.0, 0.0]
    assert start_offsets(0, 10.0) == []


def test_paced_groups_start_evenly_and_the_last_before_the_window_ends() -> None:
    offsets = start_offsets(4, 80.0)
    assert offsets == [0.0, 20.0, 40.0, 60.0]
    assert offsets == sorted(offsets) and offsets[-1] < 80.0


def test_the_comparison_leaves_out_the_operator_and_the_bench() -> None:
    run = {"apiserver": 90.0, "controller-manager": 26.0, "etcd": 13.0, "aim-controller": 14.0,
           "bench": 5.5, "total": 148.5}
    paced = {"apiserver": 82.0, "controller-manager": 28.0, "etcd": 15.0, "bench": 12.0,
             "total": 137.0}
    c = paced_comparison(run, paced)
    assert c == {"runControlPlane": 129.0, "pacedControlPlane": 125.0, "ratio": 1.032}


def test_no_comparison_without_cpu_figures() -> None:
    assert paced_comparison({}, {"apiserver": 1.0}) is None
    assert paced_comparison({"apiserver": 1.0}, {"total": 0.0}) is None


def test_the_full_run_paces_its_largest_n_and_the_flag_every_n() -> None:
    import run

    full = run.options(run.parse([]))
    assert full.paced_raw and full.paced_raw_from_n == 1000
    assert not run.options(run.parse(["--n", "50"])).paced_raw
    flagged = run.options(run.parse(["--n", "50,100", "--paced-raw"]))
    assert flagged.paced_raw and flagged.paced_raw_from_n == 0
