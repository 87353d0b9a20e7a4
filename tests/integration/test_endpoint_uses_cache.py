"""Endpoints use a shared AIMCache, on the real control plane.

The operator runs with the endpoint controller only: the test plays the AIMCache
controller, writing each AIMCache's status through the status subresource, so the
endpoint's side of the contract is exercised alone (PVC name and per-model states in,
the endpoint's waiting, mount, fallback and status out). The last test runs both
controllers: a real download (kwok completes the Job's pod) and the endpoint on it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    ReconcileLog,
    apply,
    cond_is,
    condition,
    endpoint,
    ep,
    get_json,
    running_operator,
    settled,
    write_requests,
)
from support import eventually

from aim_controller.builders.cache_objects import cache_pvc_claim_name
from aim_controller.reconcilers.cache import CONTROLLER_NAME as CACHE_CONTROLLER
from aim_controller.reconcilers.endpoint import CONTROLLER_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

MODEL = "Qwen/Qwen2.5-7B-Instruct"
CACHED_PATH = "/cache/models/Qwen--Qwen2.5-7B-Instruct"


def aim_cache(name: str, *models: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMCache",
            "metadata": {"name": name},
            "spec": {"storage": {"size": "100Gi"}, "models": [{"id": m} for m in models]}}


def set_cache_status(cluster: LocalCluster, ns: str, name: str, pvc: str,
                     **states: str) -> None:
    """What the AIMCache controller would report: its PVC and each model's state
    (keyword: model id with "/" as "__")."""
    models = [{"id": m.replace("__", "/"), "state": s, "message": f"test says {s}"}
              for m, s in states.items()]
    cluster.kubectl("patch", "-n", ns, f"aimcaches.{GROUP}", name, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {
                        "persistentVolumeClaim": pvc, "models": models}}))


def model_state(state: str) -> dict[str, str]:
    return {MODEL.replace("/", "__"): state}


def deployment(cluster: LocalCluster, ns: str, name: str) -> Any:
    return get_json(cluster, "-n", ns, "deployment", name)


def weights(dep: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Deployment's PVC volumes and their mounts in the engine container."""
    pod = dep["spec"]["template"]["spec"]
    vols = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    names = {v["name"] for v in vols}
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] in names]
    return vols, mounts


def claims(dep: dict[str, Any]) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in weights(dep)[0]]


def warning_events(cluster: LocalCluster, ns: str, name: str, reason: str) -> list[Any]:
    out = get_json(cluster, "-n", ns, "events", f"--field-selector=involvedObject.name={name}")
    return [e for e in (out or {}).get("items") or ()
            if e.get("reason") == reason and e.get("type") == "Warning"]


def flag(args: list[str], name: str) -> str | None:
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == name), None)


