"""The AIMEndpoint reconciler: recipe choice -> children (server-side apply) -> status.

``reconcile(key)`` reads only the informer caches. It computes the whole
desired state, applies only the children whose observed state does not already
carry it (the applied-hash annotation plus a semantic diff), deletes children it
controls that are no longer desired, and writes the status only when it
changed. A converged endpoint therefore costs no API request at all.

Watches: the endpoints themselves; every child kind (drift re-enqueues the
owner); AIMRecipes (re-enqueue the endpoints of that model, by index); GPU
capacity changes re-enqueue only endpoints still waiting for capacity (no
feasible recipe or unschedulable pods), so running endpoints are not disturbed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.api.v1alpha1.groupversion import KIND_AIM_ENDPOINT
from aim_controller.builders import (
    LABEL_ENDPOINT,
    LABEL_MANAGED_BY,
    ChosenRecipe,
    deployment_replicas,
    desired_children,
    endpoint_name_problem,
    needs_apply,
    selector_string,
    stamp_applied_hash,
)
from aim_controller.builders.meta import MANAGED_BY
from aim_controller.machinery.builder import ControllerBuilder, OwnedKinds, spec_first
from aim_controller.machinery.controller import Controller, Result
from aim_controller.machinery.handlers import AtPriority, key_of, split_key
from aim_controller.machinery.informer import InformerLike
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.resource import PODS, Resource
from aim_controller.machinery.workqueue import PRIORITY_DEFAULT, PRIORITY_LOW
from aim_controller.recipes import Decision, Reason, RecipeIndex, builtin_index, select
from aim_controller.recipes.inventory import pod_device_requests

from .child_resources import child_resources
from .conditions import merge_conditions, now_rfc3339
from .context import AIM_ENDPOINTS, AIM_RECIPES, RESOURCE_QUOTAS, ControllerContext
from .endpoint_metrics import EndpointStatusCollector
from .endpoint_status import (
    RECIPE_SELECTED,
    ApplyOutcome,
    PodsState,
    endpoint_conditions,
    replica_counts,
    service_url,
    status_equal,
    status_record,
)

log = structlog.get_logger(__name__)

CONTROLLER_NAME = "aimendpoint"
INDEX_MODEL = "model"
INDEX_ENDPOINT_PODS = "aim-endpoint"
# Requeue for 4xx apply failures (bad input): not hot, not forgotten.
INVALID_INPUT_RETRY = 300.0


def _model_key(model_id: object) -> str:
    return str(model_id).strip().lower()


def index_endpoint_by_model(obj: Mapping[str, Any]) -> list[str]:
    model = ((obj.get("spec") or {}).get("model") or {}).get("id")
    return [_model_key(model)] if model else []


def index_recipe_by_model(obj: Mapping[str, Any]) -> list[str]:
    model = (obj.get("spec") or {}).get("modelId")
    return [_model_key(model)] if model else []


def index_pod_by_endpoint(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    ep = labels.get(LABEL_ENDPOINT)
    if not ep or labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return []
    return [f"{meta.get('namespace')}/{ep}"]


def pods_state(pods: list[Mapping[str, Any]]) -> PodsState:
    since: datetime | None = None
    message = ""
    gpus = 0
    held: list[tuple[str, Mapping[str, int]]] = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        # Pending pods charge the quota too.
        usage = pod_device_requests(pod, bound_only=False)
        if usage is not None:
            gpus += sum(usage[1].values())
            if usage[0]:
                held.append(usage)
        for c in status.get("conditions") or ():
            if (c.get("type") == "PodScheduled" and c.get("status") == "False"
                    and c.get("reason") == "Unschedulable"):
                t = _parse_time(c.get("lastTransitionTime"))
                if t is not None and (since is None or t < since):
                    since, message = t, str(c.get("message") or "")
    return PodsState(since, message, gpus, tuple(held))


def _parse_time(s: object) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def chosen_recipe(decision: Decision, record: Mapping[str, Any]) -> ChosenRecipe:
    assert decision.chosen is not None
    c = decision.chosen.config
    res = decision.resources
    return ChosenRecipe(
        recipe_name=c.name,
        recipe_namespace=c.namespace if c.source == "namespace" else None,
        source=c.source,  # type: ignore[arg-type]
        hardware=c.hardware,
        device_ids=decision.device_ids,
        precision=c.precision,
        backend=c.backend,
        gpu_count=c.gpu_count,
        args=tuple(c.args),
        requests=res.get("requests", {}),
        limits=res.get("limits", {}),
        tolerations=decision.tolerations,
        estimated=decision.chosen.estimated,
        selection_record=record,
        env=decision.env,
        image=decision.image,
    )


def _api_error(err: ApiException) -> str:
    try:
        body = json.loads(err.body or "{}")
        return str(body.get("message") or err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


class EndpointReconciler:
    """Holds the informers and the per-process caches; ``reconcile`` is the entry point."""

    def __init__(self, ctx: ControllerContext, builder: ControllerBuilder) -> None:
        self.ctx = ctx
        self.queue = builder.queue
        # Endpoints whose selection waits for capacity: re-evaluated on capacity changes.
        # (Set before any watch: a started informer replays its store at once.)
        self._waiting: set[str] = set()
        self._catalog = builtin_index()
        self._ns_index: dict[str, tuple[tuple[tuple[str, str], ...], RecipeIndex]] = {}
        # Read-your-writes: a reconcile that runs before our own write's watch event
        # arrives must not redo it (apply again, rewrite the status, emit again).
        self.written: dict[str, MutationCache] = {}
        # Changes of intent (endpoints, recipes) go before the status churn of children
        # and pods: with a thousand endpoints applied at once, the first pass over all
        # of them is not held up by status updates of the ones already running.
        self._churn = AtPriority(self.queue, PRIORITY_LOW)

        self.endpoints: InformerLike = builder.for_(
            AIM_ENDPOINTS, indexers={INDEX_MODEL: index_endpoint_by_model},
            enqueue=spec_first(PRIORITY_DEFAULT, PRIORITY_LOW))
        self.recipes: InformerLike = builder.watches(
            AIM_RECIPES, self._endpoints_of_recipe, indexers={INDEX_MODEL: index_recipe_by_model})
        self.quotas: InformerLike = builder.reads(RESOURCE_QUOTAS)
        # All namespaces: the GPU inventory's one Pod informer, indexed by endpoint too.
        self.pods: InformerLike = builder.watches(
            PODS, self._endpoint_of_pod, priority=PRIORITY_LOW, all_namespaces=True,
            indexers={INDEX_ENDPOINT_PODS: index_pod_by_endpoint})
        self.gpus = ctx.gpu_view()
        builder.uses(self.gpus)
        self.gpus.on_capacity_change(self._capacity_changed)
        children = child_resources()
        for child in children:
            builder.owns(child.resource, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                         optional=child.optional)
        self._optional_kinds = tuple(c.resource.kind for c in children if c.optional)
        # Kind -> (resource, informer); optional kinds join once served.
        self.children: OwnedKinds = builder.owned
        for kind, (_res, inf) in self.children.items():
            self.written[kind] = MutationCache(inf)
        self.written[KIND_AIM_ENDPOINT] = MutationCache(self.endpoints)
        builder.on_optional_served(self.child_kind_served)

    @property
    def monitoring_available(self) -> bool:
        """The Prometheus Operator's kinds (the optional children) are all served."""
        return all(kind in self.children for kind in self._optional_kinds)

    def child_kind_served(self, res: Resource, informer: InformerLike) -> None:
        """An optional child kind (ServiceMonitor, PrometheusRule) became served (at start
        or later): read our writes of it, and let every endpoint add its objects of it."""
        self.written[res.kind] = MutationCache(informer)
        for key in self.endpoints.store.list_keys():
            self._churn.add(key)

    # --- event mapping ------------------------------------------------------

    def _endpoints_of_recipe(self, recipe: Mapping[str, Any]) -> list[str]:
        keys: list[str] = []
        ns = (recipe.get("metadata") or {}).get("namespace")
        for model in index_recipe_by_model(recipe):
            for ep in self.endpoints.store.by_index(INDEX_MODEL, model):
                # Operator-namespace recipes do not shadow the catalog; others only
                # matter to endpoints of their own namespace.
                if (ep.get("metadata") or {}).get("namespace") == ns:
                    keys.append(key_of(ep))
        return keys

    def _endpoint_of_pod(self, pod: Mapping[str, Any]) -> list[str]:
        # Only pod scheduling problems matter to the owner (Degraded, reselection);
        # everything else reaches it through the Deployment's status.
        keys = index_pod_by_endpoint(pod)
        if not keys:
            return []
        status = pod.get("status") or {}
        unsched = any(c.get("reason") == "Unschedulable"
                      for c in status.get("conditions") or ())
        return keys if unsched or keys[0] in self._waiting else []

    def _capacity_changed(self) -> None:
        for key in self._waiting:
            self.queue.add(key)

    # --- inputs -------------------------------------------------------------

    def _namespace_recipes(self, namespace: str) -> RecipeIndex:
        objs = self.recipes.store.by_index("namespace", namespace)
        version = tuple(sorted(
            (str(o["metadata"].get("uid")), str(o["metadata"].get("resourceVersion")))
            for o in objs))
        hit = self._ns_index.get(namespace)
        if hit is None or hit[0] != version:
            hit = (version, RecipeIndex.build(objs, "namespace", namespace))
            self._ns_index[namespace] = hit
        return hit[1]

    # --- reconcile ----------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        obj = self.written[KIND_AIM_ENDPOINT].get(key)
        if obj is None:
            self._waiting.discard(key)
            return None
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            self._waiting.discard(key)
            return None
        namespace, name = split_key(key)
        assert namespace is not None
        generation = int(meta.get("generation") or 0)
        observed_status: Mapping[str, Any] = obj.get("status") or {}

        try:
            endpoint = AIMEndpoint.model_validate(obj)
        except ValidationError as err:
            msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                            for e in err.errors()[:5])
            return await self._invalid(obj, generation, f"invalid spec: {msg}")
        problem = endpoint_name_problem(name)
        if problem is not None:
            return await self._invalid(obj, generation, problem)

        now = datetime.now(UTC)
        pods = self.pods.store.by_index(INDEX_ENDPOINT_PODS, key)
        pstate = pods_state(pods)
        previous = observed_status.get("recipe")
        decision = select(
            obj.get("spec") or {}, namespace, self._namespace_recipes(namespace), self._catalog,
            # Its own pods' GPUs count as free: the same choice whether or not they are bound yet.
            self.gpus.inventory().give_back(pstate.held),
            self.quotas.store.by_index("namespace", namespace),
            previous, now=now, unschedulable_since=pstate.unschedulable_since,
            reselect_after=self.ctx.unschedulable_grace, owned_quota_gpus=pstate.gpus_in_use,
        )
        record = self._record(decision, previous, now)
        url = service_url(name, namespace, endpoint.spec.service.port)
        desired_replicas = deployment_replicas(endpoint.spec)

        outcome: ApplyOutcome | None = None
        retry_after: float | None = None
        if decision.chosen is not None:
            chosen = chosen_recipe(decision, record)
            outcome, retry_after = await self._apply_children(endpoint, chosen, namespace, key)
            selected = (True, str(record.get("reason") or decision.reason),
                        str(record.get("message") or decision.message))
        else:
            selected = (False, str(decision.reason), decision.message)

        deployment = self.written["Deployment"].get(key)
        conds = endpoint_conditions(
            spec=endpoint.spec, selected=selected, outcome=outcome, deployment=deployment,
            desired_replicas=desired_replicas, pods=pstate, url=url,
        )
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": merge_conditions(observed_status.get("conditions"), conds,
                                           generation, now_rfc3339()),
            **replica_counts(deployment),
            "selector": selector_string(name),
            "url": url,
            "recipe": record,
        }
        await self._write_status(obj, observed_status, status, decision, previous)

        waiting = decision.chosen is None or pstate.unschedulable_since is not None
        if waiting:
            self._waiting.add(key)
        else:
            self._waiting.discard(key)
        if retry_after is not None:
            return Result(requeue_after=retry_after)
        if pstate.unschedulable_since is not None and decision.chosen is not None:
            # Re-select once the grace period is over, even if nothing else happens.
            left = (pstate.unschedulable_since + self.ctx.unschedulable_grace - now)
            return Result(requeue_after=max(left.total_seconds(), 0.0) + 1.0)
        return None

    def _record(self, decision: Decision, previous: Any, now: datetime) -> dict[str, Any]:
        """The status record of the selection.

        A sticky decision is not a new selection: the previous record stays as
        is, so the status does not churn as other workloads take or free GPUs.
        """
        if (decision.reason is Reason.STICKY and isinstance(previous, Mapping)
                and previous.get("recipeName")):
            return dict(previous)
        record = status_record(decision.to_status())
        if decision.chosen is not None:
            record["selectedAt"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return record

    async def _apply_children(
        self, endpoint: AIMEndpoint, chosen: ChosenRecipe, namespace: str, key: str
    ) -> tuple[ApplyOutcome, float | None]:
        pvc = self.children["PersistentVolumeClaim"][1].store.get(
            f"{namespace}/{endpoint.metadata.name}-cache")
        modes = ((pvc or {}).get("spec") or {}).get("accessModes") if pvc else None
        desired = desired_children(
            endpoint, chosen, self.ctx.settings,
            monitoring_available=self.monitoring_available,
            existing_cache_access_modes=modes,
        )
        errors: list[str] = []
        applied = 0
        retry_after: float | None = None
        wanted: set[tuple[str, str]] = set()
        for d in desired:
            obj = stamp_applied_hash(d)
            kind, cname = obj["kind"], obj["metadata"]["name"]
            wanted.add((kind, cname))
            entry = self.children.get(kind)
            observed = self.written[kind].get(f"{namespace}/{cname}") if entry else None
            if not needs_apply(obj, observed):
                continue
            try:
                self.written[kind].mutated(await self.ctx.writer.apply(obj))
                applied += 1
            except ApiException as err:
                if err.status in (400, 403, 404, 422):
                    # Bad input or missing permission: surface it, retry slowly.
                    errors.append(f"{kind} {cname}: {_api_error(err)}")
                    retry_after = INVALID_INPUT_RETRY
                else:
                    raise
        uid = endpoint.metadata.uid or ""
        for kind, (_res, inf) in list(self.children.items()):  # it may grow meanwhile
            for child in inf.store.by_index("owner-uid", uid):
                cname = (child.get("metadata") or {}).get("name", "")
                if (kind, cname) in wanted:
                    continue
                log.info("deleting child no longer desired", kind=kind, child=cname)
                await self.ctx.writer.delete(dict(child))
        if errors:
            self.ctx.recorder.emit(
                dict(self.endpoints.store.get(key) or {}), "Warning", "ApplyFailed", errors[0])
        return ApplyOutcome(applied, len(desired), tuple(errors)), retry_after

    async def _write_status(
        self,
        obj: Mapping[str, Any],
        observed: Mapping[str, Any],
        status: dict[str, Any],
        decision: Decision,
        previous: Any,
    ) -> None:
        if status_equal(status, observed):
            return
        body = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                "metadata": obj["metadata"], "status": status}
        try:
            self.written[KIND_AIM_ENDPOINT].mutated(await self.ctx.writer.apply_status(body))
        except ApiException as err:
            if err.status == 404:  # deleted meanwhile: nothing left to report on
                return
            raise
        old_sel = next((c for c in observed.get("conditions") or ()
                        if c.get("type") == RECIPE_SELECTED), None)
        prev_ref = _ref(previous)
        new_ref = _ref(status["recipe"])
        if decision.chosen is not None and new_ref != prev_ref:
            self.ctx.recorder.emit(
                dict(obj), "Normal", str(status["recipe"].get("reason") or "RecipeSelected"),
                str(status["recipe"].get("message") or decision.message))
        elif decision.chosen is None and (old_sel is None or old_sel.get("status") != "False"
                                          or old_sel.get("reason") != str(decision.reason)):
            self.ctx.recorder.emit(dict(obj), "Warning", str(decision.reason),
                                          decision.message)

    async def _invalid(self, obj: Mapping[str, Any], generation: int, message: str) -> Result:
        observed: Mapping[str, Any] = obj.get("status") or {}
        conds = endpoint_conditions(
            spec=None, selected=(False, "InvalidSpec", message), outcome=None,
            deployment=None, desired_replicas=0, pods=PodsState(), url=None,
        )
        status = {
            **{k: v for k, v in observed.items() if k in ("recipe", "replicas", "selector")},
            "observedGeneration": generation,
            "conditions": merge_conditions(observed.get("conditions"), conds, generation,
                                           now_rfc3339()),
        }
        if not status_equal(status, observed):
            body = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                    "metadata": obj["metadata"], "status": status}
            self.written[KIND_AIM_ENDPOINT].mutated(await self.ctx.writer.apply_status(body))
            self.ctx.recorder.emit(dict(obj), "Warning", "InvalidSpec", message)
        # Nothing will change until the spec does: no retry.
        return Result()


def _ref(record: Any) -> tuple[Any, ...] | None:
    if not isinstance(record, Mapping) or not record.get("recipeName"):
        return None
    return (record.get("source"), record.get("recipeNamespace"), record.get("recipeName"),
            record.get("gpuCount"))


def register(ctx: ControllerContext) -> Controller:
    builder = ctx.builder(CONTROLLER_NAME)
    reconciler = EndpointReconciler(ctx, builder)
    ctx.metrics.registry.register(EndpointStatusCollector(reconciler.endpoints.store))
    return builder.complete(reconciler.reconcile)


__all__ = ["CONTROLLER_NAME", "EndpointReconciler", "register"]
