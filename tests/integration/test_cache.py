"""The AIMCache controller on the local control plane: the real kube-controller-manager
runs the Jobs and CronJobs and binds the PVCs (to PersistentVolumes the tests create:
there is no provisioner), kwok runs the download pods (hack/kwok/stages.yaml,
pod-cache-download: Ready with the annotated expected size after 2 s, Failed with exit
code 3 for a model id containing "kwok-fail")."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    ReconcileLog,
    apply,
    condition,
    get_json,
    running_operator,
    settled,
    write_requests,
)
from support import eventually

from aim_controller.api.v1alpha1.cache import AIMCache
from aim_controller.builders.cache_objects import (
    cache_pvc_claim_name,
    cleanup_cronjob_name,
    download_job_name,
    download_key,
)
from aim_controller.main import App
from aim_controller.recipes import builtin_index
from aim_controller.reconcilers.cache import CONTROLLER_NAME
from aim_controller.reconcilers.cache_observe import CACHE_FINALIZER
from aim_controller.reconcilers.cache_size import expected_size

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "global-model-cache.yaml"
CACHE = f"aimcaches.{GROUP}"


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, only=(CONTROLLER_NAME,)) as app:
        yield app


@pytest.fixture
def volumes(crds: LocalCluster) -> Iterator[list[str]]:
    """PersistentVolumes made by a test, deleted afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        crds.kubectl("delete", "pv", name, "--wait=false", check=False)


def make_pv(cluster: LocalCluster, made: list[str], ns: str, claim: str, size: str,
            storage_class: str = "local-test", mode: str = "ReadWriteMany") -> None:
    """A hostPath volume pre-bound to ``ns/claim`` (so no other test's claim takes it)."""
    name = f"pv-{ns}-{len(made)}"
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
          "spec": {"capacity": {"storage": size}, "accessModes": [mode],
                   "storageClassName": storage_class,
                   "persistentVolumeReclaimPolicy": "Retain",
                   "hostPath": {"path": f"/tmp/aim-tests/{name}"},
                   "claimRef": {"namespace": ns, "name": claim}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
    made.append(name)


def aimcache(name: str, models: list[dict[str, Any]], size: str = "10Gi",
             **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMCache", "metadata": {"name": name},
            "spec": {"storage": {"storageClass": "local-test", "size": size},
                     "models": models, **spec}}


def get_cache(cluster: LocalCluster, ns: str, name: str) -> Any:
    return get_json(cluster, "-n", ns, f"{CACHE}/{name}")


def models_of(obj: Any) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in ((obj or {}).get("status") or {}).get("models") or ()}


def cond_is(cluster: LocalCluster, ns: str, name: str, type_: str, status: str,
            reason: str | None = None) -> Any:
    obj = get_cache(cluster, ns, name)
    c = condition(obj, type_)
    if c and c["status"] == status and (reason is None or c["reason"] == reason):
        return obj
    return None


def jobs(cluster: LocalCluster, ns: str, cache: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "jobs", "-l",
                   f"aim.engine.amd.com/cache={cache},aim.engine.amd.com/cache-job=download")
    return list((out or {}).get("items") or ())


def events(cluster: LocalCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "events", "--field-selector",
                   f"involvedObject.name={name},reason={reason}")
    return list((out or {}).get("items") or ())


def job_name_of(obj: dict[str, Any], model_id: str, ns: str) -> str:
    cache = AIMCache.model_validate({**obj, "metadata": {**obj["metadata"], "namespace": ns,
                                                         "uid": "x"}})
    model = next(m for m in cache.spec.models if m.id == model_id)
    return download_job_name(obj["metadata"]["name"], download_key(model, cache))


