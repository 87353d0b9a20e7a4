"""The decide and report steps of an endpoint whose model an AIMCache lists."""

from __future__ import annotations

from typing import Any

from test_endpoint_cache import aim_cache
from test_endpoint_decide import NOW, endpoint_obj, observed, plan_of

from aim_controller.reconcilers.endpoint_observe import Observed
from aim_controller.reconcilers.endpoint_report import ApplyResult, desired_status, status_events
from aim_controller.reconcilers.endpoint_status import ApplyOutcome

MODEL = "org/Model-7B"
SPEC: dict[str, Any] = {"model": {"id": MODEL}, "cache": {"enabled": True}}


def with_caches(*caches: dict[str, Any], status: dict[str, Any] | None = None) -> Observed:
    o = observed(endpoint_obj(SPEC, status))
    return Observed(**{**o.__dict__, "aim_caches": caches})


def status_of(o: Observed) -> dict[str, Any]:
    plan = plan_of(o)
    applied = ApplyResult(ApplyOutcome(len(plan.desired), len(plan.desired)))
    return desired_status(o, plan, applied, "2026-01-01T00:00:00Z", "sel")


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_while_the_cache_downloads_no_deployment_and_no_own_pvc_yet() -> None:
    o = with_caches(aim_cache("shared", {MODEL: "Downloading"}))
    plan = plan_of(o)
    kinds = {d["kind"] for d in plan.desired}
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    assert {"Service", "ConfigMap"} <= kinds
    assert plan.recheck_after == 15 * 60 + 1
    status = status_of(o)
    c = conds(status)
    assert (c["CacheReady"]["status"], c["CacheReady"]["reason"]) == ("False", "CacheDownloading")
    assert "AIMCache shared" in c["CacheReady"]["message"]
    assert c["Available"]["reason"] == "CacheDownloading"
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "CacheDownloading")
    assert c["Degraded"]["status"] == "False"
    assert status["cache"]["waitingSince"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert list(c) == ["RecipeSelected", "ResourcesReady", "Available", "Degraded",
                       "CacheReady", "Ready"]


def test_ready_in_the_cache_mounts_it_and_says_so() -> None:
    o = with_caches(aim_cache("shared", {MODEL: "Ready"}))
    plan = plan_of(o)
    dep = next(d for d in plan.desired if d["kind"] == "Deployment")
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "aim-cache", "persistentVolumeClaim": {
        "claimName": "shared-pvc", "readOnly": True}} in volumes
    assert all(d["kind"] != "PersistentVolumeClaim" for d in plan.desired)
    status = status_of(o)
    assert status["cache"]["source"] == "AIMCache" and status["cache"]["aimCache"] == "shared"
    assert conds(status)["CacheReady"]["reason"] == "AIMCacheReady"


def test_failed_starts_with_the_own_pvc_and_warns_once() -> None:
    o = with_caches(aim_cache("shared", {MODEL: "Failed"}, message="401 Unauthorized"))
    plan = plan_of(o)
    dep = next(d for d in plan.desired if d["kind"] == "Deployment")
    claims = [v["persistentVolumeClaim"]["claimName"]
              for v in dep["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["ep-cache"]
    status = status_of(o)
    events = status_events(o, plan, status)
    assert [(e.type, e.reason) for e in events if e.reason.startswith("Cache")] == [
        ("Warning", "CacheUnavailable")]
    again = with_caches(aim_cache("shared", {MODEL: "Failed"}, message="401 Unauthorized"),
                        status=status)
    assert [e for e in status_events(again, plan_of(again), status_of(again))
            if e.reason.startswith("Cache")] == []


def test_no_aim_cache_for_the_model_is_as_before() -> None:
    o = with_caches(aim_cache("shared", {"org/Other": "Ready"}))
    plan = plan_of(o)
    assert plan == plan_of(with_caches())
    status = status_of(o)
    assert "CacheReady" not in conds(status)
    assert status["cache"] == {"source": "Own", "persistentVolumeClaim": "ep-cache"}
    assert any(d["kind"] == "PersistentVolumeClaim" for d in plan.desired)


def test_on_the_cache_an_own_pvc_is_kept_and_a_foreign_one_is_no_conflict() -> None:
    from aim_controller.builders import LABEL_ENDPOINT, LABEL_MANAGED_BY
    from aim_controller.builders.meta import MANAGED_BY

    def pvc(labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "ep-cache", "namespace": "aim", "labels": labels,
                             "uid": "uid-pvc", "resourceVersion": "1"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "100Gi"}}}}

    for state in ("Ready", "Downloading"):
        base = with_caches(aim_cache("shared", {MODEL: state}))
        foreign = Observed(**{**base.__dict__, "children": {
            ("PersistentVolumeClaim", "ep-cache"): pvc({"app": "mine"})}})
        plan = plan_of(foreign)
        assert plan.conflicts == () and plan.to_prune == ()
        assert all(d["kind"] != "PersistentVolumeClaim" for d in plan.desired)
        ours = Observed(**{**base.__dict__, "children": {
            ("PersistentVolumeClaim", "ep-cache"): pvc(
                {LABEL_MANAGED_BY: MANAGED_BY, LABEL_ENDPOINT: "ep"})}})
        kept = [d for d in plan_of(ours).desired if d["kind"] == "PersistentVolumeClaim"]
        assert [d["metadata"]["name"] for d in kept] == ["ep-cache"]
