"""The AIMEndpoint controller: recipe choice -> children (server-side apply) -> status.

``reconcile(key)`` runs four steps, each a function with a typed input and output:

1. observe (:mod:`.endpoint_observe`): the endpoint and everything around it, read
   once from the caches through the read-your-writes layer -> ``Observed``;
2. decide (:mod:`.endpoint_decide`, pure): the recipe choice and every desired
   child, diffed against the observed ones -> ``Plan`` (what to apply, what to prune);
3. apply (here): the planned server-side applies and deletes -> ``ApplyResult``;
4. report (:mod:`.endpoint_report` for the pure part): the status, written only when
   it changed, and the Events that explain the change.

A converged endpoint therefore costs no API request at all.

Watches: the endpoints themselves; every child kind (drift re-enqueues the
owner); AIMRecipes (re-enqueue the endpoints of that model, by index); AIMCaches
(re-enqueue the endpoints of their namespace whose model they list, by index); their
pods when one turns Ready or not, fails or stops failing, or cannot be scheduled; GPU
capacity changes re-enqueue only endpoints still waiting for capacity (no
feasible recipe or unschedulable pods), so running endpoints are not disturbed.
Optional APIs, followed as they come and go: the Prometheus Operator's and the
Gateway API's kinds (their CRDs, through the builder) re-enqueue every endpoint; the
custom metrics APIServices (:mod:`.custom_metrics`) the endpoints with a GPU target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from aim_controller.api.v1alpha1.groupversion import KIND_AIM_ENDPOINT
from aim_controller.builders import (
    LABEL_MANAGED_BY,
    selector_string,
)
from aim_controller.builders.meta import MANAGED_BY
from aim_controller.machinery.builder import ControllerBuilder, OwnedKinds, spec_first
from aim_controller.machinery.controller import Controller, Result
from aim_controller.machinery.handlers import AtPriority, KubeObject, key_of
from aim_controller.machinery.informer import InformerLike
from aim_controller.machinery.kubeclient import ApiException
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.resource import PODS, Resource
from aim_controller.machinery.workqueue import PRIORITY_DEFAULT, PRIORITY_LOW
from aim_controller.recipes import RecipeIndex, builtin_index

from .bound_count import BoundPodCount
from .canary_metrics import CanaryAnalyzer
from .child_resources import child_resources
from .conditions import now_rfc3339
from .context import AIM_CACHES, AIM_ENDPOINTS, AIM_RECIPES, RESOURCE_QUOTAS, ControllerContext
from .custom_metrics import (
    API_SERVICES,
    api_service_sliver,
    custom_metrics_available,
    is_custom_metrics_api_service,
)
from .endpoint_canary_plan import analysis_window
from .endpoint_decide import Plan, decide
from .endpoint_metrics import EndpointStatusCollector
from .endpoint_observe import (
    INDEX_CACHE_MODEL,
    INDEX_ENDPOINT_PODS,
    INDEX_MODEL,
    INDEX_NAMESPACE_MODEL,
    ChildKey,
    EndpointCaches,
    Observed,
    index_cache_by_model,
    index_endpoint_by_model,
    index_endpoint_by_namespace_model,
    index_pod_by_endpoint,
    index_recipe_by_model,
    labelled_as,
    template_checksum,
)
from .endpoint_report import (
    ApplyResult,
    desired_status,
    invalid_status,
    progress_held,
    status_events,
)
from .endpoint_status import ApplyOutcome, status_equal
from .pod_failures import reported_on
from .pod_slim import slim_pod
from .reservations import ReservationBook

log = structlog.get_logger(__name__)

CONTROLLER_NAME = "aimendpoint"
MONITORING_GROUP = "monitoring.coreos.com"  # the Prometheus Operator's optional kinds
KIND_HTTP_ROUTE = "HTTPRoute"  # the Gateway API's optional kind
KIND_SCALED_OBJECT = "ScaledObject"  # KEDA's optional kind
# Requeue for 4xx apply failures (bad input): not hot, not forgotten.
INVALID_INPUT_RETRY = 300.0
# Look again at a child whose name somebody else's object holds (its deletion is not
# watched: it does not carry our labels).
CONFLICT_RECHECK = 60.0
# Consecutive server-side failures of one endpoint before its status says ApiError.
API_ERROR_AFTER = 3
# A child kind is not applied while one it references is in conflict.
DEPENDS_ON: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"ConfigMap", "ServiceAccount", "PersistentVolumeClaim"}),
    "ServiceMonitor": frozenset({"Service"}),
}


def apply_stages(objs: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``objs`` in write stages: first those depending on no other kind among them
    (:data:`DEPENDS_ON`), then the rest; each stage in the given order, none empty."""
    kinds = {o["kind"] for o in objs}
    later = [o for o in objs if DEPENDS_ON.get(o["kind"], frozenset()) & kinds]
    first = [o for o in objs if not DEPENDS_ON.get(o["kind"], frozenset()) & kinds]
    return [stage for stage in (first, later) if stage]


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
        # GPUs promised to chosen configurations whose pods are not bound yet.
        self.reservations = ReservationBook(bound_now=self._bound_pods)
        # GPUs promised to an endpoint whose pods are now bound are free for the others
        # again: whoever waits for capacity looks again.
        self.reservations.on_release(self._capacity_changed)
        self._api_failures: dict[str, int] = {}
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
            AIM_ENDPOINTS, indexers={INDEX_MODEL: index_endpoint_by_model,
                                     INDEX_NAMESPACE_MODEL: index_endpoint_by_namespace_model},
            enqueue=spec_first(PRIORITY_DEFAULT, PRIORITY_LOW))
        self.recipes: InformerLike = builder.watches(
            AIM_RECIPES, self._endpoints_of_recipe, indexers={INDEX_MODEL: index_recipe_by_model})
        # An AIMCache's models and their states decide where the weights come from.
        self.aim_caches: InformerLike = builder.watches(
            AIM_CACHES, self._endpoints_of_cache,
            indexers={INDEX_CACHE_MODEL: index_cache_by_model})
        # A quota change (hard limit raised, usage released) may unblock an endpoint
        # that waits on it; running ones are not disturbed.
        self.quotas: InformerLike = builder.watches(
            RESOURCE_QUOTAS, self._waiting_in_namespace, priority=PRIORITY_LOW)
        # All namespaces: the GPU inventory's one Pod informer, indexed by endpoint too.
        self.pods: InformerLike = builder.watches(
            PODS, self._endpoint_of_pod, priority=PRIORITY_LOW, all_namespaces=True,
            indexers={INDEX_ENDPOINT_PODS: index_pod_by_endpoint}, transform=slim_pod)
        # Before the reservation book is asked (a handler of the same informer).
        self._bound = BoundPodCount(index_pod_by_endpoint)
        self.pods.add_event_handler(self._bound.handler())
        # A custom metrics API coming, becoming Available or going: the HPAs with a GPU
        # target gain or lose their GPU metric.
        self.api_services: InformerLike = builder.watches(
            API_SERVICES, self._endpoints_with_gpu_target, priority=PRIORITY_LOW,
            transform=api_service_sliver)
        self.gpus = ctx.gpu_view()
        builder.uses(self.gpus)
        self.gpus.on_capacity_change(self._capacity_changed)
        children = child_resources()
        for child in children:
            builder.owns(child.resource, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                         optional=child.optional)
        self._optional_kinds = tuple(c.resource.kind for c in children if c.optional
                                     and c.resource.group == MONITORING_GROUP)
        # Kind -> (resource, informer); optional kinds join once served.
        self.children: OwnedKinds = builder.owned
        for kind, (_res, inf) in self.children.items():
            self.written[kind] = MutationCache(inf)
        self.written[KIND_AIM_ENDPOINT] = MutationCache(self.endpoints)
        builder.on_optional_served(self.child_kind_served)
        builder.on_optional_gone(self.child_kind_gone)
        # The canaries' metric analysis, when a Prometheus is configured.
        self.analyzer: CanaryAnalyzer | None = None
        if ctx.canary_prometheus_url:
            self.analyzer = CanaryAnalyzer(ctx.canary_prometheus_url, self.queue.add,
                                           ctx.canary_thresholds)
            ctx.runnables.append(self.analyzer.run)
        self.caches = EndpointCaches(
            endpoint_kind=KIND_AIM_ENDPOINT, written=self.written, pods=self.pods,
            quotas=self.quotas, inventory=self.gpus.inventory,
            namespace_recipes=self._namespace_recipes, catalog=self._catalog,
            monitoring_available=lambda: self.monitoring_available,
            routes_available=lambda: KIND_HTTP_ROUTE in self.children,
            keda_available=lambda: KIND_SCALED_OBJECT in self.children,
            gpu_metrics_url=ctx.settings.gpu_metrics_prometheus_url,
            custom_metrics_available=lambda: custom_metrics_available(
                self.api_services.store.list()),
            canary_metrics=self.analyzer.verdict if self.analyzer is not None else None,
            reservations=self.reservations, aim_caches=self.aim_caches,
        )

    @property
    def monitoring_available(self) -> bool:
        """The Prometheus Operator's kinds (optional children) are all served."""
        return all(kind in self.children for kind in self._optional_kinds)

    def child_kind_served(self, res: Resource, informer: InformerLike) -> None:
        """An optional child kind (ServiceMonitor, PrometheusRule) became served (at start
        or later): read our writes of it, and let every endpoint add its objects of it."""
        self.written[res.kind] = MutationCache(informer)
        for key in self.endpoints.store.list_keys():
            self._churn.add(key)

    def child_kind_gone(self, res: Resource) -> None:
        """An optional child kind is no longer served (its CRD deleted): its objects are
        gone with it; every endpoint reports so and stops applying it."""
        self.written.pop(res.kind, None)
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

    def _endpoints_of_cache(self, cache: Mapping[str, Any]) -> list[str]:
        # The endpoints of its namespace whose model it lists (old and new object: a
        # model dropped from the list concerns its endpoints too).
        return [key_of(ep) for k in index_cache_by_model(cache)
                for ep in self.endpoints.store.by_index(INDEX_NAMESPACE_MODEL, k)]

    def _endpoints_with_gpu_target(self, api_service: Mapping[str, Any]) -> list[str]:
        if not is_custom_metrics_api_service(api_service):
            return []
        return [key_of(ep) for ep in self.endpoints.store.list()
                if ((ep.get("spec") or {}).get("scaling") or {}).get("targetGPUUtilization")
                is not None]

    def _endpoint_of_pod(self, pod: Mapping[str, Any]) -> list[str]:
        # What the owner reports from its pods: scheduling problems (Degraded,
        # reselection), readiness (Available) and failures (Degraded). Both the old and
        # the new pod are mapped, so a pod that turns Ready, stops being Ready, starts
        # or stops failing enqueues its endpoint; a pending pod's progress does not.
        keys = index_pod_by_endpoint(pod)
        if not keys:
            return []
        status = pod.get("status") or {}
        unsched = any(c.get("reason") == "Unschedulable"
                      for c in status.get("conditions") or ())
        if (unsched or reported_on(pod) or keys[0] in self._waiting
                or self.reservations.has_pending(keys[0])):
            return keys
        return []

    def _bound_pods(self, key: str, template: str | None) -> int:
        return self._bound.count(key, template)

    def _waiting_in_namespace(self, obj: Mapping[str, Any]) -> list[str]:
        prefix = f"{(obj.get('metadata') or {}).get('namespace')}/"
        return sorted(k for k in self._waiting if k.startswith(prefix))

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

    # --- reconcile: observe -> decide -> apply -> report ------------------------

    async def reconcile(self, key: str) -> Result | None:
        observed = self.caches.observe(key, datetime.now(UTC))
        if observed is None:
            self._waiting.discard(key)
            self.reservations.forget(key)
            if self.analyzer is not None:
                self.analyzer.forget(key)
            self._api_failures.pop(key, None)
            return None
        plan = decide(observed, settings=self.ctx.settings, grace=self.ctx.unschedulable_grace,
                      cache_wait=self.ctx.cache_wait_timeout)
        # Before any await: a reconcile that runs next must see what this one promised.
        self._reserve(observed, plan)
        self._analyze(observed, plan)
        try:
            applied = await self._apply(observed, plan) if plan.chosen else None
            result = await self._report(observed, plan, applied)
        except (ApiException, TimeoutError, OSError) as err:  # OSError: no answer at all
            if isinstance(err, ApiException) and err.status is not None and err.status < 429:
                raise
            await self._api_failed(observed, plan, err)
            raise  # retried with the per-item backoff
        self._api_failures.pop(key, None)
        return result

    async def _api_failed(self, o: Observed, plan: Plan, err: BaseException) -> None:
        """Counts consecutive server-side failures (429, 5xx, timeouts) of one endpoint;
        from the third on, says so in its status when the API server takes that write."""
        n = self._api_failures[o.key] = self._api_failures.get(o.key, 0) + 1
        if n < API_ERROR_AFTER or plan.decision is None:
            return
        if isinstance(err, ApiException):
            what = f"HTTP {err.status}: {_api_error(err)}"
        else:
            what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        message = f"{n} writes in a row failed; retrying with backoff; last: {what}"[:1024]
        failed = ApplyResult(ApplyOutcome(0, len(plan.desired), (what[:1024],)))
        status = desired_status(o, plan, failed, now_rfc3339(), selector_string(o.name),
                                api_error=message)
        with contextlib.suppress(ApiException, TimeoutError, OSError):
            await self._write_status(o, status, plan)

    def _analyze(self, o: Observed, plan: Plan) -> None:
        """Registers a running canary with the metric analysis (and forgets others)."""
        if self.analyzer is None:
            return
        window = analysis_window(o, plan.canary)
        if window is None:
            self.analyzer.forget(o.key)
        else:
            self.analyzer.want(o.key, o.namespace, o.name, window)

    def _reserve(self, o: Observed, plan: Plan) -> None:
        chosen = plan.decision.chosen if plan.decision is not None else None
        if chosen is None or (plan.cache is not None and plan.cache.wait):
            # Waiting for an AIMCache holds no GPUs: nothing is to be placed yet.
            self.reservations.forget(o.key)
            return
        c = chosen.config
        template = next((template_checksum(d["spec"].get("template"))
                         for d in plan.desired if d["kind"] == "Deployment"), None)
        if plan.canary is not None and plan.canary.replicas:
            # The canary's replicas come on top of the stable's, which keep their GPUs:
            # one entry for both, counting every bound pod of the endpoint.
            self.reservations.record(o.key, c.hardware, c.gpu_count,
                                     plan.desired_replicas + plan.canary.replicas,
                                     o.pods.bound + o.canary_pods.bound, None)
            return
        self.reservations.record(o.key, c.hardware, c.gpu_count, plan.desired_replicas,
                                 o.pods.bound, template)

    async def _apply(self, o: Observed, plan: Plan) -> ApplyResult:
        """Step 3: the planned applies, then the prunes. 4xx answers (bad input, missing
        permission) are reported and retried slowly; anything else raises (backoff).

        A child the caches do not show as this endpoint's is created only if its name
        is free (:meth:`_create`): an object of that name that is somebody else's is
        never written (no adoption); it is reported as a conflict, nothing that
        depends on it is applied, and the endpoint looks again a minute later (a
        deletion of an unlabelled object is not watched).
        """
        errors: list[str] = []
        conflicts: list[ChildKey] = list(plan.conflicts)
        written: dict[ChildKey, KubeObject] = {}
        retry_after: float | None = CONFLICT_RECHECK if conflicts else None
        blocked = {kind for kind, _ in conflicts}
        # Children that depend on none of the others go out together, then the rest
        # (a Deployment after its ConfigMap and ServiceAccount): one round trip per
        # stage instead of one per child, in the order of the plan within each.
        for stage in apply_stages(plan.to_apply):
            runnable = [obj for obj in stage
                        if not blocked & DEPENDS_ON.get(obj["kind"], frozenset())]
            outcomes = await asyncio.gather(
                *(self._write_child(o, plan, obj) for obj in runnable), return_exceptions=True)
            failure: BaseException | None = None
            for obj, out in zip(runnable, outcomes, strict=True):
                kind, cname = obj["kind"], obj["metadata"]["name"]
                if isinstance(out, ApiException) and out.status in (400, 403, 404, 422):
                    errors.append(f"{kind} {cname}: {_api_error(out)}")
                    retry_after = INVALID_INPUT_RETRY
                elif isinstance(out, BaseException):
                    failure = failure or out
                elif out is None:
                    conflicts.append((kind, cname))
                    blocked.add(kind)
                    retry_after = CONFLICT_RECHECK
                else:
                    written[(kind, cname)] = out
                    if kind in self.caches.written:
                        self.caches.written[kind].mutated(out)
            if failure is not None:
                raise failure
        for child in plan.to_prune:
            log.info("deleting child no longer desired", kind=child.get("kind"),
                     child=(child.get("metadata") or {}).get("name"))
            await self.ctx.writer.delete(dict(child))
        if errors:
            self.ctx.recorder.emit(dict(o.obj), "Warning", "ApplyFailed", errors[0])
        outcome = ApplyOutcome(len(written), len(plan.desired), tuple(errors),
                               tuple(f"{k} {n}" for k, n in sorted(set(conflicts))))
        return ApplyResult(outcome, written, retry_after)

    async def _write_child(self, o: Observed, plan: Plan, obj: dict[str, Any]
                           ) -> KubeObject | None:
        """One planned child written: None when its name is somebody else's."""
        if (obj["kind"], obj["metadata"]["name"]) in plan.creates:
            return await self._create(o, obj)
        return await self.ctx.writer.apply(obj)

    async def _create(self, o: Observed, obj: dict[str, Any]) -> KubeObject | None:
        """Writes a child the caches do not show as this endpoint's; None when its name
        is somebody else's (nothing written).

        The usual case costs one request: an apply that only creates. Only a taken
        name is read, to tell an object that is this endpoint's after all (one the
        caches have not seen yet, say after a failover, or whose labels a user
        removed), which is applied as usual, from somebody else's.
        """
        created = await self.ctx.writer.apply_new(obj)
        if created is not None:
            return created
        existing = await self.ctx.writer.get(obj)
        if existing is None:  # deleted meanwhile
            return await self.ctx.writer.apply_new(obj)
        if not self._is_ours(o, obj, existing):
            return None
        return await self.ctx.writer.apply(obj)

    @staticmethod
    def _is_ours(o: Observed, obj: dict[str, Any], existing: KubeObject) -> bool:
        """Controlled by this endpoint, or, for the retained cache PVC, labelled as its."""
        uid = (o.obj.get("metadata") or {}).get("uid")
        if any(r.get("controller") and r.get("uid") == uid
               for r in (existing.get("metadata") or {}).get("ownerReferences") or ()):
            return True
        return obj["kind"] == "PersistentVolumeClaim" and labelled_as(existing, o.name)

    async def _report(self, o: Observed, plan: Plan, applied: ApplyResult | None
                      ) -> Result | None:
        """Step 4: the status (written only when it changed, with its Events), the
        capacity waiting list, and when to look again."""
        now = now_rfc3339()
        if plan.decision is None:
            await self._write_status(o, invalid_status(o, now), plan)
            self._waiting.discard(o.key)
            return Result()  # nothing will change until the spec does: no retry
        status = desired_status(o, plan, applied, now, selector_string(o.name))
        if not progress_held(o, applied, status):
            await self._write_status(o, status, plan)
        if not plan.chosen or o.pods.unschedulable_since is not None:
            self._waiting.add(o.key)
        else:
            self._waiting.discard(o.key)
        if applied is not None and applied.retry_after is not None:
            return Result(requeue_after=applied.retry_after)
        if plan.recheck_after is not None:
            return Result(requeue_after=plan.recheck_after)
        return None

    async def _write_status(self, o: Observed, status: dict[str, Any], plan: Plan) -> None:
        if status_equal(status, o.status):
            return
        body = {"apiVersion": o.obj["apiVersion"], "kind": o.obj["kind"],
                "metadata": o.obj["metadata"], "status": status}
        try:
            self.caches.written[KIND_AIM_ENDPOINT].mutated(
                await self.ctx.writer.apply_status(body))
        except ApiException as err:
            if err.status == 404:  # deleted meanwhile: nothing left to report on
                return
            raise
        for event in status_events(o, plan, status):
            self.ctx.recorder.emit(dict(o.obj), event.type, event.reason, event.message)


def register(ctx: ControllerContext) -> Controller:
    builder = ctx.builder(CONTROLLER_NAME)
    reconciler = EndpointReconciler(ctx, builder)
    ctx.metrics.registry.register(EndpointStatusCollector(reconciler.endpoints.store))
    return builder.complete(reconciler.reconcile)


__all__ = ["CONTROLLER_NAME", "EndpointReconciler", "register"]