async def test_the_spec_sample_reaches_ready_with_both_models(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"].pop("namespace")  # the test's own namespace; the rest as written
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("global-model-cache"), "500Gi",
            storage_class="fast-ssd")
    apply(crds, doc, namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "global-model-cache", "Ready", "True"), 120,
        what="the sample AIMCache Ready", blocking=True)
    st = obj["status"]
    assert st["phase"] == "Ready" and st["modelsReady"] == "2/2"
    assert condition(obj, "StorageReady")["reason"] == "Bound"
    assert condition(obj, "ModelsReady")["status"] == "True"
    assert st["persistentVolumeClaim"] == "aimcache-global-model-cache"
    assert st["capacityBytes"] == 500 * 2**30
    catalog = builtin_index()
    cache = AIMCache.model_validate({**doc, "metadata": {"name": "global-model-cache"}})
    models = models_of(obj)
    for m in cache.spec.models:
        entry = models[m.id]
        assert entry["state"] == "Ready" and entry["inSpec"] is True, entry
        # kwok's pod reports the size the operator expected (catalog: params x bf16 x 1.1).
        assert entry["sizeBytes"] == expected_size(m, catalog).bytes, entry
        assert entry["revision"] == "kwok-sim"
        assert entry["priority"] == m.priority and entry["retention"] == m.retention
    assert st["usedBytes"] == sum(m["sizeBytes"] for m in models.values())
    # The cleanup CronJob carries the schedule and the policy.
    cj = get_json(crds, "-n", namespace, "cronjob", cleanup_cronjob_name("global-model-cache"))
    assert cj["spec"]["schedule"] == "0 2 * * *"
    args = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["cache-clean", "--root", "/cache"]
    policy = json.loads(args[args.index("--policy-json") + 1])
    assert args[args.index("--capacity-bytes") + 1] == str(500 * 2**30)
    assert policy["maxAgeSeconds"] == 30 * 86400 and policy["minFreeBytes"] == 100 * 2**30
    assert [(p["id"], p["priority"], p["retentionSeconds"], p["inSpec"])
            for p in policy["models"]] == [("Qwen/Qwen3-32B", "high", 30 * 86400, True),
                                           ("Qwen/Qwen2.5-7B-Instruct", "medium", 7 * 86400,
                                            True)]
    assert cj["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    # kubectl get aich prints the phase, ready/total and the space used.
    row = crds.kubectl("get", "aich", "-n", namespace, "global-model-cache",
                       "--no-headers").stdout.split()
    assert row[1:5] == ["500Gi", "Ready", "2/2", st["used"]], row
    await eventually(lambda: events(crds, namespace, "global-model-cache", "ModelReady"), 30,
                     what="ModelReady Events", blocking=True)


async def test_downloads_run_by_priority_at_most_two_at_once(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    models = [{"id": "org/low-1B", "priority": "low", "sizeHint": "1Gi"},
              {"id": "org/high-1B", "priority": "high", "sizeHint": "1Gi"},
              {"id": "org/medium-1B", "sizeHint": "1Gi"}]
    doc = aimcache("prio", models)
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("prio"), "10Gi")
    apply(crds, doc, namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "prio", "Ready", "True"), 120,
                           what="all three Ready", blocking=True)
    assert obj["status"]["modelsReady"] == "3/3"
    by_model = {j["metadata"]["annotations"]["aim.engine.amd.com/cache-model"]: j
                for j in jobs(crds, namespace, "prio")}
    assert set(by_model) == {m["id"] for m in models}
    created = {k: j["metadata"]["creationTimestamp"] for k, j in by_model.items()}
    done = {k: j["status"]["completionTime"] for k, j in by_model.items()}
    # high and medium first; low only once one of them had finished (bound: 2 at once).
    assert created["org/high-1B"] <= created["org/low-1B"]
    assert created["org/medium-1B"] <= created["org/low-1B"]
    assert created["org/low-1B"] >= min(done["org/high-1B"], done["org/medium-1B"])
    job = by_model["org/low-1B"]
    assert job["spec"]["backoffLimit"] == 2
    assert job["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["cache-download", "--root", "/cache",
                                            "--model", "org/low-1B"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "aimcache-prio"


async def test_a_failing_download_is_failed_with_its_reason(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("fails"), "10Gi")
    apply(crds, aimcache("fails", [{"id": "org/kwok-fail-1B", "sizeHint": "1Gi"},
                                   {"id": "org/fine-1B", "sizeHint": "1Gi"}]), namespace)
    obj = await eventually(
        lambda: cond_is(crds, namespace, "fails", "ModelsReady", "False", "DownloadFailed"),
        120, what="DownloadFailed", blocking=True)
    entry = models_of(obj)["org/kwok-fail-1B"]
    assert entry["state"] == "Failed"
    # The Job's reason (the pod failure policy's FailJob on exit code 3) and the report.
    assert "PodFailurePolicy" in entry["message"], entry
    assert "404 Client Error: Repository Not Found" in entry["message"], entry
    assert obj["status"]["phase"] == "Degraded"
    await eventually(lambda: cond_is(crds, namespace, "fails", "StorageReady", "True"), 60,
                     what="StorageReady", blocking=True)
    await eventually(lambda: models_of(get_cache(crds, namespace, "fails"))[
        "org/fine-1B"]["state"] == "Ready", 60, what="the other model Ready", blocking=True)
    await eventually(lambda: events(crds, namespace, "fails", "DownloadFailed"), 30,
                     what="DownloadFailed Event", blocking=True)


async def test_models_that_do_not_fit_are_not_started_and_say_so(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("small"), "20Gi")
    apply(crds, aimcache("small", [
        {"id": "org/big-70B", "priority": "high", "sizeHint": "30Gi"},
        {"id": "org/tiny-1B", "priority": "low", "sizeHint": "1Gi"},
    ], size="20Gi"), namespace)
    obj = await eventually(
        lambda: (o := cond_is(crds, namespace, "small", "ModelsReady", "False",
                              "InsufficientSpace"))
        and models_of(o).get("org/tiny-1B", {}).get("state") == "Ready" and o,
        120, what="InsufficientSpace, the small model Ready", blocking=True)
    message = condition(obj, "ModelsReady")["message"]
    assert "the models need 31Gi but the volume holds 20Gi" in message, message
    assert "org/big-70B 30Gi (sizeHint)" in message and "not started: org/big-70B" in message
    big = models_of(obj)["org/big-70B"]
    assert big["state"] == "Pending" and "waiting for space: needs 30Gi" in big["message"]
    assert {j["metadata"]["annotations"]["aim.engine.amd.com/cache-model"]
            for j in jobs(crds, namespace, "small")} == {"org/tiny-1B"}
    await eventually(lambda: events(crds, namespace, "small", "InsufficientSpace"), 30,
                     what="InsufficientSpace Event", blocking=True)


async def test_the_cleanup_cronjob_follows_cleanup_enabled(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    name = cleanup_cronjob_name("tidy")
    apply(crds, aimcache("tidy", [], cleanup={"enabled": True, "schedule": "*/5 * * * *",
                                              "maxAge": "7d"}), namespace)
    cj = await eventually(lambda: get_json(crds, "-n", namespace, "cronjob", name), 60,
                          what="the cleanup CronJob", blocking=True)
    assert cj["spec"]["schedule"] == "*/5 * * * *"
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    args = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--capacity-bytes", str(10 * 2**30)]  # the volume's, not the fs'
    assert json.loads(args[4]) == {"models": [], "inUse": [], "maxAgeSeconds": 7 * 86400,
                                    "minFreeBytes": None}
    apply(crds, aimcache("tidy", [], cleanup={"enabled": False}), namespace)
    await eventually(lambda: get_json(crds, "-n", namespace, "cronjob", name) is None, 60,
                     what="the CronJob deleted", blocking=True)


def snapshot(cluster: LocalCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    meta = get_json(cluster, "-n", ns, kind, name, "--show-managed-fields")["metadata"]
    return {k: meta.get(k) for k in ("resourceVersion", "managedFields", "ownerReferences",
                                     "uid", "labels")}


async def test_objects_named_like_a_child_are_reported_and_left_alone(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": cache_pvc_claim_name("taken"), "namespace": namespace},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "nothing-here",
                    "resources": {"requests": {"storage": "1Gi"}}}}
    doc = aimcache("jobtaken", [{"id": "org/model-1B", "sizeHint": "1Gi"}])
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": job_name_of(doc, "org/model-1B", namespace),
                        "namespace": namespace},
           "spec": {"suspend": True, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "mine", "image": "busybox"}]}}}}
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([pvc, job]))
    # Settled: the Job controller has marked it Suspended.
    await eventually(lambda: condition(get_json(crds, "-n", namespace, "job",
                                                job["metadata"]["name"]), "Suspended"),
                     60, what="the user's Job suspended", blocking=True)
    before = {("pvc", pvc["metadata"]["name"]): snapshot(crds, namespace, "pvc",
                                                         pvc["metadata"]["name"]),
              ("job", job["metadata"]["name"]): snapshot(crds, namespace, "job",
                                                         job["metadata"]["name"])}
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("jobtaken"), "10Gi")
    apply(crds, aimcache("taken", [{"id": "org/model-1B", "sizeHint": "1Gi"}]), namespace)
    apply(crds, doc, namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "taken", "Ready", "False",
                                           "ChildConflict"), 60, what="PVC conflict",
                           blocking=True)
    assert f"PersistentVolumeClaim {pvc['metadata']['name']}" in condition(obj, "Ready")[
        "message"]
    assert condition(obj, "StorageReady")["reason"] == "ChildConflict"
    assert obj["status"]["phase"] == "Failed"
    assert not jobs(crds, namespace, "taken")  # nothing runs on somebody else's volume
    obj = await eventually(lambda: cond_is(crds, namespace, "jobtaken", "Ready", "False",
                                           "ChildConflict"), 60, what="Job conflict",
                           blocking=True)
    assert f"Job {job['metadata']['name']}" in condition(obj, "Ready")["message"]
    for who in ("taken", "jobtaken"):
        await eventually(lambda w=who: events(crds, namespace, w, "ChildConflict"), 30,
                         what=f"ChildConflict Event of {who}", blocking=True)
    assert {k: snapshot(crds, namespace, *k) for k in before} == before


