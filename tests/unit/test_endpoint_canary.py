"""The canary state machine, over plain data: each transition, and properties over
random histories (never promoted before ``duration`` of healthy time, restart-safe,
a new spec change restarts with the newest template, a rollback never touches the
stable Deployment)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.reconcilers.endpoint_canary import (
    ABORT_ANNOTATION,
    ANALYZING,
    PROGRESSING,
    PROMOTE_ANNOTATION,
    PROMOTING,
    ROLLED_BACK,
    SUCCEEDED,
    CanaryHealth,
    CanaryInput,
    CanaryStep,
    Mode,
    canary_replicas,
    replica_weight,
    step,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HEALTHY = CanaryHealth(ready=1)


def inp(**kw: Any) -> CanaryInput:
    base: dict[str, Any] = {
        "enabled": True, "traffic_split": 10, "duration_seconds": 60.0,
        "desired_template": "new", "stable_template": "old", "stable_ready": True,
        "stable_replicas": 1, "canary_template": None, "health": CanaryHealth(),
        "record": None, "now": T0,
    }
    return CanaryInput(**(base | kw))


def then(prev: CanaryStep, **kw: Any) -> CanaryInput:
    """The next reconcile's input: the record as the API server returns it."""
    record = json.loads(json.dumps(prev.record)) if prev.record is not None else None
    return inp(record=record, **kw)


def test_disabled_is_a_plain_rolling_update_with_no_record() -> None:
    s = step(inp(enabled=False))
    assert s.mode is Mode.PLAIN and s.record is None and not s.events


def test_the_first_version_is_never_a_canary() -> None:
    s = step(inp(stable_template=None))
    assert s.mode is Mode.PLAIN and s.record is None


def test_no_change_no_canary() -> None:
    s = step(inp(desired_template="old"))
    assert s.mode is Mode.PLAIN and s.record is None


def test_a_template_change_starts_a_canary_and_keeps_the_stable() -> None:
    s = step(inp())
    assert s.mode is Mode.CANARY and s.replicas == 1
    assert s.record is not None
    assert s.record["phase"] == PROGRESSING
    assert s.record["templateHash"] == "new" and s.record["stableTemplateHash"] == "old"
    assert s.record["startTime"] == "2026-01-01T12:00:00Z"
    assert "approximate" in s.record["message"]
    assert [e.reason for e in s.events] == ["CanaryStarted"]


def test_ready_starts_the_analysis_and_promotes_after_the_duration() -> None:
    s1 = step(inp())
    s2 = step(then(s1, canary_template="new", health=HEALTHY, now=T0 + timedelta(seconds=5)))
    assert s2.record is not None and s2.record["phase"] == ANALYZING
    assert s2.record["analysisStartTime"] == "2026-01-01T12:00:05Z"
    assert s2.recheck_after == 61.0
    s3 = step(then(s2, canary_template="new", health=HEALTHY, now=T0 + timedelta(seconds=64)))
    assert s3.mode is Mode.CANARY and s3.record is not None
    assert s3.record["phase"] == ANALYZING
    s4 = step(then(s3, canary_template="new", health=HEALTHY, now=T0 + timedelta(seconds=65)))
    assert s4.mode is Mode.PLAIN and s4.record is not None
    assert s4.record["phase"] == PROMOTING and s4.record["result"] == "Passed"
    assert [e.reason for e in s4.events] == ["CanaryPromoted"]
    # The stable now runs the new template; its pods turn Ready.
    s5 = step(then(s4, stable_template="new", desired_template="new", stable_ready=False))
    assert s5.mode is Mode.PLAIN and s5.record is not None and s5.record["phase"] == PROMOTING
    s6 = step(then(s5, stable_template="new", desired_template="new"))
    assert s6.record is not None and s6.record["phase"] == SUCCEEDED
    assert [e.reason for e in s6.events] == ["CanarySucceeded"]
    s7 = step(then(s6, stable_template="new", desired_template="new"))
    assert s7.record == s6.record and not s7.events


def test_a_failure_rolls_back_with_the_evidence_and_holds_the_stable() -> None:
    s1 = step(inp())
    bad = CanaryHealth(failure="CrashLoopBackOff: container engine of pod p keeps exiting")
    s2 = step(then(s1, canary_template="new", health=bad))
    assert s2.mode is Mode.HOLD and s2.record is not None
    assert s2.record["phase"] == ROLLED_BACK and s2.record["result"] == "Failed"
    assert s2.failed is not None and "CrashLoopBackOff" in s2.failed
    assert [(e.type, e.reason) for e in s2.events] == [("Warning", "CanaryFailed")]
    # The same spec stays rolled back; nothing new is said.
    s3 = step(then(s2, canary_template=None))
    assert s3.mode is Mode.HOLD and s3.record == s2.record and not s3.events


