"""Step 4 of an AIMEndpoint reconcile: report. The pure half: from what was observed,
planned and applied, the status to write and the Events that explain the change.

The status is written only when it differs from the observed one, and Events are
emitted only with a status write (an unchanged status has nothing new to say).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aim_controller.builders import deployment_replicas, replicas_clamp
from aim_controller.builders.pod_security import admission_warning
from aim_controller.machinery.handlers import KubeObject
from aim_controller.recipes.identity import ConfigId

from .conditions import merge_conditions
from .endpoint_cache import CACHE_READY, CACHE_UNAVAILABLE, CACHE_WAIT_TIMED_OUT
from .endpoint_canary_plan import (
    GATEWAY_API_NOT_SERVED,
    GATEWAY_ROUTED,
    canary_conditions,
    canary_status,
)
from .endpoint_decide import Plan
from .endpoint_observe import ChildKey, Observed
from .endpoint_optional_apis import (
    GPU_METRICS_UNAVAILABLE,
    MONITORING_READY,
    PROMETHEUS_OPERATOR_NOT_INSTALLED,
    SCALING_READY,
    monitoring_condition,
    scaling_condition,
)
from .endpoint_status import (
    AVAILABLE,
    CHILD_CONFLICT,
    DEGRADED,
    RECIPE_SELECTED,
    RESOURCES_READY,
    UNSCHEDULABLE,
    ApplyOutcome,
    PodsState,
    deployment_behind,
    endpoint_conditions,
    progress_only,
    replica_counts,
)
from .pod_failures import WORKLOAD_FAILURES

__all__ = ["ApplyResult", "EventNote", "desired_status", "invalid_status", "progress_held",
           "status_events"]

# Status fields an invalid spec leaves as they were (the last good selection and scale).
_KEPT_WHEN_INVALID = ("recipe", "replicas", "selector", "cache", "canary")
# The Event of a spec.replicas above scaling.maxReplicas (the Deployment runs the maximum).
REPLICAS_CLAMPED = "ReplicasClamped"
# The Event of pods that a namespace enforcing Pod Security "restricted" would refuse.
POD_SECURITY_ADMISSION = "PodSecurityNotRestricted"


@dataclass(frozen=True)
class ApplyResult:
    """Step 3's output: the counts and errors of the apply, and the objects the server
    returned from the writes (newer than the observed ones)."""

    outcome: ApplyOutcome
    written: Mapping[ChildKey, KubeObject] = field(default_factory=dict)
    retry_after: float | None = None


@dataclass(frozen=True)
class EventNote:
    type: str
    reason: str
    message: str


def _deployment(o: Observed, applied: ApplyResult | None) -> KubeObject | None:
    # Read-your-writes: what this reconcile wrote is newer than anything the caches
    # held. A Deployment created just now is told as there with 0 of N replicas, not
    # as missing: its arrival in the caches is then no stage of its own to write.
    written = applied.written.get(("Deployment", o.name)) if applied is not None else None
    return written if written is not None else o.deployment


def desired_status(
    o: Observed, plan: Plan, applied: ApplyResult | None, now: str, selector: str,
    api_error: str | None = None,
) -> dict[str, Any]:
    """The whole status of a valid endpoint. ``api_error``: the API server has failed
    this endpoint's writes several times in a row (shown as Degraded ApiError)."""
    assert o.endpoint is not None and plan.decision is not None and plan.record is not None
    decision = plan.decision
    if decision.chosen is not None:
        selected = (True, str(plan.record.get("reason") or decision.reason),
                    str(plan.record.get("message") or decision.message))
    else:
        selected = (False, str(decision.reason), decision.message)
    deployment = _deployment(o, applied)
    outcome = applied.outcome if applied else None
    optional = [c for c in (
        monitoring_condition(o.endpoint, served=o.monitoring_available, chosen=plan.chosen,
                             outcome=outcome),
        scaling_condition(o.endpoint, custom_metrics=o.custom_metrics_available,
                          keda_served=o.keda_available,
                          prometheus_url=o.gpu_metrics_url,
                          scaled_object=o.children.get(("ScaledObject", o.name)),
                          outcome=outcome),
    ) if c is not None]
    conds = endpoint_conditions(
        spec=o.endpoint.spec, selected=selected,
        outcome=outcome, deployment=deployment,
        desired_replicas=plan.desired_replicas, pods=o.pods, url=plan.url,
        api_error=api_error,
        cache=plan.cache.condition if plan.cache else None,
        waiting_for_cache=plan.cache is not None and plan.cache.wait,
        optional=optional,
    ) + canary_conditions(o, plan.canary)
    return {
        "observedGeneration": o.generation,
        "conditions": merge_conditions(o.status.get("conditions"), conds, o.generation, now),
        **replica_counts(deployment),
        "selector": selector,
        "url": plan.url,
        "recipe": plan.record,
        **({"cache": plan.cache.status()} if plan.cache is not None else {}),
        **canary_status(o, plan.canary, plan.chosen),
    }


def progress_held(o: Observed, applied: ApplyResult | None, status: Mapping[str, Any]) -> bool:
    """Whether writing ``status`` waits: it only tells progress (replica counts,
    Available, Ready) while the Deployment's status has yet to count what the caches
    show. Its update re-enqueues the endpoint, and one write then tells the stage with
    counts that agree; a lost replica or a problem is never held (the Deployment is
    not behind then, or more than progress changed)."""
    return progress_only(status, o.status) and deployment_behind(_deployment(o, applied), o.pods)


