"""Step 1 of an AIMEndpoint reconcile: observe.

Everything the reconcile decides on, read once from the informer caches through
the read-your-writes layer (:class:`~aim_controller.machinery.mutationcache.
MutationCache`), into one immutable :class:`Observed`. No other step reads a
cache, so what a reconcile saw is exactly this value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aim_controller.api.v1alpha1 import AIMEndpoint, validation_message
from aim_controller.builders import (
    ANNOTATION_CONFIG_CHECKSUM,
    LABEL_ENDPOINT,
    LABEL_MANAGED_BY,
    endpoint_name_problem,
)
from aim_controller.builders.canary import canary_name, is_canary_pod
from aim_controller.builders.meta import MANAGED_BY
from aim_controller.machinery.handlers import KubeObject, split_key
from aim_controller.machinery.informer import InformerLike
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.store import NAMESPACE_INDEX
from aim_controller.recipes import GpuInventory, RecipeIndex
from aim_controller.recipes.backoff import parse_time
from aim_controller.recipes.inventory import pod_device_requests
from aim_controller.recipes.quota import namespace_gpu_requests, needs_pod_count

from .endpoint_cache import cached_model_keys, model_key
from .endpoint_canary import MetricVerdict, container_restarts
from .endpoint_status import PodsState
from .pod_failures import first_failure, is_ready, memory_limits
from .reservations import ReservationBook
from .unschedulable import gpu_fixable

__all__ = [
    "INDEX_CACHE_MODEL",
    "INDEX_ENDPOINT_PODS",
    "INDEX_MODEL",
    "INDEX_NAMESPACE_MODEL",
    "EndpointCaches",
    "Observed",
    "index_cache_by_model",
    "index_endpoint_by_model",
    "index_endpoint_by_namespace_model",
    "index_pod_by_endpoint",
    "index_recipe_by_model",
    "pods_state",
]

INDEX_MODEL = "model"
# "<namespace>/<model key>": endpoints by their model, AIMCaches by each model they list.
INDEX_NAMESPACE_MODEL = "namespace-model"
INDEX_CACHE_MODEL = "aim-cache-model"
INDEX_ENDPOINT_PODS = "aim-endpoint"
INDEX_OWNER_UID = "owner-uid"  # every store's built-in index of controller owners
CACHE_PVC_SUFFIX = "-cache"

ChildKey = tuple[str, str]  # (kind, name)



def index_endpoint_by_model(obj: Mapping[str, Any]) -> list[str]:
    model = ((obj.get("spec") or {}).get("model") or {}).get("id")
    return [model_key(model)] if model else []


def index_endpoint_by_namespace_model(obj: Mapping[str, Any]) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [f"{ns}/{m}" for m in index_endpoint_by_model(obj)]


def index_cache_by_model(obj: Mapping[str, Any]) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [f"{ns}/{m}" for m in cached_model_keys(obj)]


def index_recipe_by_model(obj: Mapping[str, Any]) -> list[str]:
    model = (obj.get("spec") or {}).get("modelId")
    return [model_key(model)] if model else []


def index_pod_by_endpoint(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    ep = labels.get(LABEL_ENDPOINT)
    if not ep or labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return []
    return [f"{meta.get('namespace')}/{ep}"]


def template_checksum(obj: Mapping[str, Any] | None) -> str | None:
    """The config checksum a pod (or a Deployment's pod template) was made from."""
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(
        ANNOTATION_CONFIG_CHECKSUM)
    return str(value) if value is not None else None


def _live(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def bound_and_live(pod: Mapping[str, Any]) -> bool:
    """Bound to a node and not terminated."""
    return _live(pod) and bool((pod.get("spec") or {}).get("nodeName"))


def bound_pods(pods: Iterable[Mapping[str, Any]], template: str | None) -> int:
    """Live pods of ``template`` (any, when None) that are bound to a node."""
    return sum(1 for p in pods if bound_and_live(p)
               and (template is None or template_checksum(p) == template))


def labelled_as(obj: Mapping[str, Any], endpoint: str) -> bool:
    """Whether ``obj`` carries the labels the operator puts on ``endpoint``'s children
    (how a retained cache PVC, which has no ownerReference, is known as its)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(LABEL_MANAGED_BY) == MANAGED_BY
                and labels.get(LABEL_ENDPOINT) == endpoint)


def pods_state(
    pods: list[Mapping[str, Any]], deployment: Mapping[str, Any] | None = None
) -> PodsState:
    """What the endpoint's own pods say: since when some are unschedulable, how many
    are Ready, why they fail, and the GPUs they hold (bound ones, by node) or charge to
    the quota (every live one).

    Only pods of the Deployment's current pod template count as unschedulable, Ready
    or failing: a pod of the previous choice's ReplicaSet says nothing about this one.
    """
    pod_template = ((deployment or {}).get("spec") or {}).get("template")
    template = template_checksum(pod_template)
    since: datetime | None = None
    message = ""
    gpus = 0
    ready = 0
    current: list[Mapping[str, Any]] = []
    held: list[tuple[str, Mapping[str, int]]] = []
    for pod in pods:
        status = pod.get("status") or {}
        if not _live(pod):
            continue
        # Pending pods charge the quota too.
        usage = pod_device_requests(pod, bound_only=False)
        if usage is not None:
            gpus += sum(usage[1].values())
            if usage[0]:
                held.append(usage)
        if template is not None and template_checksum(pod) != template:
            continue
        if is_ready(pod):
            ready += 1
        elif not (pod.get("metadata") or {}).get("deletionTimestamp"):
            current.append(pod)
        for c in status.get("conditions") or ():
            if (c.get("type") == "PodScheduled" and c.get("status") == "False"
                    and c.get("reason") == "Unschedulable"):
                t = parse_time(c.get("lastTransitionTime"))
                if t is not None and (since is None or t < since):
                    since, message = t, str(c.get("message") or "")
    return PodsState(since, message, gpus, tuple(held),
                     gpu_fixable(message) if since is not None else False,
                     bound_pods(pods, template), ready,
                     first_failure(current, memory_limits(pod_template)))


@dataclass(frozen=True)
class Observed:
    """One endpoint and everything around it, as the caches had it at ``now``.

    Invariants: ``endpoint`` is None exactly when ``invalid`` says why (the object
    does not validate, or its name cannot name the children); ``inventory`` already
    counts the endpoint's own bound pods' GPUs as free (its choice must not depend on
    whether its pods are bound yet); ``children`` maps (kind, name) to the newest copy
    of every child this endpoint controls, plus the cache PVC by name (a retained PVC
    carries no ownerReference); ``owned`` are the keys of ``children`` it controls.
    """

    key: str
    namespace: str
    name: str
    obj: KubeObject
    generation: int
    status: Mapping[str, Any]
    endpoint: AIMEndpoint | None
    invalid: str | None
    pods: PodsState
    recipes: RecipeIndex
    catalog: RecipeIndex
    inventory: GpuInventory
    quotas: tuple[Mapping[str, Any], ...]
    # The amd.com/gpu requests of the namespace's live pods: counted only when a quota
    # uses the bare amd.com/gpu key, which Kubernetes does not track (else None).
    namespace_gpus: int | None
    children: Mapping[ChildKey, KubeObject]
    owned: frozenset[ChildKey]
    monitoring_available: bool
    now: datetime
    # The AIMCaches of the namespace that list the endpoint's model.
    aim_caches: tuple[KubeObject, ...] = ()
    # The canary Deployment's pods (spec.deployment.canary); ``pods`` are the others.
    canary_pods: PodsState = field(default_factory=PodsState)
    # Container restarts of the canary's live pods of its current template.
    canary_restarts: int = 0
    # The Gateway API's HTTPRoute is served.
    routes_available: bool = False
    # A custom metrics API is served and Available (the HPA's GPU metric can be read).
    custom_metrics_available: bool = False
    # KEDA's ScaledObject is served (the GPU target can go through KEDA).
    keda_available: bool = False
    # --gpu-metrics-prometheus-url (settings.gpu_metrics_prometheus_url), for the report.
    gpu_metrics_url: str | None = None
    # A Prometheus decides canaries too; the canary's last metric verdict.
    metrics_required: bool = False
    canary_metrics: MetricVerdict | None = None

    @property
    def deployment(self) -> KubeObject | None:
        return self.children.get(("Deployment", self.name))

    @property
    def cache_pvc(self) -> KubeObject | None:
        return self.children.get(("PersistentVolumeClaim", self.name + CACHE_PVC_SUFFIX))


@dataclass
class EndpointCaches:
    """The read side of the endpoint controller: its caches, and nothing else.

    ``written`` holds one read-your-writes cache per kind the controller writes (the
    AIMEndpoint and each owned child kind, optional kinds once served).
    """

    endpoint_kind: str
    written: dict[str, MutationCache]
    pods: InformerLike
    quotas: InformerLike
    inventory: Callable[[], GpuInventory]
    namespace_recipes: Callable[[str], RecipeIndex]
    catalog: RecipeIndex
    monitoring_available: Callable[[], bool]
    # The Gateway API's HTTPRoute is served (spec.service.gateway can be honoured);
    # the default, bool(), is False.
    routes_available: Callable[[], bool] = bool
    # A custom metrics API (custom.metrics.k8s.io) is served and Available.
    custom_metrics_available: Callable[[], bool] = bool
    # KEDA's ScaledObject (keda.sh/v1alpha1) is served.
    keda_available: Callable[[], bool] = bool
    gpu_metrics_url: str | None = None
    # The canaries' metric verdicts by endpoint key (None: no Prometheus configured).
    canary_metrics: Callable[[str], MetricVerdict | None] | None = None
    reservations: ReservationBook = field(default_factory=ReservationBook)
    aim_caches: InformerLike | None = None

    def endpoint(self, key: str) -> KubeObject | None:
        return self.written[self.endpoint_kind].get(key)

    def observe(self, key: str, now: datetime) -> Observed | None:
        """None when the endpoint is gone or being deleted (nothing to do: garbage
        collection removes its children)."""
        obj = self.endpoint(key)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None
        namespace, name = split_key(key)
        assert namespace is not None
        endpoint: AIMEndpoint | None = None
        try:
            endpoint = AIMEndpoint.model_validate(obj)
        except ValidationError as err:
            invalid: str | None = f"invalid spec: {validation_message(err)}"
        else:
            invalid = endpoint_name_problem(name)
            if invalid is not None:
                endpoint = None
        children, owned = self._children(namespace, name, str(meta.get("uid") or ""))
        # The canary's pods (spec.deployment.canary) are reported apart from the stable's.
        every_pod = self.pods.store.by_index(INDEX_ENDPOINT_PODS, key)
        pods = pods_state([p for p in every_pod if not is_canary_pod(p)],
                          children.get(("Deployment", name)))
        canary = children.get(("Deployment", canary_name(name)))
        canary_pods = [p for p in every_pod if is_canary_pod(p)]
        canary_state = pods_state(canary_pods, canary)
        quotas = tuple(self.quotas.store.by_index(NAMESPACE_INDEX, namespace))
        namespace_gpus = (
            namespace_gpu_requests(self.pods.store.by_index(NAMESPACE_INDEX, namespace))
            if needs_pod_count(quotas) else None)
        return Observed(
            key=key,
            namespace=namespace,
            name=name,
            obj=obj,
            generation=int(meta.get("generation") or 0),
            status=obj.get("status") or {},
            endpoint=endpoint,
            invalid=invalid,
            pods=pods,
            recipes=self.namespace_recipes(namespace),
            catalog=self.catalog,
            # Less what other endpoints' pending pods were promised; its own pods' GPUs
            # count as free: the same choice whether or not they are bound yet.
            inventory=self.reservations.inventory_for(key, self.inventory()).give_back(
                pods.held + canary_state.held),
            quotas=quotas,
            namespace_gpus=namespace_gpus,
            children=children,
            owned=owned,
            monitoring_available=self.monitoring_available(),
            now=now,
            aim_caches=self._aim_caches(namespace, obj),
            canary_pods=canary_state,
            routes_available=self.routes_available(),
            custom_metrics_available=self.custom_metrics_available(),
            keda_available=self.keda_available(),
            gpu_metrics_url=self.gpu_metrics_url,
            metrics_required=self.canary_metrics is not None,
            canary_metrics=self.canary_metrics(key) if self.canary_metrics else None,
            canary_restarts=container_restarts(canary_pods, canary),
        )

    def _aim_caches(self, namespace: str, obj: KubeObject) -> tuple[KubeObject, ...]:
        if self.aim_caches is None:
            return ()
        return tuple(c for m in index_endpoint_by_model(obj) for c in
                     self.aim_caches.store.by_index(INDEX_CACHE_MODEL, f"{namespace}/{m}"))

    def _children(
        self, namespace: str, name: str, uid: str
    ) -> tuple[dict[ChildKey, KubeObject], frozenset[ChildKey]]:
        children: dict[ChildKey, KubeObject] = {}
        for kind, cache in list(self.written.items()):  # it may grow meanwhile
            if kind == self.endpoint_kind:
                continue
            for child in cache.by_index(INDEX_OWNER_UID, uid):
                children[(kind, str((child.get("metadata") or {}).get("name", "")))] = child
        owned = frozenset(children)
        pvc = self.written.get("PersistentVolumeClaim")
        key = ("PersistentVolumeClaim", name + CACHE_PVC_SUFFIX)
        if pvc is not None and key not in children:
            found = pvc.get(f"{namespace}/{key[1]}")
            if found is not None:
                children[key] = found
        return children, owned
