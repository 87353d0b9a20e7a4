"""Never adopt, never delete what is not ours; write failures become visible.

On the real control plane: objects a user already has under a child's name are
reported as a conflict and left byte-identical (resourceVersion and managedFields),
before and after the endpoint is deleted; a validating webhook that cannot be
reached turns into Degraded ApiError, which clears once the webhook is gone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    cond_is,
    condition,
    endpoint,
    ep,
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


def snapshot(cluster: LocalCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    obj = get_json(cluster, "-n", ns, kind, name, "--show-managed-fields")
    meta = obj["metadata"]
    return {"resourceVersion": meta["resourceVersion"],
            "managedFields": meta.get("managedFields"),
            "ownerReferences": meta.get("ownerReferences"), "uid": meta["uid"]}


def user_objects(ns: str, name: str) -> list[dict[str, Any]]:
    """A user's own objects that happen to carry the names of an endpoint's children."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"{name}-config", "namespace": ns}, "data": {"important": "data"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"ports": [{"port": 9999}], "selector": {"app": "mine"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "keepme", "namespace": ns},
         "imagePullSecrets": [{"name": "regcred"}]},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": f"{name}-cache", "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


async def test_objects_of_a_childs_name_are_never_adopted_or_deleted(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    mine = user_objects(namespace, "victim")
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(mine))
    keys = [(o["kind"], o["metadata"]["name"]) for o in mine]
    before = {k: snapshot(crds, namespace, *k) for k in keys}
    apply(crds, endpoint("victim", cache={"enabled": True},
                         security={"serviceAccount": {"create": True, "name": "keepme"}}),
          namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "victim", "ResourcesReady", "False", "ChildConflict"),
        60, what="ChildConflict", blocking=True)
    message = condition(obj, "ResourcesReady")["message"]
    for kind, name in keys:
        assert f"{kind} {name}" in message, message
    def conflict_event() -> bool:
        events = get_json(crds, "-n", namespace, "events",
                          "--field-selector", "involvedObject.name=victim")["items"]
        return any(e["reason"] == "ChildConflict" and e["type"] == "Warning" for e in events)

    # Events are written in the background, after the status.
    await eventually(conflict_event, 30, what="ChildConflict Event", blocking=True)
    # Nothing that depends on them was created either.
    assert crds.kubectl("get", "-n", namespace, "deployment", "victim",
                        check=False).returncode != 0
    assert {k: snapshot(crds, namespace, *k) for k in keys} == before
    crds.kubectl("delete", "-n", namespace, f"aimendpoints.{GROUP}/victim", "--wait=true")
    await eventually(lambda: ep(crds, namespace, "victim") is None, 30, what="deleted",
                     blocking=True)
    # Garbage collection had nothing of theirs to take.
    crds.kubectl("wait", "-n", namespace, "--for=delete", "replicaset", "--all",
                 "--timeout=30s", check=False)
    assert {k: snapshot(crds, namespace, *k) for k in keys} == before


async def test_the_default_service_account_is_never_taken_over(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    # The namespace's default ServiceAccount is made by kube-controller-manager, shortly
    # after the namespace.
    await eventually(lambda: get_json(crds, "-n", namespace, "serviceaccount", "default"),
                     60, what="default ServiceAccount", blocking=True)
    before = snapshot(crds, namespace, "serviceaccount", "default")
    apply(crds, endpoint("usesdefault", security={
        "serviceAccount": {"create": True, "name": "default"}}), namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "usesdefault", "ResourcesReady", "False",
                        "ChildConflict"), 60, what="ChildConflict", blocking=True)
    assert "ServiceAccount default" in condition(obj, "ResourcesReady")["message"]
    assert snapshot(crds, namespace, "serviceaccount", "default") == before


async def test_a_conflict_resolves_when_the_user_removes_the_object(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    crds.kubectl("create", "configmap", "-n", namespace, "later-config",
                 "--from-literal=k=v")
    apply(crds, endpoint("later"), namespace)
    await eventually(
        lambda: cond_is(crds, namespace, "later", "ResourcesReady", "False", "ChildConflict"),
        60, what="ChildConflict", blocking=True)
    crds.kubectl("delete", "configmap", "-n", namespace, "later-config")
    obj = await wait_ready(crds, namespace, "later", within=120)
    cm = get_json(crds, "-n", namespace, "configmap", "later-config")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]


async def test_a_failing_webhook_shows_as_api_error_and_nothing_is_lost(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    hook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"deny-{namespace}"},
        "webhooks": [{
            "name": "unreachable.aim-tests.example.com",
            "clientConfig": {"url": "https://127.0.0.1:1/validate"},
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Fail", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
        }],
    }
    crds.kubectl("apply", "-f", "-", input=json.dumps(hook))
    try:
        apply(crds, endpoint("blocked"), namespace)
        obj = await eventually(
            lambda: cond_is(crds, namespace, "blocked", "Degraded", "True", "ApiError"),
            90, what="Degraded ApiError", blocking=True)
        assert "HTTP 500" in condition(obj, "Degraded")["message"], condition(obj, "Degraded")
    finally:
        crds.kubectl("delete", "validatingwebhookconfiguration", f"deny-{namespace}",
                     check=False)
    obj = await wait_ready(crds, namespace, "blocked", within=180)
    assert condition(obj, "Degraded")["reason"] != "ApiError"
    uid = obj["metadata"]["uid"]
    owned = set()
    for kind in ("deployment", "service", "configmap", "serviceaccount",
                 "horizontalpodautoscaler", "persistentvolumeclaim"):
        for o in get_json(crds, "-n", namespace, kind)["items"]:
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or ()):
                owned.add((o["kind"], o["metadata"]["name"]))
    # Exactly its children, each once: nothing lost, nothing doubled.
    assert {("Deployment", "blocked"), ("Service", "blocked"),
            ("ConfigMap", "blocked-config")} <= owned, owned
