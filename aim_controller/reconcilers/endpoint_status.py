"""Pure status computation for an AIMEndpoint: conditions, replicas, URL.

Kept apart from the reconcile's I/O so that "what does the user see" is a
function of (decision, apply outcome, observed Deployment, pods) alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpointSpec
from aim_controller.builders import replicas_clamp
from aim_controller.builders.pod_security import admission_warning

from .conditions import FALSE, TRUE, Cond
from .pod_failures import PodFailure, replica_failure

RECIPE_SELECTED = "RecipeSelected"
RESOURCES_READY = "ResourcesReady"
AVAILABLE = "Available"
READY = "Ready"
DEGRADED = "Degraded"
CHILD_CONFLICT = "ChildConflict"
# Degraded: the scheduler cannot place the pods (the pods' PodScheduled reason too).
UNSCHEDULABLE = "Unschedulable"


def status_record(decision_status: Mapping[str, Any]) -> dict[str, Any]:
    """The selection record as the API server will store and return it.

    The record is also copied into the ConfigMap; if it differed from what a
    later reconcile reads back from the status (``11100.0`` written, ``11100``
    returned: Go encodes integral floats without a fraction), every endpoint's
    ConfigMap would be applied a second time.
    """
    return {k: as_api_json(v) for k, v in decision_status.items()}


def as_api_json(value: Any) -> Any:
    """``value`` after a round trip through the API server's JSON (integral floats
    become ints)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: as_api_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_api_json(v) for v in value]
    return value


