"""Canary rollouts of an AIMEndpoint: the pure state machine.

When ``spec.deployment.canary.enabled`` is true and the endpoint's pod template
changes (new model version, image, recipe, arguments, pod labels or annotations),
the stable Deployment keeps the template it runs and a canary Deployment
``<name>-canary`` runs the new one. The canary must become Available and then stay
healthy (all its replicas Ready, no restart, no failure of :mod:`.pod_failures`,
no ReplicaSet or progress-deadline failure) for ``duration``; then it is promoted
(the stable Deployment takes the new template, the canary goes). A failure rolls it
back (the canary goes, the stable Deployment is never touched).

Phases (``status.canary.phase``):

* ``Progressing``: the canary Deployment runs the new template; not all of its
  replicas are Ready yet (the analysis clock is not running);
* ``Analyzing``: all canary replicas Ready since ``analysisStartTime``;
* ``Promoting``: the stable Deployment rolls to the promoted template;
* ``Succeeded``: the stable Deployment's pods of the promoted template are Ready;
* ``RolledBack``: the canary failed (``result`` Failed, with the evidence in the
  message), was aborted (``Aborted``), or the spec went back to the stable
  template (``Reverted``). The stable keeps its template until the spec changes
  again (a new canary) or the canary is disabled (a plain rolling update).

Restart-safe: :func:`step` is a function of its input alone, and everything it
carries from one reconcile to the next is in the record it returns (the status):
an operator restarted mid-canary resumes the analysis from ``analysisStartTime``,
neither restarting the clock nor promoting early. The start of the healthy period
is rounded up to the second the status can hold, so rounding never shortens it.

Manual controls are annotations on the AIMEndpoint, as tokens: a canary acts on
``aim.engine.amd.com/canary-promote`` or ``aim.engine.amd.com/canary-abort`` when
its value differs from the last value handled (kept in the record, from canary to
canary), so an annotation left in place never acts on the next canary; set a new
value (e.g. the date) to act again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from aim_controller.api.v1alpha1.groupversion import GROUP
from aim_controller.builders.meta import ANNOTATION_CONFIG_CHECKSUM
from aim_controller.recipes.backoff import parse_time

__all__ = [
    "ABORT_ANNOTATION",
    "ANALYZING",
    "PHASES",
    "PROGRESSING",
    "PROMOTE_ANNOTATION",
    "PROMOTING",
    "ROLLED_BACK",
    "SUCCEEDED",
    "CanaryEvent",
    "CanaryHealth",
    "CanaryInput",
    "CanaryStep",
    "MetricVerdict",
    "Mode",
    "canary_replicas",
    "container_restarts",
    "replica_weight",
    "step",
]

PROGRESSING = "Progressing"
ANALYZING = "Analyzing"
PROMOTING = "Promoting"
SUCCEEDED = "Succeeded"
ROLLED_BACK = "RolledBack"
PHASES = (PROGRESSING, ANALYZING, PROMOTING, SUCCEEDED, ROLLED_BACK)
ACTIVE = frozenset({PROGRESSING, ANALYZING})

# Analysis results (status.canary.result).
PENDING = "Pending"
PASSED = "Passed"
FAILED = "Failed"
ABORTED = "Aborted"
PROMOTED_BY_HAND = "PromotedByAnnotation"
REVERTED = "Reverted"

PROMOTE_ANNOTATION = f"{GROUP}/canary-promote"
ABORT_ANNOTATION = f"{GROUP}/canary-abort"

# Event reasons.
CANARY_STARTED = "CanaryStarted"
CANARY_RESTARTED = "CanaryRestarted"
CANARY_PROMOTED = "CanaryPromoted"
CANARY_SUCCEEDED = "CanarySucceeded"
CANARY_FAILED = "CanaryFailed"
CANARY_ABORTED = "CanaryAborted"
CANARY_REVERTED = "CanaryReverted"

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


class Mode(Enum):
    """Which Deployments a reconcile applies, and with which template."""

    PLAIN = "plain"
    """The stable Deployment takes the desired template; no canary Deployment."""
    CANARY = "canary"
    """The stable Deployment keeps its template; the canary runs the desired one."""
    HOLD = "hold"
    """The stable Deployment keeps its template; no canary (rolled back)."""


@dataclass(frozen=True)
class CanaryHealth:
    """What the canary's own pods and Deployment say.

    ``ready``: its pods of the desired template that are Ready; ``restarts``: the
    container restarts of its pods; ``failure``: evidence that it cannot serve
    ("<reason>: <message>", a crash loop, an image that cannot be pulled, a
    ReplicaSet that cannot create pods, a progress deadline exceeded); ``waiting``:
    why its pods cannot start yet that is not the canary's fault (no room for its
    GPUs beside the stable Deployment's), said in the status.
    """

    ready: int = 0
    restarts: int = 0
    failure: str | None = None
    waiting: str | None = None


@dataclass(frozen=True)
class MetricVerdict:
    """The metric analysis of a canary against the stable pods over the window
    (:mod:`.canary_metrics`): ``failed`` with the evidence, else passed; ``message``
    says what was compared (or that there were no requests to compare)."""

    failed: bool
    message: str


@dataclass(frozen=True)
class CanaryInput:
    """One reconcile's view of a canary.

    Templates are the hashes of the built pod templates
    (:func:`aim_controller.builders.canary.template_hash`). ``stable_template`` is
    None when there is no stable Deployment yet (the first version is never a
    canary). ``stable_ready``: the stable Deployment's pods of its template are
    available (how Promoting ends). ``record``: the last ``status.canary``.
    ``promote``/``abort``: the annotations' values, None when absent.
    """

    enabled: bool
    traffic_split: int
    duration_seconds: float
    desired_template: str
    stable_template: str | None
    stable_ready: bool
    stable_replicas: int
    canary_template: str | None
    health: CanaryHealth
    record: Mapping[str, Any] | None
    now: datetime
    promote: str | None = None
    abort: str | None = None
    # An HTTPRoute splits the requests by weight (else: by replica ratio).
    routed: bool = False
    # A Prometheus is configured: promotion also needs a metric verdict that passed.
    metrics_required: bool = False
    metrics: MetricVerdict | None = None

    @property
    def replicas(self) -> int:
        return canary_replicas(self.stable_replicas, self.traffic_split)

    @property
    def weight(self) -> int:
        """The percent of requests the canary gets."""
        if self.routed:
            return self.traffic_split
        return replica_weight(self.stable_replicas, self.replicas)


@dataclass(frozen=True)
class CanaryEvent:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class CanaryStep:
    """The outcome: which Deployments to apply (``mode``, the canary's ``replicas``),
    the new ``status.canary`` (None: no canary to speak of), the Events of the
    change, and when to look again (the end of the analysis)."""

    mode: Mode
    record: dict[str, Any] | None
    replicas: int = 0
    events: tuple[CanaryEvent, ...] = ()
    recheck_after: float | None = None

    @property
    def failed(self) -> str | None:
        """The evidence of a canary that failed (rolled back), else None."""
        r = self.record or {}
        if r.get("phase") == ROLLED_BACK and r.get("result") == FAILED:
            return str(r.get("message") or "the canary failed")
        return None


def canary_replicas(stable: int, split: int) -> int:
    """Canary replicas so that canary / (stable + canary) is nearest ``split`` percent,
    at least one."""
    if split >= 100:
        return max(stable, 1)
    return max(1, round(stable * split / (100 - split)))


def replica_weight(stable: int, canary: int) -> int:
    """The percent of the pods behind the Service that are the canary's (the share of
    requests it gets when they are balanced per pod)."""
    total = stable + canary
    return round(100 * canary / total) if total else 0


def container_restarts(pods: Iterable[Mapping[str, Any]],
                       deployment: Mapping[str, Any] | None) -> int:
    """Container restarts of the live pods of ``deployment``'s current pod template (by
    its config checksum; every pod when it has none)."""
    template = (((deployment or {}).get("spec") or {}).get("template") or {})
    checksum = ((template.get("metadata") or {}).get("annotations") or {}).get(
        ANNOTATION_CONFIG_CHECKSUM)
    total = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        if checksum is not None and (meta.get("annotations") or {}).get(
                ANNOTATION_CONFIG_CHECKSUM) != checksum:
            continue
        for key in ("initContainerStatuses", "containerStatuses"):
            total += sum(int(cs.get("restartCount") or 0) for cs in status.get(key) or ())
    return total


def _stamp(t: datetime, *, up: bool = False) -> str:
    """``t`` as the status holds it (whole seconds); ``up`` rounds up."""
    if up and t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
    return t.strftime(_STAMP)


def _tokens(record: Mapping[str, Any] | None) -> dict[str, Any]:
    r = record or {}
    return {k: r[k] for k in ("promoteToken", "abortToken") if r.get(k) is not None}


def _split_note(i: CanaryInput) -> str:
    if i.routed:
        return (f"traffic split by the HTTPRoute: {i.traffic_split}% of the requests "
                "through the Gateway to the canary's Service")
    w = i.weight
    return (f"traffic split by replica ratio ({i.replicas} canary of "
            f"{i.stable_replicas + i.replicas} pods behind the Service: about {w}% of "
            f"requests, trafficSplit asks {i.traffic_split}%; approximate)")


def _start(i: CanaryInput, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "phase": PROGRESSING,
        "weight": i.weight,
        "replicas": i.replicas,
        "startTime": _stamp(i.now),
        "templateHash": i.desired_template,
        "stableTemplateHash": i.stable_template,
        "result": PENDING,
        "message": f"canary started; {_split_note(i)}",
        **_tokens(previous),
    }


def _finish(r: Mapping[str, Any], phase: str, result: str, message: str) -> dict[str, Any]:
    # The canary and its weight go; a promoted one's healthy period stays on record.
    out = dict(r) | {"phase": phase, "result": result, "message": message,
                     "weight": 0, "replicas": 0}
    if phase != PROMOTING:
        out.pop("analysisStartTime", None)
    return out


def _rollback(r: Mapping[str, Any], result: str, evidence: str, event: CanaryEvent
              ) -> CanaryStep:
    return CanaryStep(Mode.HOLD, _finish(r, ROLLED_BACK, result, evidence), events=(event,))


def _promote(r: Mapping[str, Any], result: str, message: str) -> CanaryStep:
    rec = _finish(r, PROMOTING, result, message)
    return CanaryStep(Mode.PLAIN, rec, events=(CanaryEvent("Normal", CANARY_PROMOTED, message),))


def step(i: CanaryInput) -> CanaryStep:
    """The next step of the endpoint's canary (see the module docstring)."""
    r = dict(i.record) if i.record else None
    if not i.enabled or i.stable_template is None:
        return CanaryStep(Mode.PLAIN, None)
    active = r is not None and r.get("phase") in ACTIVE
    if r is not None and active and r.get("templateHash") != i.desired_template:
        if i.desired_template == i.stable_template:
            msg = "the spec went back to the stable template: the canary is removed"
            return CanaryStep(Mode.PLAIN, _finish(r, ROLLED_BACK, REVERTED, msg),
                              events=(CanaryEvent("Normal", CANARY_REVERTED, msg),))
        rec = _start(i, r)
        rec["message"] = ("a new spec change restarts the canary with the newest template; "
                          + _split_note(i))
        return CanaryStep(Mode.CANARY, rec, i.replicas,
                          (CanaryEvent("Normal", CANARY_RESTARTED, rec["message"]),))
    if (r is not None and r.get("phase") == PROMOTING
            and r.get("templateHash") == i.desired_template):
        # Promoting goes on (the stable's apply is repeated until it lands) until the
        # stable Deployment's pods of the promoted template are available.
        if i.desired_template == i.stable_template and i.stable_ready:
            msg = "the stable Deployment runs the promoted template"
            rec = r | {"phase": SUCCEEDED, "message": msg}
            return CanaryStep(Mode.PLAIN, rec,
                              events=(CanaryEvent("Normal", CANARY_SUCCEEDED, msg),))
        return CanaryStep(Mode.PLAIN, r)
    if i.desired_template == i.stable_template:
        return CanaryStep(Mode.PLAIN, r)
    if r is not None and r.get("phase") == ROLLED_BACK and r.get("templateHash") == \
            i.desired_template:
        return CanaryStep(Mode.HOLD, r)
    if r is None or not active:
        rec = _start(i, r)
        return CanaryStep(Mode.CANARY, rec, i.replicas,
                          (CanaryEvent("Normal", CANARY_STARTED, rec["message"]),))
    return _running(i, r)


