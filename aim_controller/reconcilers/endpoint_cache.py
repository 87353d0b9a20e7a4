"""Where an endpoint's model weights come from: a shared AIMCache, its own cache PVC,
or a download at every start. Pure: the AIMCaches of the namespace in, a
:class:`CacheUse` out.

The rule (README "Endpoints use a shared AIMCache"):

* An AIMCache of the endpoint's namespace whose ``spec.models`` lists the model
  (ids compared as recipes are: trimmed, case-insensitive) is the endpoint's cache;
  when several do, the first by name that holds it Ready, else the first by name.
  Revisions must agree: the cache entry's ``revision`` equals the endpoint's
  ``spec.model.version``, where an unset one and "latest" both mean the default
  branch (so an endpoint pinned to "v2" does not use a cache of the default branch).
  An AIMCache being deleted is not used: its endpoints move off it, so that a
  deletion held until no endpoint mounts the cache can complete.
* Ready there (and the cache names its PVC): the pods mount that PVC read-only and
  load the model from it (``CacheReady=True``, reason ``AIMCacheReady``).
* Pending or Downloading (a model the cache has not reported yet is Pending): an
  endpoint without a Deployment waits (``CacheReady=False``, ``CacheDownloading``; no
  Deployment) from ``waitingSince``, recorded in the status so a restart does not
  reset it, until the wait timeout; then it starts with its own download
  (``CacheWaitTimedOut``). An endpoint that already has a Deployment keeps it as it
  is (``CacheDownloading``, not waiting).
* Failed or Evicted: its own download at once (``CacheUnavailable``).
* The model Ready later: the endpoint switches to the cache at once (a pod-template
  change: the pods roll).
* No AIMCache lists the model: as without AIMCaches (own PVC when
  ``cache.enabled``); no ``CacheReady`` condition.

"Its own download" is the own cache PVC when ``spec.cache.enabled``, else the engine
downloading into the container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aim_controller.api.v1alpha1 import CACHED_MODEL_STATES
from aim_controller.builders import SharedCache, cache_pvc_name
from aim_controller.modelcache.layout import CACHE_MOUNT_PATH, model_path
from aim_controller.recipes.backoff import parse_time

from .conditions import FALSE, TRUE, Cond

__all__ = [
    "AIM_CACHE_READY",
    "CACHE_DOWNLOADING",
    "CACHE_READY",
    "CACHE_UNAVAILABLE",
    "CACHE_WAIT_TIMED_OUT",
    "DEFAULT_CACHE_WAIT",
    "SOURCE_AIM_CACHE",
    "SOURCE_NONE",
    "SOURCE_OWN",
    "CacheUse",
    "cache_use",
    "cached_model_keys",
    "model_key",
]

CACHE_READY = "CacheReady"
AIM_CACHE_READY = "AIMCacheReady"
CACHE_DOWNLOADING = "CacheDownloading"
CACHE_UNAVAILABLE = "CacheUnavailable"
CACHE_WAIT_TIMED_OUT = "CacheWaitTimedOut"
SOURCE_AIM_CACHE, SOURCE_OWN, SOURCE_NONE = "AIMCache", "Own", "None"
DEFAULT_CACHE_WAIT = timedelta(minutes=15)

_IN_PROGRESS = ("Pending", "Downloading")
_GONE = ("Failed", "Evicted")


def model_key(model_id: object) -> str:
    """How model ids are compared (as AIMRecipe modelIds are)."""
    return str(model_id).strip().lower()


def cached_model_keys(cache: Mapping[str, Any]) -> list[str]:
    """The model keys an AIMCache lists in its spec."""
    models = (cache.get("spec") or {}).get("models") or ()
    return sorted({model_key(m["id"]) for m in models if isinstance(m, Mapping) and m.get("id")})


@dataclass(frozen=True)
class CacheUse:
    """The verdict for one endpoint.

    Invariants: ``shared`` (what the pods mount) is set exactly when ``source`` is
    AIMCache and the endpoint does not ``wait``; then ``cache``, ``claim`` and ``path``
    are set. ``wait`` (no Deployment, no new own PVC yet) comes with source AIMCache,
    ``cache``, ``path`` and ``waiting_since``. ``condition`` is None exactly when no
    AIMCache lists the model; ``recheck_after`` is set exactly when waiting (seconds
    until the timeout, plus one).
    """

    source: str
    cache: str | None = None
    claim: str | None = None
    path: str | None = None
    state: str | None = None
    waiting_since: datetime | None = None
    wait: bool = False
    condition: Cond | None = None
    recheck_after: float | None = None
    shared: SharedCache | None = None

    def status(self) -> dict[str, Any]:
        """``status.cache``, as the API server returns it (no null fields)."""
        out: dict[str, Any] = {"source": self.source}
        for key, value in (("aimCache", self.cache), ("persistentVolumeClaim", self.claim),
                           ("path", self.path), ("state", self.state)):
            if value is not None:
                out[key] = value
        if self.waiting_since is not None:
            out["waitingSince"] = self.waiting_since.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _entry(cache: Mapping[str, Any], key: str) -> tuple[str, str]:
    """(state, message) of the model in the cache's status; Pending when not reported
    yet, or reported Ready without a PVC name (nothing to mount)."""
    status = cache.get("status") or {}
    for m in status.get("models") or ():
        if isinstance(m, Mapping) and model_key(m.get("id")) == key:
            state = str(m.get("state") or "Pending")
            if state not in CACHED_MODEL_STATES or (
                    state == "Ready" and not status.get("persistentVolumeClaim")):
                state = "Pending"
            return state, str(m.get("message") or "")
    return "Pending", ""


def _revision(value: object) -> str | None:
    """None for the default branch."""
    return None if value in (None, "", "latest") else str(value)


def _listed_id(cache: Mapping[str, Any], key: str, revision: str | None) -> str | None:
    """The model's id as the cache spells it (the directory is named after it), when
    the cache lists it at ``revision``."""
    for m in (cache.get("spec") or {}).get("models") or ():
        if (isinstance(m, Mapping) and model_key(m.get("id")) == key
                and _revision(m.get("revision")) == revision):
            return str(m["id"])
    return None


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def _own(own_enabled: bool, endpoint: str) -> CacheUse:
    if own_enabled:
        return CacheUse(SOURCE_OWN, claim=cache_pvc_name(endpoint))
    return CacheUse(SOURCE_NONE)


def _own_download(own_enabled: bool, endpoint: str) -> str:
    if own_enabled:
        return f"the endpoint downloads the model onto its own PVC {cache_pvc_name(endpoint)}"
    return "the engine downloads the model at start (spec.cache.enabled is false)"


def cache_use(
    *,
    endpoint: str,
    model_id: str,
    version: str | None,
    own_enabled: bool,
    caches: Iterable[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    serving: bool,
    now: datetime,
    timeout: timedelta,
) -> CacheUse:
    """Where ``endpoint``'s weights come from (see the module rule).

    ``caches``: AIMCaches of the endpoint's namespace (others are ignored by the
    caller; ones that do not list the model are ignored here). ``previous``: the
    endpoint's ``status.cache``. ``serving``: the endpoint has a Deployment.
    """
    key, revision = model_key(model_id), _revision(version)
    listing = sorted(((c, listed) for c in caches
                      if not (c.get("metadata") or {}).get("deletionTimestamp")
                      and (listed := _listed_id(c, key, revision)) is not None),
                     key=lambda c: _name(c[0]))
    if not listing:
        return _own(own_enabled, endpoint)
    states = [(c, listed, *_entry(c, key)) for c, listed in listing]
    cache, listed, state, detail = next((s for s in states if s[2] == "Ready"), states[0])
    name, path = _name(cache), model_path(listed)
    fallback = _own(own_enabled, endpoint)
    where = f"model {model_id} is {state} in AIMCache {name}"
    if state == "Ready":
        claim = str((cache.get("status") or {})["persistentVolumeClaim"])
        note = (f"; spec.cache.enabled: the own PVC {cache_pvc_name(endpoint)} is not used"
                " for weights" if own_enabled else "")
        return CacheUse(
            SOURCE_AIM_CACHE, name, claim, path, state,
            condition=Cond(CACHE_READY, TRUE, AIM_CACHE_READY,
                           f"{where}: its PVC {claim} is mounted read-only at "
                           f"{CACHE_MOUNT_PATH} and the engine loads {path}{note}"),
            shared=SharedCache(name, claim, path, CACHE_MOUNT_PATH))
    if state in _GONE:
        why = f": {detail}" if detail else ""
        return CacheUse(
            fallback.source, name, fallback.claim, None, state,
            condition=Cond(CACHE_READY, FALSE, CACHE_UNAVAILABLE,
                           f"{where}{why}; {_own_download(own_enabled, endpoint)}"))
    prev = previous or {}
    since = parse_time(prev.get("waitingSince")) or now
    if now - since >= timeout:
        # waitingSince stays: the wait is over for good until the model is Ready.
        return CacheUse(
            fallback.source, name, fallback.claim, None, state, since,
            condition=Cond(CACHE_READY, FALSE, CACHE_WAIT_TIMED_OUT,
                           f"{where} after waiting {_duration(timeout)} (the operator's "
                           f"--cache-wait-timeout); {_own_download(own_enabled, endpoint)}"))
    if serving:
        keep = fallback
        if (prev.get("source") == SOURCE_AIM_CACHE and prev.get("aimCache") == name
                and prev.get("persistentVolumeClaim")):
            claim = str(prev["persistentVolumeClaim"])
            keep = CacheUse(SOURCE_AIM_CACHE, name, claim, path,
                            shared=SharedCache(name, claim, path, CACHE_MOUNT_PATH))
        return CacheUse(
            keep.source, name, keep.claim, keep.path, state, shared=keep.shared,
            condition=Cond(CACHE_READY, FALSE, CACHE_DOWNLOADING,
                           f"{where}; the endpoint keeps serving as it is and switches to "
                           "the cache when the model is Ready there"))
    left = since + timeout - now
    pvc = (cache.get("status") or {}).get("persistentVolumeClaim")
    return CacheUse(
        SOURCE_AIM_CACHE, name, str(pvc) if pvc else None, path, state, since, wait=True,
        condition=Cond(CACHE_READY, FALSE, CACHE_DOWNLOADING,
                       f"{where}; the endpoint waits for it (no Deployment yet), at most "
                       f"{_duration(timeout)} from {since.strftime('%Y-%m-%dT%H:%M:%SZ')}, "
                       f"then {_own_download(own_enabled, endpoint)}"),
        recheck_after=left.total_seconds() + 1.0)