async def test_deleting_the_cache_garbage_collects_its_jobs(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("gone"), "10Gi")
    apply(crds, aimcache("gone", [{"id": "org/one-1B", "sizeHint": "1Gi"}],
                         cleanup={"enabled": True, "schedule": "@daily"}), namespace)
    await eventually(lambda: jobs(crds, namespace, "gone")
                     and get_json(crds, "-n", namespace, "cronjob", cleanup_cronjob_name("gone"))
                     and get_json(crds, "-n", namespace, "pvc", cache_pvc_claim_name("gone")),
                     60, what="the Job, CronJob and PVC", blocking=True)
    # Not --wait: kubectl would block the loop the operator (which lets it go) runs on.
    crds.kubectl("delete", "-n", namespace, f"{CACHE}/gone", "--wait=false")
    await eventually(lambda: get_cache(crds, namespace, "gone") is None, 60,
                     what="the AIMCache gone", blocking=True)
    await eventually(
        lambda: not jobs(crds, namespace, "gone")
        and get_json(crds, "-n", namespace, "cronjob", cleanup_cronjob_name("gone")) is None,
        60, what="the Jobs and the CronJob collected", blocking=True)


async def test_a_cleanup_run_evicts_what_it_removed_and_says_so(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("swept"), "10Gi")
    apply(crds, aimcache("swept", [{"id": "org/kwok-evict-1B", "sizeHint": "1Gi"},
                                   {"id": "org/stays-1B", "sizeHint": "1Gi"}],
                         cleanup={"enabled": True, "schedule": "* * * * *"}), namespace)
    # The CronJob runs within a minute; kwok's cleanup pod removes the kwok-evict model.
    obj = await eventually(
        lambda: (o := get_cache(crds, namespace, "swept"))
        and (o.get("status") or {}).get("lastCleanupTime") and o, 150,
        what="a cleanup run reported",
        blocking=True)
    st = obj["status"]
    assert st["lastCleanup"] == "removed org/kwok-evict-1B (maxAge, 1Gi); freed 1Gi; 10Gi free"
    models = models_of(obj)
    assert models["org/kwok-evict-1B"]["state"] == "Evicted"
    assert models["org/kwok-evict-1B"]["message"].startswith("removed by cleanup (maxAge)")
    assert models["org/stays-1B"]["state"] == "Ready"
    assert condition(obj, "ModelsReady")["status"] == "False"
    assert st["modelsReady"] == "1/2"
    await eventually(lambda: events(crds, namespace, "swept", "CleanupCompleted"), 30,
                     what="CleanupCompleted Event", blocking=True)
    # An endpoint of the evicted model brings it back.
    apply(crds, {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMEndpoint",
                 "metadata": {"name": "wants-it"},
                 "spec": {"model": {"id": "org/kwok-evict-1B"}}}, namespace)
    await eventually(lambda: models_of(get_cache(crds, namespace, "swept"))[
        "org/kwok-evict-1B"]["state"] in ("Downloading", "Ready"), 60,
        what="the evicted model downloaded again", blocking=True)