async def test_waits_while_the_cache_downloads_then_mounts_it_read_only(
    crds: LocalCluster, namespace: str
) -> None:
    ns = namespace
    async with running_operator(crds, "--namespace", ns, only=(CONTROLLER_NAME,)) as app:
        apply(crds, aim_cache("models", MODEL, "org/Other"), ns)
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Downloading"))
        # The operator has the AIMCache before the endpoint comes (else the endpoint
        # starts on its own PVC and, serving, keeps serving: another rule).
        await settled(app, crds, ns)
        apply(crds, endpoint("ep", model=MODEL, cache={"enabled": True, "size": "10Gi"}), ns)

        obj = await eventually(
            lambda: cond_is(crds, ns, "ep", "CacheReady", "False", "CacheDownloading"), 60,
            what="CacheReady False CacheDownloading", blocking=True)
        message = condition(obj, "CacheReady")["message"]
        assert "AIMCache models" in message and "Downloading" in message
        cache = obj["status"]["cache"]
        assert cache["aimCache"] == "models" and cache["state"] == "Downloading"
        assert cache["waitingSince"]
        assert condition(obj, "Ready")["reason"] == "CacheDownloading"
        # Done with everything it had to do: it waits, with no Deployment and no own PVC.
        await settled(app, crds, ns)
        assert deployment(crds, ns, "ep") is None
        assert get_json(crds, "-n", ns, "pvc", "ep-cache") is None
        assert get_json(crds, "-n", ns, "service", "ep") is not None

        # The model is Ready: the AIMCache's event alone brings the endpoint back.
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Ready"))
        dep = await eventually(lambda: deployment(crds, ns, "ep"), 60,
                               what="the Deployment", blocking=True)
        vols, mounts = weights(dep)
        assert vols == [{"name": "aim-cache", "persistentVolumeClaim": {
            "claimName": "models-pvc", "readOnly": True}}]
        assert mounts == [{"name": "aim-cache", "mountPath": "/cache", "readOnly": True}]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert flag(container["args"], "--model") == CACHED_PATH
        assert flag(container["args"], "--served-model-name") == MODEL
        assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container["env"]
        obj = await eventually(
            lambda: cond_is(crds, ns, "ep", "CacheReady", "True", "AIMCacheReady"), 60,
            what="CacheReady True", blocking=True)
        assert obj["status"]["cache"] == {
            "source": "AIMCache", "aimCache": "models", "persistentVolumeClaim": "models-pvc",
            "path": CACHED_PATH, "state": "Ready"}
        # spec.cache.enabled as well: the status says the own PVC is not used for weights.
        assert "own PVC ep-cache is not used" in condition(obj, "CacheReady")["message"]
        assert get_json(crds, "-n", ns, "pvc", "ep-cache") is None
        # Converged on the cache: a forced reconcile writes nothing.
        await settled(app, crds, ns)
        writes = write_requests(app)
        assert await ReconcileLog(app).reconcile(f"{ns}/ep") == "success"
        assert write_requests(app) == writes

        # Evicted from the cache: the endpoint switches to its own download.
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Evicted"))
        dep = await eventually(
            lambda: (d := deployment(crds, ns, "ep")) and claims(d) == ["ep-cache"] and d,
            60, what="the Deployment on its own PVC", blocking=True)
        assert "--served-model-name" not in dep["spec"]["template"]["spec"]["containers"][0][
            "args"]
        assert get_json(crds, "-n", ns, "pvc", "ep-cache") is not None
        obj = await eventually(
            lambda: cond_is(crds, ns, "ep", "CacheReady", "False", "CacheUnavailable"), 60,
            what="CacheUnavailable", blocking=True)
        assert obj["status"]["cache"]["source"] == "Own"
        await eventually(lambda: warning_events(crds, ns, "ep", "CacheUnavailable"), 30,
                         what="a CacheUnavailable Warning Event", blocking=True)


async def test_a_failed_model_starts_with_the_own_download(
    crds: LocalCluster, namespace: str
) -> None:
    ns = namespace
    async with running_operator(crds, "--namespace", ns, only=(CONTROLLER_NAME,)):
        apply(crds, aim_cache("models", MODEL), ns)
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Failed"))
        apply(crds, endpoint("ep", model=MODEL), ns)
        dep = await eventually(lambda: deployment(crds, ns, "ep"), 60,
                               what="the Deployment", blocking=True)
        # No own cache (spec.cache.enabled is false): the engine downloads as it would
        # without any AIMCache.
        assert claims(dep) == []
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert flag(args, "--model") == MODEL
        obj = await eventually(
            lambda: cond_is(crds, ns, "ep", "CacheReady", "False", "CacheUnavailable"), 60,
            what="CacheUnavailable", blocking=True)
        message = condition(obj, "CacheReady")["message"]
        assert "Failed" in message and "test says Failed" in message
        assert obj["status"]["cache"] == {"source": "None", "aimCache": "models",
                                          "state": "Failed"}
        events = await eventually(lambda: warning_events(crds, ns, "ep", "CacheUnavailable"),
                                  30, what="a CacheUnavailable Warning Event", blocking=True)
        assert "AIMCache models" in events[0]["message"]


