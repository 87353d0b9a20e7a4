"""What the AIMCache controller reads of cache Job pods survives the slim pod cache, and
pods map to their cache by label."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from test_cache_decide import SETTINGS, cache_obj, observed

from aim_controller.api.v1alpha1.cache import AIMCache
from aim_controller.builders.cache_objects import build_download_job
from aim_controller.builders.diff import needs_apply
from aim_controller.reconcilers.cache_decide import decide
from aim_controller.reconcilers.cache_observe import (
    cache_keys_of_pod,
    cache_of_endpoint,
    cache_users,
    job_view,
)
from aim_controller.reconcilers.cache_report import deletion_status
from aim_controller.reconcilers.pod_slim import slim_pod


def download_pod(report: dict[str, Any]) -> dict[str, Any]:
    cache = AIMCache.model_validate(cache_obj([{"id": "org/m"}]))
    job = build_download_job(cache, cache.spec.models[0], SETTINGS, 10)
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": "pu", "resourceVersion": "7",
                     "labels": {**template["metadata"]["labels"], "job-name": "x",
                                "controller-uid": "ju"},
                     "annotations": template["metadata"]["annotations"],
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "x",
                                          "uid": "ju", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": template["spec"],
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "download", "ready": False, "restartCount": 0, "image": "i",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                     "message": json.dumps(report),
                                     "startedAt": "t", "finishedAt": "t"}}}]},
    }


def test_the_slim_pod_keeps_the_report_labels_and_owner() -> None:
    report = {"model": "org/m", "state": "Ready", "sizeBytes": 10, "revision": "abc",
              "skipped": False, "message": "downloaded"}
    full = download_pod(report)
    slim = slim_pod(full)
    assert slim["metadata"]["labels"] == {
        "aim.engine.amd.com/cache": "c", "aim.engine.amd.com/cache-job": "download",
        "app.kubernetes.io/managed-by": "aim-controller"}
    assert slim["metadata"]["ownerReferences"][0]["uid"] == "ju"
    job = {"metadata": {"name": "x", "uid": "ju",
                        "annotations": {"aim.engine.amd.com/cache-model": "org/m"}},
           "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert job_view(job, [slim]).report == job_view(job, [full]).report == report
    caches = [{"metadata": {"name": "c"}}, {"metadata": {"name": "d"}}]
    assert cache_keys_of_pod(slim, caches) == cache_keys_of_pod(full, caches) == ["ns/c"]


def test_other_pods_keep_no_cache_labels() -> None:
    pod = {"metadata": {"name": "q", "namespace": "ns", "labels": {"app": "x"}},
           "spec": {}, "status": {"phase": "Running"}}
    assert "labels" not in slim_pod(pod)["metadata"]
    assert cache_keys_of_pod(pod, [{"metadata": {"name": "c"}}]) == []


def test_a_larger_size_patches_the_claims_request() -> None:
    o = observed(cache_obj([], size="10Gi"))
    pvc = decide(o, SETTINGS, 2).pvc
    assert pvc is not None
    grown = decide(observed(cache_obj([], size="20Gi"), pvc=pvc), SETTINGS, 2)
    assert grown.apply_pvc and grown.pvc is not None
    assert grown.pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert not needs_apply(grown.pvc, grown.pvc)


def endpoint(name: str, cache: dict[str, Any] | None, deleting: bool = False
             ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"model": {"id": "org/m"}},
            "status": {"cache": cache} if cache else {}}


def test_the_users_of_a_cache_are_the_endpoints_that_mount_it() -> None:
    mounts = {"source": "AIMCache", "aimCache": "c", "persistentVolumeClaim": "aimcache-c"}
    eps = [endpoint("b", mounts), endpoint("a", mounts),
           endpoint("own", {"source": "Own", "aimCache": "c"}),
           endpoint("other", {**mounts, "aimCache": "d"}),
           endpoint("going", mounts, deleting=True), endpoint("none", None)]
    assert cache_users(eps, "c") == ("a", "b")
    assert cache_of_endpoint(eps[2]) is None and cache_of_endpoint(eps[3]) == "d"


def test_a_deleted_cache_in_use_says_who_holds_it() -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": "",
             "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}
    storage = {**ready, "type": "StorageReady", "reason": "Bound"}
    o = replace(observed(cache_obj([]), status={"phase": "Ready",
                                                "conditions": [storage, ready]}),
                deleting=True, users=("a", "b"))
    status = deletion_status(o, "2026-01-01T00:00:00Z")
    assert status["phase"] == "Ready"
    assert status["conditions"][0] == storage
    assert status["conditions"][1]["status"] == "False"
    assert status["conditions"][1]["reason"] == "InUse"
    assert "the AIMEndpoints that mount its volume: a, b" in status["conditions"][1]["message"]