def test_restarts_are_a_failure() -> None:
    s1 = step(inp())
    s2 = step(then(s1, canary_template="new", health=CanaryHealth(ready=1, restarts=2)))
    assert s2.mode is Mode.HOLD and "restarted 2 times" in (s2.failed or "")


def test_readiness_lost_restarts_the_clock() -> None:
    s1 = step(inp())
    s2 = step(then(s1, canary_template="new", health=HEALTHY))
    s3 = step(then(s2, canary_template="new", health=CanaryHealth(ready=0),
                   now=T0 + timedelta(seconds=30)))
    assert s3.record is not None and s3.record["phase"] == PROGRESSING
    assert "analysisStartTime" not in s3.record
    s4 = step(then(s3, canary_template="new", health=HEALTHY, now=T0 + timedelta(seconds=70)))
    assert s4.record is not None and s4.record["phase"] == ANALYZING
    assert s4.record["analysisStartTime"] == "2026-01-01T12:01:10Z"


def test_waiting_for_gpus_is_said() -> None:
    s1 = step(inp())
    s2 = step(then(s1, health=CanaryHealth(waiting="no room for 1 replica of 4 GPUs")))
    assert s2.mode is Mode.CANARY and s2.record is not None
    assert s2.record["message"].startswith("waiting: no room")


def test_a_new_change_restarts_with_the_newest_template() -> None:
    s1 = step(inp())
    s2 = step(then(s1, canary_template="new", health=HEALTHY, now=T0 + timedelta(seconds=30)))
    s3 = step(then(s2, desired_template="newer", canary_template="new", health=HEALTHY,
                   now=T0 + timedelta(seconds=50)))
    assert s3.mode is Mode.CANARY and s3.record is not None
    assert s3.record["templateHash"] == "newer" and s3.record["phase"] == PROGRESSING
    assert s3.record["startTime"] == "2026-01-01T12:00:50Z"
    assert "analysisStartTime" not in s3.record
    assert [e.reason for e in s3.events] == ["CanaryRestarted"]


def test_a_revert_to_the_stable_template_removes_the_canary() -> None:
    s1 = step(inp())
    s2 = step(then(s1, desired_template="old"))
    assert s2.mode is Mode.PLAIN and s2.record is not None
    assert s2.record["phase"] == ROLLED_BACK and s2.record["result"] == "Reverted"
    assert s2.failed is None


def test_a_change_after_a_rollback_starts_a_new_canary() -> None:
    s1 = step(inp())
    s2 = step(then(s1, health=CanaryHealth(failure="ImagePullBackOff: x")))
    s3 = step(then(s2, desired_template="fixed"))
    assert s3.mode is Mode.CANARY and s3.record is not None
    assert s3.record["templateHash"] == "fixed" and s3.record["phase"] == PROGRESSING


def test_abort_and_promote_annotations_act_once() -> None:
    s1 = step(inp())
    s2 = step(then(s1, abort="1"))
    assert s2.mode is Mode.HOLD and s2.record is not None
    assert s2.record["result"] == "Aborted" and s2.record["abortToken"] == "1"
    assert ABORT_ANNOTATION in s2.record["message"]
    assert [(e.type, e.reason) for e in s2.events] == [("Warning", "CanaryAborted")]
    # The next change: the annotation left in place does not abort it.
    s3 = step(then(s2, desired_template="again", abort="1"))
    assert s3.mode is Mode.CANARY
    s4 = step(then(s3, desired_template="again", abort="1", promote="yes"))
    assert s4.mode is Mode.PLAIN and s4.record is not None
    assert s4.record["phase"] == PROMOTING and s4.record["promoteToken"] == "yes"
    assert PROMOTE_ANNOTATION in s4.record["message"]


def test_replicas_follow_the_split_at_least_one() -> None:
    assert canary_replicas(1, 10) == 1
    assert canary_replicas(9, 10) == 1
    assert canary_replicas(18, 10) == 2
    assert canary_replicas(2, 50) == 2
    assert canary_replicas(0, 10) == 1
    assert replica_weight(9, 1) == 10
    assert replica_weight(1, 1) == 50