def _running(i: CanaryInput, r: dict[str, Any]) -> CanaryStep:
    """An active canary of the desired template: manual controls, evidence, clock."""
    abort, promote = i.abort, i.promote
    if abort is not None and abort != r.get("abortToken"):
        msg = (f"aborted by the {ABORT_ANNOTATION} annotation ({abort!r}): the canary is "
               "removed, the stable Deployment keeps serving")
        return _rollback(r | {"abortToken": abort}, ABORTED, msg,
                         CanaryEvent("Warning", CANARY_ABORTED, msg))
    if promote is not None and promote != r.get("promoteToken"):
        return _promote(r | {"promoteToken": promote}, PROMOTED_BY_HAND,
                        f"promoted by the {PROMOTE_ANNOTATION} annotation ({promote!r})")
    h = i.health
    evidence = h.failure
    if evidence is None and h.restarts > 0:
        evidence = f"the canary's containers restarted {h.restarts} times"
    if evidence is not None:
        msg = f"canary rolled back, the stable Deployment is untouched: {evidence}"
        return _rollback(r, FAILED, msg, CanaryEvent("Warning", CANARY_FAILED, msg))
    n = i.replicas
    base = r | {"replicas": n, "weight": i.weight}
    if i.canary_template != i.desired_template or h.ready < n:
        if h.waiting:
            why = f"waiting: {h.waiting}"
        elif r.get("phase") == ANALYZING:
            why = (f"readiness lost during the analysis ({h.ready} of {n} canary replicas "
                   "Ready): the analysis clock restarts once all are Ready")
        else:
            why = f"{h.ready} of {n} canary replicas Ready"
        rec = {k: v for k, v in base.items() if k != "analysisStartTime"}
        return CanaryStep(Mode.CANARY, rec | {"phase": PROGRESSING, "message": f"{why}; "
                                              + _split_note(i)}, n)
    since = parse_time(r.get("analysisStartTime")) if r.get("phase") == ANALYZING else None
    if since is None:
        stamp = _stamp(i.now, up=True)
        since = parse_time(stamp)
        assert since is not None
        base = base | {"analysisStartTime": stamp}
    healthy = (i.now - since).total_seconds()
    if healthy >= i.duration_seconds and i.metrics_required:
        if i.metrics is None:
            msg = (f"healthy for {i.duration_seconds:g}s; waiting for the metric analysis "
                   "(Prometheus); " + _split_note(i))
            return CanaryStep(Mode.CANARY, base | {"phase": ANALYZING, "message": msg}, n)
        if i.metrics.failed:
            msg = ("canary rolled back, the stable Deployment is untouched: metric "
                   f"analysis failed: {i.metrics.message}")
            return _rollback(r, FAILED, msg, CanaryEvent("Warning", CANARY_FAILED, msg))
    if healthy >= i.duration_seconds:
        metrics = f"; metric analysis passed: {i.metrics.message}" if (
            i.metrics_required and i.metrics is not None) else ""
        return _promote(base, PASSED,
                        f"promoted: the canary stayed healthy for {i.duration_seconds:g}s "
                        f"({n} of {n} replicas Ready, no restart, no failure){metrics}")
    left = i.duration_seconds - healthy
    msg = (f"all {n} canary replicas Ready, no restart, no failure; promoted in "
           f"{math.ceil(left)}s if it stays so; {_split_note(i)}")
    return CanaryStep(Mode.CANARY, base | {"phase": ANALYZING, "message": msg}, n,
                      recheck_after=left + 1.0)

