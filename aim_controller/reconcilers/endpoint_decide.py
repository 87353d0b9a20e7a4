"""Step 2 of an AIMEndpoint reconcile: decide. Pure: :class:`Observed` in, :class:`Plan` out.

The recipe choice against the observed GPUs, the selection record, every desired
child, which of them the observed state does not carry yet (to apply), which
controlled children are no longer desired (to prune), and when to look again.
Equal observations give equal plans; a converged endpoint's plan applies and
prunes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aim_controller.builders import (
    ChosenRecipe,
    OperatorSettings,
    deployment_replicas,
    desired_children,
    needs_apply,
    released_cache_pvc,
    stamp_applied_hash,
)
from aim_controller.machinery.handlers import KubeObject
from aim_controller.recipes import Decision, Reason, select
from aim_controller.recipes.request import PreviousChoice

from .endpoint_cache import DEFAULT_CACHE_WAIT, CacheUse, cache_use
from .endpoint_canary import CanaryStep
from .endpoint_canary_plan import canary_deployments
from .endpoint_observe import CACHE_PVC_SUFFIX, ChildKey, Observed, labelled_as
from .endpoint_status import service_url, status_record

__all__ = ["Plan", "chosen_recipe", "decide", "selection_record"]


@dataclass(frozen=True)
class Plan:
    """What one reconcile will do.

    Invariants: ``decision`` is None exactly when the spec is invalid (then the plan
    is empty and ``record`` is None); ``to_prune`` is disjoint from ``desired``;
    nothing is applied or pruned unless a recipe was chosen (an endpoint waiting for
    capacity keeps what it has). ``creates`` are the keys of ``to_apply`` the caches
    do not show as this endpoint's: their name may be taken by somebody else's
    object, which the apply step must check before it writes. ``conflicts`` are the
    desired children whose name is already taken by an object the caches show is
    not this endpoint's. ``to_apply`` is ``desired`` minus what the observed state
    already carries, plus the release of a cache PVC kept on delete.
    """

    decision: Decision | None
    record: dict[str, Any] | None
    desired: tuple[dict[str, Any], ...] = ()
    to_apply: tuple[dict[str, Any], ...] = ()
    to_prune: tuple[KubeObject, ...] = ()
    creates: frozenset[ChildKey] = frozenset()
    conflicts: tuple[ChildKey, ...] = ()
    desired_replicas: int = 0
    url: str | None = None
    # Re-select once the unschedulable grace is over, even if nothing else happens.
    recheck_after: float | None = None
    # Where the weights come from (None only for an invalid spec); while it waits for
    # an AIMCache, neither the Deployment nor a new own cache PVC is desired.
    cache: CacheUse | None = None
    # The canary rollout's step (None when spec.deployment.canary is off).
    canary: CanaryStep | None = None

    @property
    def chosen(self) -> bool:
        return self.decision is not None and self.decision.chosen is not None


def selection_record(decision: Decision, previous: Any, now: datetime) -> dict[str, Any]:
    """The ``status.recipe`` record of the selection.

    A sticky decision is not a new selection: the previous record stays as is, so
    the status does not churn as other workloads take or free GPUs.
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = previous if isinstance(previous, Mapping) and previous.get("recipeName") else None
    if decision.reason is Reason.STICKY and kept is not None:
        if not decision.held_unschedulable:
            return dict(kept)
        # Kept although its pods cannot be placed: the status says why, but the choice
        # (and the time its grace counts from) is the same one.
        return status_record(decision.to_status()) | {
            "selectedAt": kept.get("selectedAt") or stamp}
    record = status_record(decision.to_status())
    if decision.chosen is not None:
        record["selectedAt"] = stamp
    return record


def chosen_recipe(decision: Decision, record: Mapping[str, Any]) -> ChosenRecipe:
    """What the builders are told about the chosen configuration."""
    assert decision.chosen is not None
    c = decision.chosen.config
    res = decision.resources
    return ChosenRecipe(
        id=c.id,
        hardware=c.hardware,
        device_ids=decision.device_ids,
        precision=c.precision,
        backend=c.backend,
        args=tuple(c.args),
        requests=res.get("requests", {}),
        limits=res.get("limits", {}),
        tolerations=decision.tolerations,
        estimated=decision.chosen.estimated,
        selection_record=record,
        env=decision.env,
        image=decision.image,
    )


def _child_key(obj: Mapping[str, Any]) -> ChildKey:
    return (str(obj["kind"]), str(obj["metadata"]["name"]))


