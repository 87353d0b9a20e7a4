"""The bench's request-by-request comparison of its two runs, from kube-apiserver's
own counters."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from aimbench.apicount import counts, differences, window


def _req(verb: str, resource: str, sub: str, code: str, value: int, group: str = "") -> str:
    return (f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",'
            f'group="{group}",resource="{resource}",scope="resource",subresource="{sub}",'
            f'verb="{verb}",version="v1"}} {value}\n')


BEFORE = (
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests\n"
    "# TYPE apiserver_request_total counter\n"
    + _req("POST", "events", "", "201", 10)
    + _req("PUT", "deployments", "status", "200", 4, "apps")
    + _req("PUT", "deployments", "status", "409", 1, "apps")
    + "# HELP apiserver_watch_events_total [ALPHA] Number of events sent in watch clients\n"
    "# TYPE apiserver_watch_events_total counter\n"
    'apiserver_watch_events_total{component="apiserver",group="",resource="pods",'
    'version="v1"} 100\n'
)

AFTER = (BEFORE.replace("} 10\n", "} 30\n").replace("} 100\n", "} 160\n")
         + _req("APPLY", "aimendpoints", "status", "201", 20, "aim.engine.amd.com"))


def test_requests_are_counted_by_verb_and_resource_refused_ones_apart() -> None:
    # a 409 is a controller retrying on a stale cache: kept apart from the writes made
    c = counts(BEFORE + _req("PUT", "deployments", "status", "201", 2, "apps"))
    assert c == {"POST events": 10.0, "PUT deployments/status": 6.0,
                 "PUT deployments/status [409]": 1.0, "watch events pods": 100.0}


def test_a_window_is_what_changed_and_a_new_series_counts_from_zero() -> None:
    assert window(BEFORE, AFTER) == {"POST events": 20.0, "watch events pods": 60.0,
                                     "APPLY aimendpoints/status": 20.0}


def test_differences_per_endpoint_largest_first_small_ones_left_out() -> None:
    run = {"APPLY aimendpoints/status": 1100.0, "POST events": 3500.0,
           "PUT deployments/status": 4600.0, "POST pods": 1000.0}
    raw = {"POST events": 2200.0, "PUT deployments/status": 3300.0, "POST pods": 990.0}
    assert differences(run, raw, 1000) == [
        ("POST events", 3.5, 2.2),
        ("PUT deployments/status", 4.6, 3.3),
        ("APPLY aimendpoints/status", 1.1, 0.0),
    ]
    assert differences(run, raw, 0) == []
