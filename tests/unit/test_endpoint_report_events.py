"""What the report step says about replica bounds and stuck pods: the Available message
for a clamped ``spec.replicas``, and Warning Events once per change (a status that is
written again with the same problem emits nothing)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from test_endpoint_decide import NOW, SPEC, endpoint_obj, observed, plan_of

from aim_controller.api.v1alpha1 import AIMEndpointSpec
from aim_controller.builders import deployment_replicas, replicas_clamp
from aim_controller.reconcilers.endpoint_observe import Observed
from aim_controller.reconcilers.endpoint_report import (
    REPLICAS_CLAMPED,
    EventNote,
    desired_status,
    status_events,
)
from aim_controller.reconcilers.endpoint_status import PodsState

T0 = "2026-01-01T00:00:00Z"
GPU_SHORT = "0/3 nodes are available: 3 Insufficient amd.com/gpu."


def spec(replicas: int, lo: int, hi: int) -> AIMEndpointSpec:
    return AIMEndpointSpec.model_validate(
        {**SPEC, "replicas": replicas, "scaling": {"minReplicas": lo, "maxReplicas": hi}})


@pytest.mark.parametrize(("replicas", "lo", "hi", "runs", "note"), [
    (3, 1, 5, 3, None),
    (9, 1, 5, 5, "spec.replicas 9 is above scaling.maxReplicas 5: the Deployment runs 5"),
    (9, 2, 2, 2, "spec.replicas 9 is above scaling.maxReplicas 2: the Deployment runs 2"),
    (1, 2, 2, 2, "spec.replicas 1 is below scaling.minReplicas 2: the Deployment runs 2"),
    (0, 0, 1, 0, None),  # minReplicas 0 without an autoscaler: parked by hand
    (0, 0, 3, 1, "spec.replicas 0 is below 1, the least an autoscaled endpoint runs "
                 "(scaling.minReplicas 0): the Deployment runs 1"),
])
def test_replicas_clamp_says_what_runs_instead(
        replicas: int, lo: int, hi: int, runs: int, note: str | None) -> None:
    s = spec(replicas, lo, hi)
    assert deployment_replicas(s) == runs
    assert replicas_clamp(s) == note


def scaled(replicas: int, hi: int = 5, status: dict[str, Any] | None = None) -> Observed:
    return observed(endpoint_obj(
        {**SPEC, "replicas": replicas, "scaling": {"minReplicas": 1, "maxReplicas": hi}},
        status))


def report(o: Observed) -> tuple[dict[str, Any], list[EventNote]]:
    plan = plan_of(o)
    status = desired_status(o, plan, None, T0, "sel")
    return status, status_events(o, plan, status)


def available(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Available")["message"])


def clamp_events(events: list[EventNote]) -> list[EventNote]:
    return [e for e in events if e.reason == REPLICAS_CLAMPED]


def test_scale_above_max_replicas_is_said_in_available_and_one_event_per_count() -> None:
    status, events = report(scaled(9))
    note = "spec.replicas 9 is above scaling.maxReplicas 5: the Deployment runs 5"
    assert available(status).endswith("; " + note)
    assert clamp_events(events) == [EventNote("Warning", REPLICAS_CLAMPED, note)]

    # The next status write (anything else changed) says nothing new about it.
    again, events = report(scaled(9, status=status))
    assert note in available(again) and clamp_events(events) == []

    # A new count is a new Event; back within bounds, the message drops the note.
    status, events = report(scaled(12, status=again))
    assert [e.message for e in clamp_events(events)] == [
        "spec.replicas 12 is above scaling.maxReplicas 5: the Deployment runs 5"]
    status, events = report(scaled(4, status=status))
    assert "spec.replicas" not in available(status) and clamp_events(events) == []


def test_the_min_replicas_floor_is_said_but_is_no_warning() -> None:
    o = observed(endpoint_obj(
        {**SPEC, "replicas": 1, "scaling": {"minReplicas": 2, "maxReplicas": 2}}))
    status, events = report(o)
    assert available(status).endswith(
        "; spec.replicas 1 is below scaling.minReplicas 2: the Deployment runs 2")
    assert clamp_events(events) == []


def with_pods(o: Observed, pods: PodsState) -> Observed:
    return Observed(**{**o.__dict__, "pods": pods})


def with_deployment(o: Observed, status: dict[str, Any]) -> Observed:
    first = plan_of(o)
    dep = copy.deepcopy(next(d for d in first.desired if d["kind"] == "Deployment"))
    dep["status"] = status
    children = {**o.children, ("Deployment", o.name): dep}
    return Observed(**{**o.__dict__, "children": children, "owned": frozenset(children)})


def degraded_events(events: list[EventNote]) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in events
            if e.reason in ("Unschedulable", "ProgressDeadlineExceeded")]


def test_pods_turning_unschedulable_emit_one_warning() -> None:
    chosen, _ = report(observed())
    stuck = PodsState(unschedulable_since=NOW - timedelta(minutes=1),
                      unschedulable_message=GPU_SHORT)
    status, events = report(with_pods(observed(endpoint_obj(status=chosen)), stuck))
    assert degraded_events(events) == [("Warning", "Unschedulable", GPU_SHORT)]
    _, events = report(with_pods(observed(endpoint_obj(status=status)), stuck))
    assert degraded_events(events) == []
    # Placed again, then unschedulable again: a new change, a new Event.
    placed, _ = report(observed(endpoint_obj(status=status)))
    _, events = report(with_pods(observed(endpoint_obj(status=placed)), stuck))
    assert degraded_events(events) == [("Warning", "Unschedulable", GPU_SHORT)]


def test_a_rollout_past_its_deadline_emits_one_warning() -> None:
    chosen, _ = report(observed())
    stuck = {"replicas": 1, "conditions": [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "ep-5d4" has timed out progressing.'}]}
    status, events = report(with_deployment(observed(endpoint_obj(status=chosen)), stuck))
    assert degraded_events(events) == [
        ("Warning", "ProgressDeadlineExceeded", 'ReplicaSet "ep-5d4" has timed out progressing.')]
    _, events = report(with_deployment(observed(endpoint_obj(status=status)), stuck))
    assert degraded_events(events) == []