async def test_a_ready_cache_costs_no_writes(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("quiet"), "10Gi")
    apply(crds, aimcache("quiet", [{"id": "org/one-1B", "sizeHint": "1Gi"}],
                         cleanup={"enabled": True, "schedule": "@daily"}), namespace)
    await eventually(lambda: cond_is(crds, namespace, "quiet", "Ready", "True"), 120,
                     what="Ready", blocking=True)
    await settled(operator, crds, namespace)
    writes = write_requests(operator)
    log = ReconcileLog(operator)
    assert await log.reconcile(f"{namespace}/quiet") == "success"
    await settled(operator, crds, namespace)
    assert write_requests(operator) == writes


async def test_deleting_a_cache_that_endpoints_mount_waits_for_them(
    crds: LocalCluster, namespace: str, operator: App, volumes: list[str]
) -> None:
    make_pv(crds, volumes, namespace, cache_pvc_claim_name("held"), "10Gi")
    apply(crds, aimcache("held", [{"id": "org/one-1B", "sizeHint": "1Gi"}]), namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "held", "Ready", "True"), 120,
                           what="Ready", blocking=True)
    assert CACHE_FINALIZER in obj["metadata"]["finalizers"]
    apply(crds, {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMEndpoint",
                 "metadata": {"name": "user"}, "spec": {"model": {"id": "org/one-1B"}}},
          namespace)

    def report_cache(source: str) -> None:
        # The endpoint controller does not run here: the test writes what it reports.
        cache = {"source": source, "aimCache": "held",
                 "persistentVolumeClaim": "aimcache-held" if source == "AIMCache"
                 else "user-cache"}
        crds.kubectl("patch", "-n", namespace, f"aimendpoints.{GROUP}/user",
                     "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"cache": cache}}))

    report_cache("AIMCache")
    crds.kubectl("delete", "-n", namespace, f"{CACHE}/held", "--wait=false")
    obj = await eventually(lambda: cond_is(crds, namespace, "held", "Ready", "False", "InUse"),
                           60, what="the deletion held", blocking=True)
    assert obj["metadata"]["deletionTimestamp"]
    assert "mount its volume: user" in condition(obj, "Ready")["message"]
    assert jobs(crds, namespace, "held")
    assert get_json(crds, "-n", namespace, "pvc", cache_pvc_claim_name("held"))
    await eventually(lambda: events(crds, namespace, "held", "InUse"), 30,
                     what="InUse Event", blocking=True)
    report_cache("Own")  # the endpoint moved off the cache being deleted
    await eventually(lambda: get_cache(crds, namespace, "held") is None, 60,
                     what="the AIMCache gone", blocking=True)
    await eventually(lambda: not jobs(crds, namespace, "held"), 60,
                     what="its Jobs collected", blocking=True)