# --- properties over random histories -------------------------------------------

# One observation: seconds since the previous one, the canary's pods Ready (all of
# them), a failure, the annotations (None: unchanged), a new spec template.
observations = st.lists(st.tuples(
    st.floats(min_value=0.0, max_value=40.0, allow_nan=False),
    st.booleans(),
    st.sampled_from([None, None, None, None, "CrashLoopBackOff: x"]),
    st.sampled_from([None, None, None, None, None, "a", "b"]),
    st.sampled_from([None, None, None, None, None, "a", "b"]),
    st.sampled_from([None, None, None, None, None, None, "t2", "t3", "old"]),
), min_size=1, max_size=30)


def _run(obs: list[Any], duration: float) -> list[tuple[CanaryInput, CanaryStep]]:
    now = T0 + timedelta(microseconds=123456)
    stable, desired = "old", "new"
    record: dict[str, Any] | None = None
    promote = abort = None
    canary_tpl: str | None = None
    out: list[tuple[CanaryInput, CanaryStep]] = []
    for dt, ready, failure, p, a, change in obs:
        now += timedelta(seconds=dt)
        promote = p if p is not None else promote
        abort = a if a is not None else abort
        desired = change or desired
        i = inp(duration_seconds=duration, stable_template=stable, desired_template=desired,
                canary_template=canary_tpl, now=now, promote=promote, abort=abort,
                health=CanaryHealth(ready=1 if ready else 0, failure=failure),
                record=json.loads(json.dumps(record)) if record is not None else None)
        s = step(i)
        out.append((i, s))
        record = s.record
        if s.mode is Mode.PLAIN:
            stable, canary_tpl = desired, None
        elif s.mode is Mode.CANARY:
            canary_tpl = desired
        else:
            canary_tpl = None
    return out


@settings(max_examples=300, deadline=None)
@given(observations, st.floats(min_value=1.0, max_value=120.0, allow_nan=False))
def test_never_promoted_before_duration_of_healthy_time(obs: list[Any], duration: float
                                                        ) -> None:
    healthy_since: datetime | None = None
    template = None
    for i, s in _run(obs, duration):
        if i.record and i.record.get("templateHash") != template:
            healthy_since, template = None, i.record.get("templateHash")
        ok = (i.health.ready >= i.replicas and i.health.failure is None
              and i.canary_template == i.desired_template)
        if not ok:
            healthy_since = None
        elif healthy_since is None:
            healthy_since = i.now
        if s.record and s.record.get("phase") == PROMOTING and s.record.get("result") == \
                "Passed" and (i.record or {}).get("phase") != PROMOTING:
            assert healthy_since is not None
            assert (i.now - healthy_since).total_seconds() >= duration


@settings(max_examples=300, deadline=None)
@given(observations)
def test_a_rollback_never_touches_the_stable(obs: list[Any]) -> None:
    for i, s in _run(obs, 30.0):
        if s.record and s.record.get("phase") == ROLLED_BACK and s.record.get(
                "result") != "Reverted":
            # The canary goes; the stable keeps the template it has.
            assert s.mode is Mode.HOLD or i.desired_template == i.stable_template
        if s.mode is Mode.PLAIN and i.desired_template != i.stable_template:
            # The stable takes a new template only when promoted or canary-free.
            assert s.record is not None and s.record["phase"] == PROMOTING


@settings(max_examples=300, deadline=None)
@given(observations)
def test_restart_safe_the_status_is_all_it_needs(obs: list[Any]) -> None:
    """Every step is a function of its input alone: re-running any step from its input
    (a restarted operator, reading the status back) gives the same outcome."""
    for i, s in _run(obs, 20.0):
        again = step(replace(i, record=json.loads(json.dumps(i.record)) if i.record else None))
        assert again == s


@settings(max_examples=300, deadline=None)
@given(observations)
def test_any_change_restarts_with_the_newest_template(obs: list[Any]) -> None:
    for i, s in _run(obs, 20.0):
        if s.mode is Mode.CANARY:
            assert s.record is not None
            assert s.record["templateHash"] == i.desired_template
            assert s.replicas >= 1
        if (i.record and i.record.get("phase") in (PROGRESSING, ANALYZING)
                and i.record.get("templateHash") != i.desired_template
                and i.desired_template != i.stable_template):
            assert s.record is not None and s.record["phase"] == PROGRESSING
            assert s.record["startTime"] == i.now.strftime("%Y-%m-%dT%H:%M:%SZ")