async def test_the_wait_times_out_into_the_own_download_with_an_event(
    crds: LocalCluster, namespace: str
) -> None:
    ns = namespace
    async with running_operator(crds, "--namespace", ns, "--cache-wait-timeout", "3s",
                                only=(CONTROLLER_NAME,)):
        apply(crds, aim_cache("models", MODEL), ns)
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Downloading"))
        apply(crds, endpoint("ep", model=MODEL, cache={"enabled": True, "size": "10Gi"}), ns)
        dep = await eventually(lambda: deployment(crds, ns, "ep"), 60,
                               what="the Deployment after the wait", blocking=True)
        assert claims(dep) == ["ep-cache"]
        obj = await eventually(
            lambda: cond_is(crds, ns, "ep", "CacheReady", "False", "CacheWaitTimedOut"), 60,
            what="CacheWaitTimedOut", blocking=True)
        cache = obj["status"]["cache"]
        assert cache["source"] == "Own" and cache["persistentVolumeClaim"] == "ep-cache"
        assert cache["state"] == "Downloading" and cache["waitingSince"]
        assert "3s" in condition(obj, "CacheReady")["message"]
        await eventually(lambda: warning_events(crds, ns, "ep", "CacheWaitTimedOut"), 30,
                         what="a CacheWaitTimedOut Warning Event", blocking=True)

        # The model turns Ready later: the endpoint switches to the cache.
        set_cache_status(crds, ns, "models", "models-pvc", **model_state("Ready"))
        dep = await eventually(
            lambda: (d := deployment(crds, ns, "ep")) and claims(d) == ["models-pvc"] and d,
            60, what="the Deployment on the AIMCache", blocking=True)
        # The own PVC, created for the fallback, is kept (not used for weights).
        assert get_json(crds, "-n", ns, "pvc", "ep-cache") is not None
        obj = await eventually(lambda: cond_is(crds, ns, "ep", "CacheReady", "True"), 60,
                               what="CacheReady True", blocking=True)
        assert "waitingSince" not in obj["status"]["cache"]


async def test_no_aim_cache_for_the_model_keeps_the_own_pvc(
    crds: LocalCluster, namespace: str
) -> None:
    ns = namespace
    async with running_operator(crds, "--namespace", ns, only=(CONTROLLER_NAME,)) as app:
        apply(crds, aim_cache("models", "org/Other"), ns)
        set_cache_status(crds, ns, "models", "models-pvc", org__Other="Ready")
        apply(crds, endpoint("ep", model=MODEL, cache={"enabled": True, "size": "10Gi"}), ns)
        dep = await eventually(lambda: deployment(crds, ns, "ep"), 60,
                               what="the Deployment", blocking=True)
        vols, mounts = weights(dep)
        assert vols == [{"name": "model-cache",
                         "persistentVolumeClaim": {"claimName": "ep-cache"}}]
        assert mounts == [{"name": "model-cache", "mountPath": "/models"}]
        await settled(app, crds, ns)
        obj = ep(crds, ns, "ep")
        assert condition(obj, "CacheReady") is None
        assert obj["status"]["cache"] == {"source": "Own", "persistentVolumeClaim": "ep-cache"}
        assert get_json(crds, "-n", ns, "pvc", "ep-cache") is not None


async def test_end_to_end_with_the_aim_cache_controller(
    crds: LocalCluster, namespace: str
) -> None:
    """Both controllers: the AIMCache downloads the model (kwok completes the Job's pod)
    and reports it Ready; the endpoint of that model then mounts the cache's PVC."""
    ns = namespace
    claim = cache_pvc_claim_name("models")
    pv = f"pv-{ns}-models"
    # No provisioner here: a volume pre-bound to the cache's claim.
    crds.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteMany"],
                 "storageClassName": "local-test", "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": f"/tmp/aim-tests/{pv}"},
                 "claimRef": {"namespace": ns, "name": claim}}}))
    try:
        async with running_operator(crds, "--namespace", ns,
                                    only=(CONTROLLER_NAME, CACHE_CONTROLLER)):
            cache = aim_cache("models", MODEL)
            cache["spec"]["storage"] = {"storageClass": "local-test", "size": "50Gi"}
            apply(crds, cache, ns)
            apply(crds, endpoint("ep", model=MODEL), ns)
            obj = await eventually(
                lambda: cond_is(crds, ns, "ep", "CacheReady", "True", "AIMCacheReady"), 120,
                what="the endpoint on the Ready AIMCache", blocking=True)
            assert obj["status"]["cache"] == {
                "source": "AIMCache", "aimCache": "models", "persistentVolumeClaim": claim,
                "path": CACHED_PATH, "state": "Ready"}
            dep = await eventually(
                lambda: (d := deployment(crds, ns, "ep")) and claims(d) == [claim] and d,
                60, what="the Deployment on the AIMCache's PVC", blocking=True)
            vols, mounts = weights(dep)
            assert vols[0]["persistentVolumeClaim"]["readOnly"] is True
            assert mounts[0]["readOnly"] is True and mounts[0]["mountPath"] == "/cache"
            args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            assert flag(args, "--model") == CACHED_PATH
    finally:
        crds.kubectl("delete", "pv", pv, "--wait=false", check=False)