def service_url(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


@dataclass(frozen=True)
class PodsState:
    """What the endpoint's own pods say."""

    unschedulable_since: datetime | None = None
    unschedulable_message: str = ""
    gpus_in_use: int = 0
    # (node, device requests) of the bound ones: given back to their endpoint's selection.
    held: tuple[tuple[str, Mapping[str, int]], ...] = ()
    # Whether another recipe could place them (GPU reasons, not a PVC or CPU/memory).
    unschedulable_fixable: bool = False
    # Live pods of the current template that are bound to a node.
    bound: int = 0
    # Pods of the current template that are Ready (and not being deleted).
    ready: int = 0
    # Why a pod of the current template cannot serve (the first, by pod_failures' order).
    failure: PodFailure | None = None


@dataclass(frozen=True)
class ApplyOutcome:
    applied: int = 0
    desired: int = 0
    errors: tuple[str, ...] = ()
    # Children whose name is taken by an object this endpoint does not own.
    conflicts: tuple[str, ...] = ()


def _dep_status(deployment: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (deployment or {}).get("status") or {}


def _progress_stuck(deployment: Mapping[str, Any] | None) -> str | None:
    for c in _dep_status(deployment).get("conditions") or ():
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return str(c.get("message") or "rollout exceeded its progress deadline")
    return None


def endpoint_conditions(
    *,
    spec: AIMEndpointSpec | None,
    selected: tuple[bool, str, str],
    outcome: ApplyOutcome | None,
    deployment: Mapping[str, Any] | None,
    desired_replicas: int,
    pods: PodsState,
    url: str | None,
    api_error: str | None = None,
    cache: Cond | None = None,
    waiting_for_cache: bool = False,
    optional: Sequence[Cond] = (),
) -> list[Cond]:
    """The five conditions, in a fixed order, and ``cache`` (CacheReady, when an
    AIMCache lists the model) and ``optional`` (MonitoringReady, ScalingReady: see
    :mod:`.endpoint_optional_apis`) before Ready. ``selected`` = (ok, reason, message).
    ``waiting_for_cache``: no Deployment until the AIMCache has the model (Available
    and so Ready say so). Ready follows the first three only: neither the cache nor an
    optional API keeps the endpoint from serving."""
    ok, sel_reason, sel_message = selected
    conds = [Cond(RECIPE_SELECTED, TRUE if ok else FALSE, sel_reason, sel_message)]

    if not ok:
        res = Cond(RESOURCES_READY, FALSE, "RecipeNotSelected",
                   "children are not applied until a recipe is selected")
    elif outcome is not None and outcome.conflicts:
        res = Cond(RESOURCES_READY, FALSE, CHILD_CONFLICT,
                   "; ".join(f"{c} already exists and is not this endpoint's: it is left "
                             "as it is; delete or rename it" for c in outcome.conflicts))
    elif outcome is not None and outcome.errors:
        res = Cond(RESOURCES_READY, FALSE, "ApplyFailed", "; ".join(outcome.errors))
    else:
        n = outcome.desired if outcome else 0
        res = Cond(RESOURCES_READY, TRUE, "Applied", f"all {n} child objects are applied")
    warning = admission_warning(spec) if spec is not None and ok else None
    if warning:  # applied, but a restricted namespace will refuse the pods
        res = Cond(res.type, res.status, res.reason, f"{res.message}; {warning}")
    conds.append(res)

    # The current template's Ready pods: during a rollout the old ReplicaSet's pods,
    # which the Deployment counts as available, are not what the endpoint asked for.
    available = pods.ready
    min_replicas = spec.scaling.min_replicas if spec is not None else 1
    required = min(max(min_replicas, 1), desired_replicas) if desired_replicas > 0 else 0
    if deployment is None and waiting_for_cache and cache is not None:
        avail = Cond(AVAILABLE, FALSE, cache.reason, cache.message)
    elif deployment is None:
        avail = Cond(AVAILABLE, FALSE, "DeploymentNotFound", "the Deployment does not exist yet")
    elif desired_replicas == 0:
        avail = Cond(AVAILABLE, FALSE, "ScaledToZero", "the endpoint is scaled to 0 replicas")
    elif available >= required:
        avail = Cond(AVAILABLE, TRUE, "MinimumReplicasAvailable",
                     f"{available} of {desired_replicas} replicas available")
    else:
        avail = Cond(AVAILABLE, FALSE, "MinimumReplicasUnavailable",
                     f"{available} of {desired_replicas} replicas available, "
                     f"at least {required} needed")
    clamp = replicas_clamp(spec) if spec is not None else None
    if clamp:  # kubectl scale past the bounds is not silently ignored
        avail = Cond(avail.type, avail.status, avail.reason, f"{avail.message}; {clamp}")
    conds.append(avail)

    problems: list[tuple[str, str]] = []
    if api_error is not None:
        problems.append(("ApiError", api_error))
    if not ok:
        problems.append((sel_reason, sel_message))
    if outcome is not None and outcome.conflicts:
        problems.append((CHILD_CONFLICT, res.message))
    if outcome is not None and outcome.errors:
        problems.append(("ApplyFailed", res.message))
    created = replica_failure(deployment)
    if created:
        problems.append(created)
    if pods.unschedulable_since is not None:
        problems.append((UNSCHEDULABLE,
                         pods.unschedulable_message or "pods cannot be scheduled"))
    if pods.failure is not None:
        problems.append((pods.failure.reason, pods.failure.message))
    stuck = _progress_stuck(deployment)
    if stuck:
        problems.append(("ProgressDeadlineExceeded", stuck))
    if problems:
        reason, message = problems[0]
        degraded = Cond(DEGRADED, TRUE, reason, message)
    else:
        degraded = Cond(DEGRADED, FALSE, "AsExpected", "no problem detected")

    parts = conds[:3]
    failing = next((c for c in parts if c.status != TRUE), None)
    if failing is None:
        ready = Cond(READY, TRUE, "Ready", f"serving at {url}" if url else "serving")
    else:
        ready = Cond(READY, FALSE, failing.reason, f"{failing.type}: {failing.message}")
    return [*conds, degraded, *([cache] if cache is not None else []), *optional, ready]


def replica_counts(deployment: Mapping[str, Any] | None) -> dict[str, int]:
    st = _dep_status(deployment)
    return {
        "replicas": int(st.get("replicas") or 0),
        "readyReplicas": int(st.get("readyReplicas") or 0),
        "availableReplicas": int(st.get("availableReplicas") or 0),
    }


REPLICA_COUNTS = ("replicas", "readyReplicas", "availableReplicas")
# The conditions that follow the pods' progress (the Deployment's counts beside them).
PROGRESS_CONDITIONS = frozenset({AVAILABLE, READY})


def deployment_behind(deployment: Mapping[str, Any] | None, pods: PodsState) -> bool:
    """Whether the Deployment's status has yet to count what is known already: its
    spec change, or pods the pod cache shows Ready. Its update follows (and
    re-enqueues the endpoint), so its counts now are superseded before anyone could
    act on them. (Not bound pods: a terminating one is bound but no longer counted,
    and its end brings no Deployment update.)"""
    if deployment is None:
        return False
    st = _dep_status(deployment)
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    return (int(st.get("observedGeneration") or 0) < generation
            or int(st.get("readyReplicas") or 0) < pods.ready)


def progress_only(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """Whether ``desired`` differs from ``observed`` in the replica counts and the
    Available and Ready conditions alone (nothing new about the spec, the children or
    a problem)."""
    def rest(status: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in status.items() if k not in REPLICA_COUNTS}
        out["conditions"] = [c for c in status.get("conditions") or ()
                             if c.get("type") not in PROGRESS_CONDITIONS]
        return out
    return status_equal(rest(desired), rest(observed or {}))


def status_equal(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """Whether writing ``desired`` would change ``observed`` (the whole status we own)."""
    observed = observed or {}
    # Equal as they are is equal normalized (the common case: a reconcile with no news).
    return desired == observed or bool(_normalize(desired) == _normalize(observed))


def _normalize(v: Any) -> Any:
    t = type(v)
    if t is dict or (t is not str and t is not list and isinstance(v, Mapping)):
        return {k: _normalize(x) for k, x in v.items() if x is not None}
    if t is list or (t is not str and isinstance(v, Sequence)):
        return [_normalize(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
