"""The decide step's part of a canary rollout (pure): from what was observed and the
Deployment the spec asks for, the canary state machine's input
(:mod:`.endpoint_canary`), and the Deployments its step asks for.

The canary's GPUs are counted beside the stable Deployment's: the stable's bound
pods keep theirs (no double booking); a canary that cannot fit says so in the status
and waits, the stable one serving meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aim_controller.api.v1alpha1 import DEFAULT_CANARY_DURATION
from aim_controller.builders import deployment_replicas, stamp_applied_hash
from aim_controller.builders.canary import (
    build_canary_deployment,
    canary_name,
    deployment_template_hash,
    stable_keeping_template,
    stamp_template_hash,
    template_hash,
)
from aim_controller.builders.diff import covers
from aim_controller.builders.durations import parse_duration_seconds
from aim_controller.builders.httproute import build_canary_service, build_httproute

from .conditions import FALSE, TRUE, Cond
from .endpoint_canary import (
    ABORT_ANNOTATION,
    ACTIVE,
    CANARY_FAILED,
    PROMOTE_ANNOTATION,
    CanaryHealth,
    CanaryInput,
    CanaryStep,
    Mode,
    step,
)
from .endpoint_observe import Observed
from .pod_failures import replica_failure

__all__ = [
    "GATEWAY_API_NOT_SERVED",
    "GATEWAY_ROUTED",
    "LEGACY_TEMPLATE",
    "analysis_window",
    "canary_conditions",
    "canary_deployments",
    "canary_status",
    "rollout_complete",
    "routed",
]

MAX_TOKEN = 256
GATEWAY_ROUTED = "GatewayRouted"
GATEWAY_API_NOT_SERVED = "GatewayAPINotServed"
# A stable Deployment from before canaries, whose template differs from the spec's.
LEGACY_TEMPLATE = "unstamped"


def rollout_complete(deployment: Mapping[str, Any] | None) -> bool:
    """The Deployment runs its current template on all its replicas, all available
    (what ``kubectl rollout status`` waits for)."""
    if not deployment:
        return False
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    want = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    return (int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
            and int(st.get("updatedReplicas") or 0) >= want
            and int(st.get("availableReplicas") or 0) >= want
            and int(st.get("replicas") or 0) <= int(st.get("updatedReplicas") or 0))


def _stable_hash(stable: Mapping[str, Any] | None, built: Mapping[str, Any]) -> str | None:
    if stable is None:
        return None
    stamped = deployment_template_hash(stable)
    if stamped is not None:
        return stamped
    # Not stamped yet (the canary was off until now): the same template if it carries
    # every field of the built one.
    template = built["spec"]["template"]
    same = covers(template, (stable.get("spec") or {}).get("template"), ("spec", "template"))
    return template_hash(template) if same else LEGACY_TEMPLATE


def _token(value: object) -> str | None:
    """An annotation's value as the status keeps it (status.canary's tokens hold 256
    characters)."""
    return None if value is None else str(value)[:MAX_TOKEN]


def _progress_stuck(deployment: Mapping[str, Any] | None) -> str | None:
    for c in ((deployment or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return str(c.get("message") or "rollout exceeded its progress deadline")
    return None


def _health(o: Observed, replicas: int, gpu: tuple[str, int] | None) -> CanaryHealth:
    canary = o.children.get(("Deployment", canary_name(o.name)))
    pods = o.canary_pods
    failure: str | None = None
    if pods.failure is not None:
        failure = f"{pods.failure.reason}: {pods.failure.message}"
    elif (created := replica_failure(canary)) is not None:
        failure = f"{created[0]}: {created[1]}"
    elif (stuck := _progress_stuck(canary)) is not None:
        failure = f"ProgressDeadlineExceeded: {stuck}"
    waiting: str | None = None
    if gpu is not None and pods.ready < replicas:
        hardware, g = gpu
        # Its own bound pods' GPUs are free to it; the stable's are not.
        pool = o.inventory.take(o.pods.held).pool(hardware)
        fit = pool.replicas_that_fit(g) if pool is not None else 0
        if fit < replicas:
            free = pool.free_summary(gpus_per_replica=g) if pool is not None else "none"
            waiting = (f"no room for {replicas} canary replica(s) of {g} {hardware} GPU(s) "
                       f"beside the stable Deployment's (free: {free or 'none'}); the stable "
                       "Deployment keeps serving")
    if waiting is None and pods.unschedulable_since is not None:
        waiting = f"canary pods cannot be scheduled: {pods.unschedulable_message}"
    return CanaryHealth(pods.ready, o.canary_restarts, failure, waiting)


def routed(o: Observed) -> bool:
    """An HTTPRoute attaches the endpoint to ``spec.service.gateway`` (the Gateway API's
    HTTPRoute is served)."""
    return bool(o.endpoint is not None and o.endpoint.spec.service.gateway is not None
                and o.routes_available)


def canary_deployments(
    o: Observed, desired: tuple[dict[str, Any], ...], gpu: tuple[str, int] | None
) -> tuple[tuple[dict[str, Any], ...], CanaryStep | None]:
    """``desired`` with the Deployments the canary's step asks for, the canary's
    Service and the HTTPRoute where a route splits the requests, and that step (None
    when the canary is off)."""
    desired, s = _deployments(o, desired, gpu)
    if not routed(o):
        return desired, s
    assert o.endpoint is not None
    split = s is not None and s.mode is Mode.CANARY
    extra = [build_canary_service(o.endpoint)] if split else []
    route = build_httproute(o.endpoint, s.record["weight"] if split and s and s.record
                            else None)
    extra += [route] if route is not None else []
    return (*desired, *(stamp_applied_hash(d) for d in extra)), s


def _deployments(
    o: Observed, desired: tuple[dict[str, Any], ...], gpu: tuple[str, int] | None
) -> tuple[tuple[dict[str, Any], ...], CanaryStep | None]:
    assert o.endpoint is not None
    spec = o.endpoint.spec
    c = spec.deployment.canary
    index = next((n for n, d in enumerate(desired)
                  if d["kind"] == "Deployment" and d["metadata"]["name"] == o.name), None)
    if not c.enabled or index is None:
        return desired, None
    built = stamp_template_hash(desired[index])
    stable = o.deployment
    annotations = (o.obj.get("metadata") or {}).get("annotations") or {}
    i = CanaryInput(
        enabled=True,
        traffic_split=c.traffic_split,
        duration_seconds=float(parse_duration_seconds(c.duration or DEFAULT_CANARY_DURATION)),
        desired_template=template_hash(built["spec"]["template"]),
        stable_template=_stable_hash(stable, built),
        stable_ready=rollout_complete(stable),
        stable_replicas=deployment_replicas(spec),
        canary_template=deployment_template_hash(
            o.children.get(("Deployment", canary_name(o.name)))),
        health=CanaryHealth(),
        record=o.status.get("canary"),
        now=o.now,
        promote=_token(annotations.get(PROMOTE_ANNOTATION)),
        abort=_token(annotations.get(ABORT_ANNOTATION)),
        routed=routed(o),
        metrics_required=o.metrics_required,
        metrics=o.canary_metrics,
    )
    i = replace(i, health=_health(o, i.replicas, gpu))
    s = step(i)
    out = list(desired)
    if s.mode is Mode.PLAIN or stable is None:
        out[index] = stamp_applied_hash(built)
    else:
        out[index] = stamp_applied_hash(stable_keeping_template(built, stable))
        if s.mode is Mode.CANARY:
            out.insert(index + 1, stamp_applied_hash(
                build_canary_deployment(built, s.replicas, routed=i.routed)))
    return tuple(out), s


def analysis_window(o: Observed, s: CanaryStep | None) -> float | None:
    """The seconds of metrics a running canary is judged on (its duration), or None
    when no canary runs."""
    if o.endpoint is None or s is None or (s.record or {}).get("phase") not in ACTIVE:
        return None
    c = o.endpoint.spec.deployment.canary
    return float(parse_duration_seconds(c.duration or DEFAULT_CANARY_DURATION))


def canary_conditions(o: Observed, s: CanaryStep | None) -> list[Cond]:
    """``GatewayRouted`` while ``spec.service.gateway`` is set (False, and the split by
    replica ratio, where the Gateway API is not served); ``CanaryFailed`` while the
    canary is on: True with the evidence of the last canary's failure."""
    out: list[Cond] = []
    gw = o.endpoint.spec.service.gateway if o.endpoint is not None else None
    if gw is not None:
        where = f"{gw.namespace}/{gw.name}" if gw.namespace else gw.name
        if routed(o):
            out.append(Cond(GATEWAY_ROUTED, TRUE, "HTTPRouteApplied",
                            f"the HTTPRoute {o.name} attaches the endpoint to Gateway {where}"))
        else:
            out.append(Cond(GATEWAY_ROUTED, FALSE, GATEWAY_API_NOT_SERVED,
                            f"spec.service.gateway names Gateway {where}, but the Gateway "
                            "API's HTTPRoute is not served in this cluster: no route (a "
                            "canary splits by replica ratio); install the Gateway API CRDs"))
    if s is None:
        return out
    if s.failed is not None:
        return [*out, Cond(CANARY_FAILED, TRUE, "RolledBack", s.failed)]
    phase = str((s.record or {}).get("phase") or "NoCanary")
    return [*out, Cond(CANARY_FAILED, FALSE, phase, str((s.record or {}).get("message")
                                                        or "no canary has run"))]


def canary_status(o: Observed, s: CanaryStep | None, chosen: bool) -> dict[str, Any]:
    """``{"canary": record}`` of the status, or nothing: the step's record; kept as it
    was while no configuration is chosen (nothing is applied then, and the canary
    resumes from it)."""
    record = s.record if s is not None else None if chosen else o.status.get("canary")
    return {"canary": record} if record is not None else {}