def invalid_status(o: Observed, now: str) -> dict[str, Any]:
    """The status of an endpoint whose spec cannot be acted on."""
    assert o.invalid is not None
    conds = endpoint_conditions(
        spec=None, selected=(False, "InvalidSpec", o.invalid), outcome=None,
        deployment=None, desired_replicas=0, pods=PodsState(), url=None,
    )
    return {
        **{k: v for k, v in o.status.items() if k in _KEPT_WHEN_INVALID},
        "observedGeneration": o.generation,
        "conditions": merge_conditions(o.status.get("conditions"), conds, o.generation, now),
    }


def status_events(o: Observed, plan: Plan, status: Mapping[str, Any]) -> list[EventNote]:
    """What a status write that changed the status tells as Events: a new choice of
    configuration, a new reason for having none, an invalid spec, and each new
    problem a condition reports (see :data:`WARNED_CONDITIONS`)."""
    if o.invalid is not None:
        return [EventNote("Warning", "InvalidSpec", o.invalid)]
    return [*_selection_events(o, plan, status), *_condition_events(o.status, status),
            *_clamp_events(o), *_admission_events(o, plan),
            *(EventNote(e.type, e.reason, e.message)
              for e in (plan.canary.events if plan.canary is not None else ()))]


def _clamp_events(o: Observed) -> list[EventNote]:
    """``spec.replicas`` above scaling.maxReplicas (kubectl scale): the Available
    message says so, and one Event per new count. Below minReplicas is the documented
    floor (a fresh endpoint's default replicas 1 under minReplicas 2): message only."""
    assert o.endpoint is not None
    spec = o.endpoint.spec
    note = replicas_clamp(spec)
    if note is None or spec.replicas < deployment_replicas(spec):
        return []
    old = _condition(o.status, AVAILABLE)
    if old is not None and note in str(old.get("message") or ""):
        return []
    return [EventNote("Warning", REPLICAS_CLAMPED, note)]


def _admission_events(o: Observed, plan: Plan) -> list[EventNote]:
    """Pods a restricted (or baseline) namespace would refuse (root, seccomp
    Unconfined): one Warning Event per new reason, which the ResourcesReady message
    carries while it holds."""
    assert o.endpoint is not None
    warning = admission_warning(o.endpoint.spec)
    if warning is None or not plan.chosen:
        return []
    old = _condition(o.status, RESOURCES_READY)
    if old is not None and warning in str(old.get("message") or ""):
        return []
    return [EventNote("Warning", POD_SECURITY_ADMISSION, warning)]


def _selection_events(o: Observed, plan: Plan, status: Mapping[str, Any]) -> list[EventNote]:
    decision = plan.decision
    assert decision is not None
    if decision.chosen is not None:
        record = status.get("recipe") or {}
        if ConfigId.from_record(record) == ConfigId.from_record(o.status.get("recipe")):
            return []
        return [EventNote("Normal", str(record.get("reason") or "RecipeSelected"),
                          str(record.get("message") or decision.message))]
    old = _condition(o.status, RECIPE_SELECTED)
    if old is not None and old.get("status") == "False" and old.get("reason") == str(
            decision.reason):
        return []
    return [EventNote("Warning", str(decision.reason), decision.message)]


# Pods the scheduler cannot place; a rollout past its progressDeadlineSeconds.
_ROLLOUT_PROBLEMS = (UNSCHEDULABLE, "ProgressDeadlineExceeded")
# (condition type, status) -> the reasons that get a Warning Event when a condition
# turns to them, or keeps one with a new message: once per change, not per reconcile.
WARNED_CONDITIONS: dict[tuple[str, str], frozenset[str]] = {
    (RESOURCES_READY, "False"): frozenset({CHILD_CONFLICT}),
    (GATEWAY_ROUTED, "False"): frozenset({GATEWAY_API_NOT_SERVED}),
    # A pod or ReplicaSet failure: once per failure, not per kubelet retry.
    (DEGRADED, "True"): frozenset({"ApiError", *WORKLOAD_FAILURES, *_ROLLOUT_PROBLEMS}),
    # An AIMCache that cannot serve the model: the endpoint downloads it itself.
    (CACHE_READY, "False"): frozenset({CACHE_UNAVAILABLE, CACHE_WAIT_TIMED_OUT}),
    # An API the spec asks for that the cluster does not serve (followed when it comes).
    (MONITORING_READY, "False"): frozenset({PROMETHEUS_OPERATOR_NOT_INSTALLED}),
    (SCALING_READY, "False"): frozenset({GPU_METRICS_UNAVAILABLE}),
}


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or () if c.get("type") == type_), None)


_COUNTS = re.compile(r"\d+")


def _cause(condition: Mapping[str, Any]) -> tuple[Any, Any, str]:
    """What a Warning is about. The scheduler's message counts nodes ("0/9 nodes are
    available: ...") and is rewritten at every retry, so a node joining or leaving the
    cluster would read as a new problem: for Unschedulable only the words count. The
    condition itself keeps the current message."""
    message = str(condition.get("message") or "")
    if condition.get("reason") == UNSCHEDULABLE:
        message = _COUNTS.sub("N", message)
    return condition.get("status"), condition.get("reason"), message


def _condition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[EventNote]:
    out: list[EventNote] = []
    for (type_, state), reasons in WARNED_CONDITIONS.items():
        now = _condition(new, type_)
        if now is None or now.get("status") != state or now.get("reason") not in reasons:
            continue
        before = _condition(old, type_)
        seen = before is not None and _cause(before) == _cause(now)
        if not seen:
            out.append(EventNote("Warning", str(now["reason"]), str(now.get("message") or "")))
    return out
