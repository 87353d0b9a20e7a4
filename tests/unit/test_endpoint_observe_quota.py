"""Observe: the namespace's GPU use is counted from the pod cache exactly when a
quota uses the bare ``amd.com/gpu`` key, which Kubernetes does not track."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from recipes_fixtures import pod, quota

from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.store import DEFAULT_INDEXERS, Indexer
from aim_controller.recipes import RecipeIndex, build_inventory, builtin_index
from aim_controller.reconcilers.endpoint_observe import (
    INDEX_ENDPOINT_PODS,
    EndpointCaches,
    index_pod_by_endpoint,
)

NS = "aim"


def caches(quotas: list[dict[str, Any]], pods: list[dict[str, Any]]) -> EndpointCaches:
    endpoint_store = Indexer(DEFAULT_INDEXERS)
    endpoint_store.add({
        "apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMEndpoint",
        "metadata": {"name": "ep", "namespace": NS, "uid": "uid-ep", "generation": 1},
        "spec": {"model": {"id": "org/Model-7B"}},
    })
    endpoints = SimpleNamespace(store=endpoint_store, add_event_handler=lambda _h: None)
    pod_store = Indexer({**DEFAULT_INDEXERS, INDEX_ENDPOINT_PODS: index_pod_by_endpoint})
    for p in pods:
        pod_store.add(p)
    quota_store = Indexer(DEFAULT_INDEXERS)
    for q in quotas:
        quota_store.add(q)
    return EndpointCaches(
        endpoint_kind="AIMEndpoint",
        written={"AIMEndpoint": MutationCache(endpoints)},  # type: ignore[arg-type]
        pods=SimpleNamespace(store=pod_store),  # type: ignore[arg-type]
        quotas=SimpleNamespace(store=quota_store),  # type: ignore[arg-type]
        inventory=lambda: build_inventory([], []),
        namespace_recipes=lambda ns: RecipeIndex.build((), "namespace", ns),
        catalog=builtin_index(),
        monitoring_available=lambda: False,
    )


PODS = [
    pod("a", "n1", 2, namespace=NS),
    pod("b", None, 3, namespace=NS, phase="Pending"),
    pod("gone", "n1", 8, namespace=NS, phase="Succeeded"),
    pod("elsewhere", "n1", 4, namespace="other"),
]


def test_bare_key_quota_gets_the_namespace_pods_gpu_requests() -> None:
    bare = quota(8, key="amd.com/gpu")
    bare["metadata"]["namespace"] = NS
    o = caches([bare], PODS).observe(f"{NS}/ep", datetime(2026, 1, 1, tzinfo=UTC))
    assert o is not None and o.namespace_gpus == 5


def test_requests_key_or_no_quota_counts_nothing() -> None:
    tracked = quota(8)
    tracked["metadata"]["namespace"] = NS
    for quotas in ([tracked], []):
        o = caches(quotas, PODS).observe(f"{NS}/ep", datetime(2026, 1, 1, tzinfo=UTC))
        assert o is not None and o.namespace_gpus is None
