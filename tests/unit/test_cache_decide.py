"""The AIMCache decision over plain data: download order and the concurrency bound, the
size guard's numbers, per-model states from Jobs and their pods' reports, models removed
from the spec, the cleanup policy and the cleanup report, and the status it all gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.api.v1alpha1.cache import AIMCache
from aim_controller.builders.cache_objects import (
    CacheJobSettings,
    build_download_job,
    download_job_name,
    download_key,
)
from aim_controller.recipes import builtin_index
from aim_controller.reconcilers.cache_decide import (
    CachePlan,
    ModelPlan,
    cleanup_news,
    cleanup_policy,
    decide,
    volume_capacity,
)
from aim_controller.reconcilers.cache_observe import (
    CacheObserved,
    CleanupRun,
    JobView,
    cleanup_run,
    job_view,
    termination_report,
)
from aim_controller.reconcilers.cache_report import (
    CacheApplied,
    cache_events,
    cache_status,
    status_equal,
)
from aim_controller.reconcilers.cache_size import expected_size, human_bytes

GI = 2**30
NOW = "2026-01-01T00:00:00Z"
UID = "uid-1"
SETTINGS = CacheJobSettings(image="registry.example/aim-controller:1.2.3")


def cache_obj(models: list[dict[str, Any]], size: str = "100Gi", mode: str = "ReadWriteMany",
              **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aim.engine.amd.com/v1alpha1", "kind": "AIMCache",
            "metadata": {"name": "c", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": {"storage": {"size": size, "accessMode": mode}, "models": models, **spec}}


def bound_pvc(capacity: str = "100Gi") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "aimcache-c", "namespace": "ns", "uid": "pvc",
                         "ownerReferences": [{"uid": UID, "controller": True}]},
            "status": {"phase": "Bound", "capacity": {"storage": capacity}}}


def observed(obj: dict[str, Any], *, jobs: dict[str, JobView] | None = None,
             status: dict[str, Any] | None = None, pvc: dict[str, Any] | None = None,
             in_use: frozenset[str] = frozenset(), cleanup: CleanupRun | None = None,
             pvc_owned: bool = True) -> CacheObserved:
    obj = {**obj, "status": status or {}}
    return CacheObserved(
        key="ns/c", namespace="ns", name="c", obj=obj, generation=1, status=obj["status"],
        cache=AIMCache.model_validate(obj), invalid=None, pvc=pvc, pvc_owned=pvc_owned,
        jobs=jobs or {}, cronjob=None, cronjob_owned=False, cleanup=cleanup, in_use=in_use,
        catalog=builtin_index(), now=datetime(2026, 1, 1, tzinfo=UTC))


def job_of(obj: dict[str, Any], model_id: str, *, finished: str | None = None,
           report: dict[str, Any] | None = None, uid: str = "job-uid", reason: str = "",
           message: str = "") -> tuple[str, JobView]:
    cache = AIMCache.model_validate(obj)
    model = next(m for m in cache.spec.models if m.id == model_id)
    name = download_job_name("c", download_key(model, cache))
    return name, JobView(name=name, uid=uid, model=model_id, finished=finished, reason=reason,
                         message=message, report=report,
                         obj={"metadata": {"name": name, "uid": uid}})


def states(plan: CachePlan) -> dict[str, str]:
    return {m.id: m.state for m in plan.models}


def started(plan: CachePlan) -> list[str]:
    return [m.id for m in plan.models if m.start is not None]


# --- order and the concurrency bound ----------------------------------------------------

def test_downloads_start_by_priority_then_spec_order_at_most_the_limit() -> None:
    obj = cache_obj([{"id": "a/low-1B", "priority": "low"},
                     {"id": "b/med-1B"},
                     {"id": "c/high-1B", "priority": "high"},
                     {"id": "d/med-1B", "priority": "medium"}])
    plan = decide(observed(obj, pvc=bound_pvc()), SETTINGS, 2)
    assert started(plan) == ["b/med-1B", "c/high-1B"]  # spec order in the status
    assert [j["metadata"]["annotations"]["aim.engine.amd.com/cache-model"]
            for j in plan.jobs_to_start] == ["b/med-1B", "c/high-1B"]
    queued = {m.id: m.message for m in plan.models if m.start is None}
    assert queued == {"a/low-1B": "queued: 0 of at most 2 downloads running",
                      "d/med-1B": "queued: 0 of at most 2 downloads running"}
    # Each Job is checked on the create path (its name may be somebody else's).
    assert {("Job", j["metadata"]["name"]) for j in plan.jobs_to_start} <= plan.creates


def test_running_jobs_count_against_the_limit() -> None:
    obj = cache_obj([{"id": "a/x-1B", "priority": "high"}, {"id": "b/y-1B"},
                     {"id": "c/z-1B", "priority": "low"}])
    name, job = job_of(obj, "a/x-1B")
    plan = decide(observed(obj, jobs={name: job}, pvc=bound_pvc()), SETTINGS, 2)
    assert states(plan)["a/x-1B"] == "Downloading"
    assert started(plan) == ["b/y-1B"]
    assert "1 of at most 2" in next(m.message for m in plan.models if m.id == "c/z-1B")


def test_read_write_once_downloads_one_at_a_time_and_read_only_not_at_all() -> None:
    models = [{"id": "a/x-1B"}, {"id": "b/y-1B"}]
    assert len(started(decide(observed(cache_obj(models, mode="ReadWriteOnce")),
                              SETTINGS, 5))) == 1
    plan = decide(observed(cache_obj(models, mode="ReadOnlyMany")), SETTINGS, 5)
    assert started(plan) == [] and plan.unwritable
    status = cache_status(observed(cache_obj(models, mode="ReadOnlyMany")), plan,
                          CacheApplied(), NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "ModelsReady")
    assert ready["reason"] == "UnwritableStorage" and "ReadOnlyMany" in ready["message"]


def test_a_taken_pvc_name_starts_nothing_and_is_a_conflict() -> None:
    obj = cache_obj([{"id": "a/x-1B"}])
    plan = decide(observed(obj, pvc=bound_pvc(), pvc_owned=False), SETTINGS, 2)
    assert plan.pvc is None and started(plan) == []
    assert plan.conflicts == ("PersistentVolumeClaim aimcache-c",)
    status = cache_status(observed(obj, pvc=bound_pvc(), pvc_owned=False), plan,
                          CacheApplied(), NOW)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["StorageReady"]["reason"] == conds["Ready"]["reason"] == "ChildConflict"
    assert status["phase"] == "Failed"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["high", "medium", "low"]), min_size=0, max_size=8),
       st.integers(0, 8), st.integers(1, 4))
def test_started_jobs_are_the_first_by_priority_within_the_free_slots(
    priorities: list[str], running: int, limit: int
) -> None:
    models = [{"id": f"org/m{i}-1B", "priority": p} for i, p in enumerate(priorities)]
    obj = cache_obj(models)
    jobs = dict(job_of(obj, models[i]["id"], uid=f"u{i}")
                for i in range(min(running, len(models))))
    plan = decide(observed(obj, jobs=jobs, pvc=bound_pvc()), SETTINGS, limit)
    rank = {"high": 0, "medium": 1, "low": 2}
    queued = sorted(((rank[p], i) for i, p in enumerate(priorities) if i >= len(jobs)))
    free = max(0, limit - len(jobs))
    want = {f"org/m{i}-1B" for _, i in queued[:free]}
    assert set(started(plan)) == want
    assert len(started(plan)) + len(jobs) <= max(limit, len(jobs))


# --- the size guard ---------------------------------------------------------------------

def test_expected_sizes_from_hint_catalog_model_id_or_unknown() -> None:
    cache = AIMCache.model_validate(cache_obj([
        {"id": "Qwen/Qwen3-32B"}, {"id": "org/Other-7B-AWQ"}, {"id": "org/mystery"},
        {"id": "org/hinted", "sizeHint": "16Gi"}]))
    sizes = {m.id: expected_size(m, builtin_index()) for m in cache.spec.models}
    assert sizes["Qwen/Qwen3-32B"].bytes == round(32e9 * 2 * 1.1)
    assert sizes["Qwen/Qwen3-32B"].source == "catalog: 32B parameters, bfloat16"
    assert sizes["org/Other-7B-AWQ"].bytes == round(7e9 * 0.5 * 1.1)
    assert sizes["org/Other-7B-AWQ"].source.startswith("model id: 7B parameters, awq")
    assert sizes["org/mystery"].bytes is None and sizes["org/mystery"].source.startswith(
        "unknown")
    assert sizes["org/hinted"].bytes == 16 * GI


def test_models_that_do_not_fit_wait_with_the_numbers_and_smaller_ones_run() -> None:
    obj = cache_obj([{"id": "org/big", "priority": "high", "sizeHint": "30Gi"},
                     {"id": "org/small", "priority": "low", "sizeHint": "1Gi"},
                     {"id": "org/mystery", "priority": "low"}], size="20Gi")
    o = observed(obj, pvc=bound_pvc("20Gi"))
    plan = decide(o, SETTINGS, 3)
    assert plan.space is not None
    assert plan.space.capacity == 20 * GI and plan.space.needed == 31 * GI
    assert plan.space.blocked == ("org/big",)
    assert started(plan) == ["org/small", "org/mystery"]
    big = next(m for m in plan.models if m.id == "org/big")
    assert big.state == "Pending"
    assert big.message == ("waiting for space: needs 30Gi (sizeHint), the volume has 20Gi "
                           "left for it")
    status = cache_status(o, plan, CacheApplied(frozenset(
        j["metadata"]["name"] for j in plan.jobs_to_start)), NOW)
    cond = next(c for c in status["conditions"] if c["type"] == "ModelsReady")
    assert cond["reason"] == "InsufficientSpace"
    assert cond["message"] == (
        "0/3 models ready; the models need 31Gi but the volume holds 20Gi: org/big 30Gi "
        "(sizeHint), org/small 1Gi (sizeHint), org/mystery unknown (unknown: no sizeHint, "
        "and no parameter count in the catalog or the model id); not started: org/big")
    assert status["phase"] == "Degraded"
    events = cache_events(o, plan, status)
    assert [e.reason for e in events] == ["InsufficientSpace"]


def test_the_capacity_is_the_bound_volumes_else_the_request() -> None:
    cache = AIMCache.model_validate(cache_obj([], size="10Gi"))
    assert volume_capacity(cache, None) == 10 * GI
    assert volume_capacity(cache, {"status": {"phase": "Pending"}}) == 10 * GI
    assert volume_capacity(cache, bound_pvc("12Gi")) == 12 * GI


def test_models_on_the_volume_count_first() -> None:
    obj = cache_obj([{"id": "org/low-one", "priority": "low", "sizeHint": "8Gi"},
                     {"id": "org/high-one", "priority": "high", "sizeHint": "8Gi"}],
                    size="10Gi")
    name, job = job_of(obj, "org/low-one", finished="Complete",
                       report={"state": "Ready", "sizeBytes": 8 * GI})
    plan = decide(observed(obj, jobs={name: job}, pvc=bound_pvc("10Gi")), SETTINGS, 2)
    assert states(plan)["org/low-one"] == "Ready"
    assert plan.space is not None and plan.space.blocked == ("org/high-one",)


# --- states from Jobs and pods -------------------------------------------------------------

def pod(message: str | None, rv: str = "5", exit_code: int = 0) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": exit_code}
    if message is not None:
        term["message"] = message
    return {"metadata": {"resourceVersion": rv},
            "status": {"containerStatuses": [{"name": "download",
                                              "state": {"terminated": term}}]}}


def test_job_view_reads_the_condition_and_the_newest_report() -> None:
    job = {"metadata": {"name": "j", "uid": "u",
                        "annotations": {"aim.engine.amd.com/cache-model": "org/m"}},
           "status": {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"}]}}
    old = pod(json.dumps({"state": "Failed", "message": "first try"}), rv="3")
    new = pod(json.dumps({"state": "Failed", "message": "503 from the Hub"}), rv="10")
    view = job_view(job, [old, new, pod(None, rv="11")])
    assert (view.finished, view.reason, view.model) == ("Failed", "BackoffLimitExceeded",
                                                        "org/m")
    assert view.report == {"state": "Failed", "message": "503 from the Hub"}
    assert termination_report([pod("Traceback: boom")]) == (None, "Traceback: boom")
    assert termination_report([]) == (None, "")


def test_states_follow_the_jobs() -> None:
    obj = cache_obj([{"id": "org/done", "revision": "main"}, {"id": "org/bad"},
                     {"id": "org/busy"}])
    jobs = dict([
        job_of(obj, "org/done", finished="Complete", uid="u1",
               report={"state": "Ready", "sizeBytes": 1234, "revision": "abc123",
                       "skipped": True, "message": ""}),
        job_of(obj, "org/bad", finished="Failed", uid="u2", reason="PodFailurePolicy",
               report={"state": "Failed", "message": "404 Repository Not Found"}),
        job_of(obj, "org/busy", uid="u3"),
    ])
    plan = decide(observed(obj, jobs=jobs, pvc=bound_pvc()), SETTINGS, 2)
    by_id = {m.id: m for m in plan.models}
    assert (by_id["org/done"].state, by_id["org/done"].size_bytes,
            by_id["org/done"].revision) == ("Ready", 1234, "abc123")
    assert by_id["org/done"].message == "already complete on the volume"
    assert by_id["org/bad"].state == "Failed"
    assert by_id["org/bad"].message.startswith(
        f"download Job {by_id['org/bad'].job} failed (PodFailurePolicy): 404 Repository")
    assert by_id["org/busy"].state == "Downloading"
    assert started(plan) == []


def test_without_their_jobs_ready_stays_failed_retries_evicted_waits_for_a_user() -> None:
    obj = cache_obj([{"id": "org/ready"}, {"id": "org/failed"}, {"id": "org/evicted"},
                     {"id": "org/wanted"}])
    cache = AIMCache.model_validate(obj)
    jobname = {m.id: download_job_name("c", download_key(m, cache)) for m in cache.spec.models}
    status = {"models": [
        {"id": "org/ready", "state": "Ready", "sizeBytes": 5, "job": jobname["org/ready"],
         "message": "downloaded"},
        {"id": "org/failed", "state": "Failed", "job": jobname["org/failed"]},
        {"id": "org/evicted", "state": "Evicted", "job": jobname["org/evicted"]},
        {"id": "org/wanted", "state": "Evicted", "job": jobname["org/wanted"]},
    ]}
    plan = decide(observed(obj, status=status, pvc=bound_pvc(),
                           in_use=frozenset({"org/wanted"})), SETTINGS, 4)
    assert states(plan) == {"org/ready": "Ready", "org/failed": "Pending",
                            "org/evicted": "Evicted", "org/wanted": "Pending"}
    assert started(plan) == ["org/failed", "org/wanted"]


def test_a_changed_revision_is_a_new_download() -> None:
    before = cache_obj([{"id": "org/m"}])
    name, _ = job_of(before, "org/m")
    status = {"models": [{"id": "org/m", "state": "Ready", "job": name}]}
    plan = decide(observed(cache_obj([{"id": "org/m", "revision": "v2"}]), status=status),
                  SETTINGS, 2)
    assert started(plan) == ["org/m"]
    assert plan.jobs_to_start[0]["metadata"]["name"] != name
    args = plan.jobs_to_start[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--revision", "v2"]


def test_the_download_job_runs_the_operator_image_with_the_token_by_reference() -> None:
    cache = AIMCache.model_validate(cache_obj(
        [{"id": "org/m", "sizeHint": "1Gi"}],
        source={"hfEndpoint": "https://mirror.example", "tokenSecretRef": {"name": "hf"}}))
    job = build_download_job(cache, cache.spec.models[0], SETTINGS, 5)
    pod_spec = job["spec"]["template"]["spec"]
    c = pod_spec["containers"][0]
    assert c["image"] == SETTINGS.image and c["command"] == ["aim-controller"]
    assert c["args"] == ["cache-download", "--root", "/cache", "--model", "org/m"]
    assert c["env"] == [{"name": "HF_ENDPOINT", "value": "https://mirror.example"},
                        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
                            "name": "hf", "key": "token"}}}]
    assert pod_spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert job["metadata"]["ownerReferences"][0]["uid"] == UID
    assert job["metadata"]["labels"]["aim.engine.amd.com/cache"] == "c"
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        "aim.engine.amd.com/cache-model": "org/m", "aim.engine.amd.com/expected-bytes": "5"}
    assert len(job["metadata"]["name"]) <= 63


# --- removed from the spec, the cleanup policy and its report ------------------------------

def test_a_model_removed_from_the_spec_stays_until_its_retention() -> None:
    obj = cache_obj([{"id": "org/kept", "priority": "high", "retention": "30d"}],
                    cleanup={"enabled": True, "schedule": "@daily", "maxAge": "30d",
                             "minFreeSpace": "10Gi"})
    status = {"models": [
        {"id": "org/gone", "state": "Ready", "sizeBytes": 7, "priority": "low",
         "retention": "7d", "job": "aimcache-c-x"},
        {"id": "org/never", "state": "Failed", "job": "aimcache-c-y"},
    ]}
    o = observed(obj, status=status, pvc=bound_pvc(), in_use=frozenset({"org/kept"}))
    plan = decide(o, SETTINGS, 2)
    gone = next(m for m in plan.models if m.id == "org/gone")
    assert (gone.state, gone.in_spec, gone.size_bytes, gone.retention) == (
        "Ready", False, 7, "7d")
    assert gone.message == "removed from spec; kept until its retention (7d)"
    assert "org/never" not in states(plan)  # nothing of it on the volume
    assert plan.cronjob is not None and plan.apply_cronjob
    args = plan.cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert args[-2:] == ["--capacity-bytes", str(100 * GI)]
    assert json.loads(args[args.index("--policy-json") + 1]) == {
        "models": [
            {"id": "org/kept", "priority": "high", "retentionSeconds": 30 * 86400,
             "inSpec": True},
            {"id": "org/gone", "priority": "low", "retentionSeconds": 7 * 86400,
             "inSpec": False}],
        "inUse": ["org/kept"], "maxAgeSeconds": 30 * 86400, "minFreeBytes": 10 * GI}
    # Without cleanup, the status says it stays until cleanup runs; no CronJob.
    plan = decide(observed(cache_obj([]), status=status), SETTINGS, 2)
    gone = next(m for m in plan.models if m.id == "org/gone")
    assert gone.message.endswith("cleanup is disabled, so it stays until cleanup runs")
    assert plan.cronjob is None


def test_a_running_download_of_a_removed_model_is_stopped() -> None:
    old = cache_obj([{"id": "org/m"}])
    name, job = job_of(old, "org/m")
    plan = decide(observed(cache_obj([]), jobs={name: job}), SETTINGS, 2)
    assert [d["metadata"]["name"] for d in plan.delete] == [name]


def test_the_cleanup_policy_names_in_use_models_in_the_caches_spelling() -> None:
    cache = AIMCache.model_validate(cache_obj([{"id": "Qwen/Qwen3-32B"}]))
    models = [ModelPlan(id="Qwen/Qwen3-32B", state="Ready", priority="medium")]
    policy = cleanup_policy(cache, models, {"qwen/qwen3-32b", "other/model"})
    assert policy == {"models": [{"id": "Qwen/Qwen3-32B", "priority": "medium",
                                  "retentionSeconds": None, "inSpec": True}],
                      "inUse": ["Qwen/Qwen3-32B"], "maxAgeSeconds": None,
                      "minFreeBytes": None}


REPORT = {"removed": [{"id": "org/old", "reason": "retention", "sizeBytes": 3 * GI}],
          "freedBytes": 3 * GI, "usedBytes": GI, "freeBytes": 9 * GI, "shortfallBytes": 0,
          "models": [{"id": "org/keep", "sizeBytes": GI, "lastUsed": "2026-01-01T00:00:00Z"}]}


def test_a_new_cleanup_report_evicts_and_is_told_once() -> None:
    run = CleanupRun("aimcache-c-cleanup-1", "2026-01-02T02:00:05Z", True, REPORT, "")
    news = cleanup_news(run, None)
    assert news is not None
    assert news.summary == "removed org/old (retention, 3Gi); freed 3Gi; 9Gi free"
    assert dict(news.evicted) == {"org/old": "retention"}
    assert cleanup_news(run, "2026-01-02T02:00:05Z") is None
    failed = CleanupRun("j", "2026-01-03T02:00:00Z", False, None, "DeadlineExceeded: late")
    assert cleanup_news(failed, "2026-01-02T02:00:05Z") is not None

    obj = cache_obj([{"id": "org/old"}, {"id": "org/keep"}],
                    cleanup={"enabled": True, "schedule": "@daily"})
    cache = AIMCache.model_validate(obj)
    jobname = {m.id: download_job_name("c", download_key(m, cache)) for m in cache.spec.models}
    status = {"models": [{"id": i, "state": "Ready", "sizeBytes": GI, "job": jobname[i]}
                         for i in ("org/old", "org/keep")]}
    name, job = job_of(obj, "org/old", finished="Complete", uid="u-old",
                       report={"state": "Ready", "sizeBytes": GI})
    o = observed(obj, status=status, jobs={name: job}, pvc=bound_pvc(), cleanup=run)
    plan = decide(o, SETTINGS, 2)
    assert states(plan) == {"org/old": "Evicted", "org/keep": "Ready"}
    assert [d["metadata"]["name"] for d in plan.delete] == [name]  # its finished Job
    keep = next(m for m in plan.models if m.id == "org/keep")
    assert keep.last_used_time == "2026-01-01T00:00:00Z"
    written = cache_status(o, plan, CacheApplied(), NOW)
    assert written["lastCleanupTime"] == run.time and written["lastCleanup"] == news.summary
    assert [(e.type, e.reason) for e in cache_events(o, plan, written)] == [
        ("Normal", "CleanupCompleted")]
    # Next reconcile (its Job still cached): still Evicted, not Ready again; no new news.
    again = decide(observed(obj, status=written, jobs={name: job}, pvc=bound_pvc(),
                            cleanup=run), SETTINGS, 2)
    assert states(again)["org/old"] == "Evicted" and again.cleanup is None
    assert status_equal(cache_status(observed(obj, status=written, pvc=bound_pvc()), again,
                                     CacheApplied(), NOW), written)


def test_cleanup_run_is_the_newest_finished_job() -> None:
    def job(name: str, when: str | None, failed: bool = False) -> dict[str, Any]:
        conds = [{"type": "Failed" if failed else "Complete", "status": "True",
                  "lastTransitionTime": when}] if when else []
        st: dict[str, Any] = {"conditions": conds}
        if when and not failed:
            st["completionTime"] = when
        return {"metadata": {"name": name}, "status": st}

    run = cleanup_run([(job("a", "2026-01-01T00:00:00Z"), [pod(json.dumps(REPORT))]),
                       (job("b", "2026-01-02T00:00:00Z", failed=True), []),
                       (job("c", None), [])])
    assert run is not None and run.job == "b" and not run.succeeded


# --- the status: idempotent, and what it says -----------------------------------------------

def test_all_ready_is_ready_and_rewriting_changes_nothing() -> None:
    obj = cache_obj([{"id": "org/a"}, {"id": "org/b"}])
    jobs = dict([job_of(obj, "org/a", finished="Complete", uid="1",
                        report={"state": "Ready", "sizeBytes": 3 * GI}),
                 job_of(obj, "org/b", finished="Complete", uid="2",
                        report={"state": "Ready", "sizeBytes": GI})])
    o = observed(obj, jobs=jobs, pvc=bound_pvc())
    plan = decide(o, SETTINGS, 2)
    status = cache_status(o, plan, CacheApplied(), NOW)
    assert status["phase"] == "Ready" and status["modelsReady"] == "2/2"
    assert status["usedBytes"] == 4 * GI and status["used"] == "4Gi"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "StorageReady": "True", "ModelsReady": "True", "Ready": "True"}
    assert [e.reason for e in cache_events(o, plan, status)] == ["ModelReady", "ModelReady"]
    assert plan.pvc is not None and plan.apply_pvc
    pvc = {**plan.pvc, "status": bound_pvc()["status"]}  # as the server has it
    o2 = observed(obj, jobs=jobs, pvc=pvc, status=status)
    plan2 = decide(o2, SETTINGS, 2)
    assert not plan2.apply_pvc and not plan2.jobs_to_start
    assert status_equal(cache_status(o2, plan2, CacheApplied(), "2030-01-01T00:00:00Z"),
                        status)
    # After the Jobs' TTL: still Ready, still nothing to write.
    o3 = observed(obj, pvc=pvc, status=status)
    assert not decide(o3, SETTINGS, 2).jobs_to_start
    assert status_equal(cache_status(o3, decide(o3, SETTINGS, 2), CacheApplied(), NOW), status)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["high", "medium", "low"]),
                          st.sampled_from([None, "Complete", "Failed", "running"]),
                          st.integers(1, 40)), max_size=6),
       st.sampled_from(["10Gi", "50Gi", "200Gi"]))
def test_the_status_is_a_fixed_point(models: list[tuple[str, str | None, int]],
                                     size: str) -> None:
    specs = [{"id": f"org/m{i}", "priority": p, "sizeHint": f"{gib}Gi"}
             for i, (p, _, gib) in enumerate(models)]
    obj = cache_obj(specs, size=size)
    jobs: dict[str, JobView] = {}
    for i, (_, state, gib) in enumerate(models):
        if state is None:
            continue
        name, view = job_of(obj, f"org/m{i}", uid=f"u{i}",
                            finished=None if state == "running" else state,
                            report={"state": "Ready", "sizeBytes": gib * GI}
                            if state == "Complete" else None)
        jobs[name] = view
    o = observed(obj, jobs=jobs, pvc=bound_pvc(size))
    plan = decide(o, SETTINGS, 2)
    applied = CacheApplied(frozenset(j["metadata"]["name"] for j in plan.jobs_to_start))
    status = cache_status(o, plan, applied, NOW)
    assert status["modelsReady"] == f"{sum(s == 'Complete' for _, s, _ in models)}/{len(models)}"
    # The created Jobs now show, running: the next reconcile starts nothing new beyond
    # the free slots and, once nothing changes, writes nothing.
    for j in plan.jobs_to_start:
        model = j["metadata"]["annotations"]["aim.engine.amd.com/cache-model"]
        jobs[j["metadata"]["name"]] = JobView(j["metadata"]["name"], "new-" + model, model,
                                              obj=j)
    o2 = observed(obj, jobs=jobs, pvc=bound_pvc(size), status=status)
    plan2 = decide(o2, SETTINGS, 2)
    assert plan2.jobs_to_start == []
    status2 = cache_status(o2, plan2, CacheApplied(), NOW)
    o3 = observed(obj, jobs=jobs, pvc=bound_pvc(size), status=status2)
    assert status_equal(cache_status(o3, decide(o3, SETTINGS, 2), CacheApplied(), NOW),
                        status2)


def test_human_bytes() -> None:
    assert human_bytes(0) == "0B"
    assert human_bytes(1536) == "1.5Ki"
    assert human_bytes(500 * GI) == "500Gi"
    assert human_bytes(int(80.62 * GI)) == "80.6Gi"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["high", "medium", "low"]), st.integers(1, 60)),
                max_size=7),
       st.integers(10, 120))
def test_what_runs_always_fits_and_what_waits_would_not(
    models: list[tuple[str, int]], capacity_gib: int
) -> None:
    specs = [{"id": f"org/m{i}", "priority": p, "sizeHint": f"{gib}Gi"}
             for i, (p, gib) in enumerate(models)]
    obj = cache_obj(specs, size=f"{capacity_gib}Gi")
    plan = decide(observed(obj, pvc=bound_pvc(f"{capacity_gib}Gi")), SETTINGS, 10)
    size = {f"org/m{i}": gib * GI for i, (_, gib) in enumerate(models)}
    assert sum(size[m] for m in started(plan)) <= capacity_gib * GI
    assert plan.space is not None
    assert set(plan.space.blocked) | set(started(plan)) == set(size)
    assert plan.space.needed == sum(size.values())
    rank = {"high": 0, "medium": 1, "low": 2}
    order = sorted(range(len(models)), key=lambda i: (rank[models[i][0]], i))
    used = 0
    for i in order:  # greedy by priority: a waiting model did not fit at its turn
        mid = f"org/m{i}"
        if mid in plan.space.blocked:
            assert used + size[mid] > capacity_gib * GI
        else:
            used += size[mid]
