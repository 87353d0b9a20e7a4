"""Where an endpoint's weights come from (reconcilers.endpoint_cache.cache_use), over
plain AIMCache objects: the rule the README documents, and its properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.api.v1alpha1 import CACHED_MODEL_STATES, ModelCacheStatus
from aim_controller.modelcache.layout import CACHE_MOUNT_PATH, model_path
from aim_controller.reconcilers.endpoint_cache import (
    AIM_CACHE_READY,
    CACHE_DOWNLOADING,
    CACHE_READY,
    CACHE_UNAVAILABLE,
    CACHE_WAIT_TIMED_OUT,
    SOURCE_AIM_CACHE,
    SOURCE_NONE,
    SOURCE_OWN,
    CacheUse,
    cache_use,
)

MODEL = "Qwen/Qwen3-32B"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=15)


def aim_cache(name: str, models: dict[str, str | None], pvc: str | None = "shared-pvc",
              message: str = "") -> dict[str, Any]:
    """An AIMCache listing ``models`` (id -> state in its status; None: not reported)."""
    status: dict[str, Any] = {"models": [
        {"id": m, "state": s, "message": message} for m, s in models.items() if s is not None]}
    if pvc is not None:
        status["persistentVolumeClaim"] = pvc
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"storage": {"size": "1Ti"}, "models": [{"id": m} for m in models]},
            "status": status}


def use(caches: list[dict[str, Any]], *, own: bool = False, previous: dict[str, Any] | None = None,
        serving: bool = False, now: datetime = NOW, version: str | None = None,
        model: str = MODEL) -> CacheUse:
    return cache_use(endpoint="ep", model_id=model, version=version, own_enabled=own,
                     caches=caches, previous=previous, serving=serving, now=now, timeout=TIMEOUT)


def test_no_aim_cache_lists_the_model_is_as_without_aim_caches() -> None:
    other = aim_cache("c", {"org/Other": "Ready"})
    assert use([other]) == CacheUse(SOURCE_NONE)
    assert use([other], own=True) == CacheUse(SOURCE_OWN, claim="ep-cache")
    assert use([], own=True).status() == {"source": "Own", "persistentVolumeClaim": "ep-cache"}
    assert use([]).condition is None and not use([]).wait


def test_ready_in_the_cache_mounts_its_pvc_at_the_cached_path() -> None:
    u = use([aim_cache("c", {MODEL: "Ready"})], own=True)
    assert u.source == SOURCE_AIM_CACHE and not u.wait
    assert u.shared is not None and u.shared.claim_name == "shared-pvc"
    assert u.shared.model_path == model_path(MODEL) == "/cache/models/Qwen--Qwen3-32B"
    assert u.shared.mount_path == CACHE_MOUNT_PATH
    assert u.condition is not None and u.condition.type == CACHE_READY
    assert (u.condition.status, u.condition.reason) == ("True", AIM_CACHE_READY)
    # With spec.cache.enabled as well, the message says which PVC holds the weights.
    assert "own PVC ep-cache is not used" in u.condition.message
    assert u.status() == {"source": "AIMCache", "aimCache": "c",
                          "persistentVolumeClaim": "shared-pvc",
                          "path": "/cache/models/Qwen--Qwen3-32B", "state": "Ready"}
    ModelCacheStatus.model_validate(u.status())  # what the CRD schema accepts


def test_model_ids_match_case_insensitively_and_the_cache_spelling_names_the_directory() -> None:
    u = use([aim_cache("c", {"qwen/qwen3-32b": "Ready"})])
    assert u.shared is not None and u.shared.model_path == "/cache/models/qwen--qwen3-32b"


def test_an_aim_cache_being_deleted_is_not_used() -> None:
    going = aim_cache("c", {MODEL: "Ready"})
    going["metadata"]["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    assert use([going], own=True) == CacheUse(SOURCE_OWN, claim="ep-cache")
    assert use([going, aim_cache("d", {MODEL: "Ready"})]).cache == "d"


def test_revisions_must_agree() -> None:
    default = aim_cache("c", {MODEL: "Ready"})
    assert use([default], version="abc123").source == SOURCE_NONE
    assert use([default], version="latest").source == SOURCE_AIM_CACHE
    pinned = aim_cache("c", {MODEL: "Ready"})
    pinned["spec"]["models"][0]["revision"] = "abc123"
    assert use([pinned], version="abc123").source == SOURCE_AIM_CACHE
    assert use([pinned]).source == SOURCE_NONE


def test_downloading_without_a_deployment_waits_from_now() -> None:
    u = use([aim_cache("c", {MODEL: "Downloading"})], own=True)
    assert u.wait and u.shared is None and u.waiting_since == NOW
    assert u.condition is not None and u.condition.status == "False"
    assert u.condition.reason == CACHE_DOWNLOADING
    assert "AIMCache c" in u.condition.message and "Downloading" in u.condition.message
    assert u.recheck_after == TIMEOUT.total_seconds() + 1
    assert u.status()["waitingSince"] == "2026-01-01T12:00:00Z"
    assert u.status()["source"] == SOURCE_AIM_CACHE and u.status()["state"] == "Downloading"


def test_a_model_the_cache_has_not_reported_is_pending() -> None:
    u = use([aim_cache("c", {MODEL: None})])
    assert u.wait and u.state == "Pending"
    # Ready without a PVC name: nothing to mount yet.
    assert use([aim_cache("c", {MODEL: "Ready"}, pvc=None)]).state == "Pending"


def test_the_wait_counts_from_the_recorded_time_and_ends_with_the_own_download() -> None:
    caches = [aim_cache("c", {MODEL: "Downloading"})]
    first = use(caches, own=True)
    # A restart: the time recorded in the status counts, not the restart's.
    later = use(caches, own=True, previous=first.status(), now=NOW + timedelta(minutes=10))
    assert later.wait and later.waiting_since == NOW
    assert later.recheck_after == timedelta(minutes=5).total_seconds() + 1
    done = use(caches, own=True, previous=later.status(), now=NOW + TIMEOUT)
    assert not done.wait and done.source == SOURCE_OWN and done.claim == "ep-cache"
    assert done.condition is not None and done.condition.reason == CACHE_WAIT_TIMED_OUT
    assert "15m" in done.condition.message and "own PVC ep-cache" in done.condition.message
    # Once the Deployment exists it stays on its own download, still saying why.
    after = use(caches, own=True, previous=done.status(), serving=True,
                now=NOW + TIMEOUT + timedelta(hours=1))
    assert after == done


def test_failed_or_evicted_starts_with_the_own_download_at_once() -> None:
    for state in ("Failed", "Evicted"):
        u = use([aim_cache("c", {MODEL: state}, message="HTTP 401")])
        assert not u.wait and u.source == SOURCE_NONE and u.shared is None
        assert u.condition is not None and u.condition.reason == CACHE_UNAVAILABLE
        assert state in u.condition.message and "HTTP 401" in u.condition.message


def test_an_endpoint_already_serving_keeps_its_source_while_the_cache_downloads() -> None:
    caches = [aim_cache("c", {MODEL: "Downloading"})]
    own = use(caches, own=True, serving=True)
    assert not own.wait and own.source == SOURCE_OWN and own.waiting_since is None
    assert own.condition is not None and own.condition.reason == CACHE_DOWNLOADING
    assert "keeps serving" in own.condition.message
    ready = use([aim_cache("c", {MODEL: "Ready"})], serving=True)
    again = use(caches, serving=True, previous=ready.status())
    assert again.shared == ready.shared and again.source == SOURCE_AIM_CACHE


def test_the_cache_holding_the_model_ready_wins_else_the_first_by_name() -> None:
    b_ready = aim_cache("b", {MODEL: "Ready"}, pvc="b-pvc")
    a_busy = aim_cache("a", {MODEL: "Downloading"}, pvc="a-pvc")
    c_ready = aim_cache("c", {MODEL: "Ready"}, pvc="c-pvc")
    assert use([c_ready, a_busy, b_ready]).cache == "b"
    assert use([aim_cache("z", {MODEL: "Failed"}), a_busy]).cache == "a"


# --- properties ----------------------------------------------------------------------

states = st.sampled_from((*CACHED_MODEL_STATES, None))
cache_lists = st.lists(
    st.tuples(st.sampled_from("abcde"), st.sampled_from((MODEL, "org/Other")), states,
              st.booleans()),
    max_size=5, unique_by=lambda t: t[0],
).map(lambda ts: [aim_cache(n, {m: s}, pvc=f"{n}-pvc" if p else None) for n, m, s, p in ts])


@settings(max_examples=300, deadline=None)
@given(caches=cache_lists, own=st.booleans(), serving=st.booleans(),
       minutes=st.integers(0, 60), prev_source=st.sampled_from((None, "AIMCache", "Own")))
def test_properties(caches: list[dict[str, Any]], own: bool, serving: bool, minutes: int,
                    prev_source: str | None) -> None:
    previous = None if prev_source is None else {
        "source": prev_source, "aimCache": "a", "persistentVolumeClaim": "a-pvc",
        "waitingSince": "2026-01-01T12:00:00Z"}
    now = NOW + timedelta(minutes=minutes)
    u = use(caches, own=own, serving=serving, previous=previous, now=now)
    listed = [c for c in caches if c["spec"]["models"][0]["id"] == MODEL]
    # The order the informer lists them in does not matter.
    assert use(list(reversed(caches)), own=own, serving=serving, previous=previous,
               now=now) == u
    if not listed:  # exactly as without AIMCaches
        assert u == CacheUse(SOURCE_OWN, claim="ep-cache") if own else u == CacheUse(SOURCE_NONE)
        return
    assert u.condition is not None and u.cache in {c["metadata"]["name"] for c in listed}
    # Only an endpoint without a Deployment waits, and never past the timeout.
    if u.wait:
        assert not serving and u.shared is None and u.waiting_since is not None
        assert now - u.waiting_since < TIMEOUT and u.recheck_after is not None
    # A mount only of a cache that holds the model Ready, or keeps serving as it was.
    if u.shared is not None:
        assert u.source == SOURCE_AIM_CACHE
        assert u.state == "Ready" or (serving and prev_source == "AIMCache")
    elif not u.wait:
        assert u.source == (SOURCE_OWN if own else SOURCE_NONE)
    # Restart-safe: deciding again from the status just written changes nothing.
    assert use(caches, own=own, serving=serving, previous=u.status(), now=now) == u
    ModelCacheStatus.model_validate(u.status())


def test_the_wait_timeout_flag() -> None:
    from aim_controller.options import parse

    assert parse([]).cache_wait_timeout == 900.0
    assert parse(["--cache-wait-timeout", "2m"]).cache_wait_timeout == 120.0


def test_an_aim_cache_and_its_endpoints_meet_in_one_index_key() -> None:
    from aim_controller.reconcilers.endpoint_observe import (
        index_cache_by_model,
        index_endpoint_by_namespace_model,
    )

    cache = aim_cache("c", {MODEL: "Ready", "org/Other": None})
    assert index_cache_by_model(cache) == ["ns/org/other", "ns/qwen/qwen3-32b"]
    ep = {"metadata": {"name": "ep", "namespace": "ns"}, "spec": {"model": {"id": MODEL}}}
    assert index_endpoint_by_namespace_model(ep) == ["ns/qwen/qwen3-32b"]
    elsewhere = {**ep, "metadata": {"name": "ep", "namespace": "other"}}
    assert not set(index_endpoint_by_namespace_model(elsewhere)) & set(
        index_cache_by_model(cache))