def _cache_use(o: Observed, timeout: timedelta) -> CacheUse:
    assert o.endpoint is not None
    spec = o.endpoint.spec
    return cache_use(
        endpoint=o.name, model_id=spec.model.id, version=spec.model.version,
        own_enabled=spec.cache.enabled, caches=o.aim_caches, previous=o.status.get("cache"),
        serving=o.deployment is not None, now=o.now, timeout=timeout)


def decide(o: Observed, *, settings: OperatorSettings, grace: timedelta,
           cache_wait: timedelta = DEFAULT_CACHE_WAIT) -> Plan:
    if o.endpoint is None:
        return Plan(decision=None, record=None)
    spec = o.endpoint.spec
    cache = _cache_use(o, cache_wait)
    previous = o.status.get("recipe")
    decision = select(
        spec, o.namespace, o.recipes, o.catalog, o.inventory, o.quotas, previous,
        # Only GPU-placement reasons can move the endpoint; a PVC or CPU shortage
        # would follow it to any recipe.
        now=o.now, reselect_after=grace,
        unschedulable_since=o.pods.unschedulable_since if o.pods.unschedulable_fixable else None,
        owned_quota_gpus=o.pods.gpus_in_use, namespace_quota_gpus=o.namespace_gpus,
    )
    record = selection_record(decision, previous, o.now)
    url = service_url(o.name, o.namespace, spec.service.port)
    replicas = deployment_replicas(spec)
    if decision.chosen is None:
        return Plan(decision, record, desired_replicas=replicas, url=url, cache=cache)

    pvc = o.cache_pvc
    desired = tuple(stamp_applied_hash(d) for d in desired_children(
        o.endpoint, chosen_recipe(decision, record), settings,
        monitoring_available=o.monitoring_available,
        existing_cache_access_modes=((pvc or {}).get("spec") or {}).get("accessModes"),
        shared_cache=cache.shared,
        gpu_metrics_available=o.custom_metrics_available,
        keda_available=o.keda_available,
    ) if not _held_back(d, cache, pvc is not None and (
        labelled_as(pvc, o.name) or ("PersistentVolumeClaim", o.name + CACHE_PVC_SUFFIX)
        in o.owned)))
    c = decision.chosen.config
    desired, canary = canary_deployments(o, desired, (c.hardware, c.gpu_count))
    wanted = {_child_key(d) for d in desired}
    conflicts = tuple(k for k in sorted(wanted) if k in o.children and k not in o.owned
                      and not labelled_as(o.children[k], o.name))
    to_apply = [d for d in desired if needs_apply(d, o.children.get(_child_key(d)))]
    gone = sorted(o.owned - wanted)
    pvc_key = ("PersistentVolumeClaim", o.name + CACHE_PVC_SUFFIX)
    if pvc_key in gone and spec.cache.retain_on_delete and pvc is not None:
        # The cache was turned off in the same update that asks to keep it: let go of
        # it (drop our ownerReference) instead of deleting the weights.
        gone.remove(pvc_key)
        to_apply.append(stamp_applied_hash(released_cache_pvc(pvc)))
    to_prune = tuple(o.children[k] for k in gone)
    creates = frozenset(_child_key(d) for d in to_apply) - o.children.keys()
    recheck = None
    since = o.pods.unschedulable_since
    if since is not None and o.pods.unschedulable_fixable and spec.recipe.auto_select:
        # The grace counts from the later of the pods' trouble and the choice itself.
        chosen_at = PreviousChoice.from_record(record)
        if chosen_at is not None and chosen_at.selected_at is not None:
            since = max(since, chosen_at.selected_at)
        recheck = max((since + grace - o.now).total_seconds(), 0.0) + 1.0
    if cache.recheck_after is not None:
        recheck = min(recheck or cache.recheck_after, cache.recheck_after)
    if canary is not None and canary.recheck_after is not None:
        recheck = min(recheck or canary.recheck_after, canary.recheck_after)
    return Plan(decision, record, desired, tuple(to_apply), to_prune, creates, conflicts,
                replicas, url, recheck, cache, canary)


def _held_back(obj: Mapping[str, Any], cache: CacheUse, pvc_ours: bool) -> bool:
    """What the AIMCache rule leaves out: while the endpoint waits, its Deployment;
    while it waits or loads from an AIMCache, an own cache PVC that is not its own
    already (none is created, and an object of that name that is somebody else's is
    not needed, so not a conflict)."""
    if obj["kind"] == "Deployment":
        return cache.wait
    if obj["kind"] == "PersistentVolumeClaim":
        return (cache.wait or cache.shared is not None) and not pvc_ours
    return False

