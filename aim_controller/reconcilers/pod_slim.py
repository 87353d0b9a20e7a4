"""The Pod cache keeps a sliver of each pod: what the operator reads of it, nothing else.

The operator caches every pod of the cluster (the GPU inventory counts the devices
held on every node), so one cached pod's size times the cluster's pods is most of its
memory. :func:`slim_pod` is the Pod informer's transform; every ask for that informer
must name it (the shared informer factory refuses another transform).

Kept, and who reads it:

- ``metadata``: ``name``, ``namespace`` (cache keys, the namespace index),
  ``uid``, ``resourceVersion``, ``generation`` (the machinery, ``InventoryCache``
  keys), ``deletionTimestamp`` (``pod_failures``), ``ownerReferences`` without
  ``blockOwnerDeletion`` (the owner-uid index: the pod's ReplicaSet), only our labels
  (managed-by and endpoint: ``index_pod_by_endpoint``; instance and
  pod-template-hash; of AIMCache Job pods the cache and cache-job labels:
  ``cache_observe``) and only our annotations (the config checksum: ``pods_state``);
- ``spec``: ``nodeName``; of ``containers`` and ``initContainers`` only those that
  ask for ``amd.com/`` resources, with their name, those requests, the limits of those
  not requested, and (init containers) ``restartPolicy``; the ``amd.com/`` part of
  ``overhead`` (``pod_device_requests``: a container without device resources adds
  nothing to it, and a limit counts only where no request is given);
- ``status``: ``phase``; ``conditions`` (type, status, reason, message,
  lastTransitionTime: scheduling, readiness); ``containerStatuses`` and
  ``initContainerStatuses`` with name, ready, restartCount, and ``state`` and
  ``lastState`` (when not empty) cut to reason, message and exitCode (``startedAt`` of
  a running state, so that it stays non-empty) (``pod_failures``; a cache Job's
  one-line JSON report is its terminated ``message``: ``cache_observe``).

A reader that needs more adds it here: tests/unit/test_pod_slim.py checks that every
reader answers the same from the sliver as from the full pod.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aim_controller.api.v1alpha1.groupversion import GROUP
from aim_controller.builders import LABEL_ENDPOINT, LABEL_INSTANCE, LABEL_MANAGED_BY
from aim_controller.builders.cache_objects import LABEL_CACHE, LABEL_CACHE_JOB

__all__ = ["KEPT_LABELS", "slim_pod"]

POD_TEMPLATE_HASH: Final = "pod-template-hash"
KEPT_LABELS: Final = frozenset({LABEL_MANAGED_BY, LABEL_ENDPOINT, LABEL_INSTANCE,
                                POD_TEMPLATE_HASH, LABEL_CACHE, LABEL_CACHE_JOB})
_OUR_ANNOTATIONS: Final = f"{GROUP}/"
_DEVICES: Final = "amd.com/"  # the prefix pod_device_requests counts

_META: Final = ("name", "namespace", "uid", "resourceVersion", "generation",
                "deletionTimestamp")
_OWNER: Final = ("apiVersion", "kind", "name", "uid", "controller")
_CONDITION: Final = ("type", "status", "reason", "message", "lastTransitionTime")
_CONTAINER_STATUS: Final = ("name", "ready", "restartCount")
_STATE: Final[Mapping[str, tuple[str, ...]]] = {
    "waiting": ("reason", "message"),
    "running": ("startedAt",),
    "terminated": ("exitCode", "reason", "message"),
}
_STATE_OTHER: Final = ("reason", "message", "exitCode")
# Fields whose values repeat across pods ("Ready", "True", "Running", "ReplicaSet") or
# within one (every condition of a pod turns at the same second): kept as one shared
# (interned) string instead of one decoded each.
_WORDS: Final = frozenset({"apiVersion", "kind", "type", "status", "reason", "phase",
                           "restartPolicy", "lastTransitionTime", "startedAt"})
# And those shared by a namespace's, a node's or a ReplicaSet's pods.
_SHARED: Final = frozenset({"namespace", "nodeName"})


def _value(v: Any) -> Any:
    return sys.intern(v) if type(v) is str else v


def _pick(src: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: _value(src[k]) if k in _WORDS or k in _SHARED else src[k]
            for k in keys if k in src}


def _devices(quantities: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (quantities or {}).items() if k.startswith(_DEVICES)}


def _container(c: Mapping[str, Any], init: bool) -> dict[str, Any] | None:
    res = c.get("resources") or {}
    requests = _devices(res.get("requests"))
    # A limit counts only where no request is given (the request is authoritative).
    limits = {k: v for k, v in _devices(res.get("limits")).items() if k not in requests}
    kept = {part: d for part, d in (("requests", requests), ("limits", limits)) if d}
    if not kept:
        return None
    out: dict[str, Any] = {"name": _value(c.get("name")), "resources": kept}
    if init:
        out.update(_pick(c, ("restartPolicy",)))
    return out


def _state(state: Mapping[str, Any] | None) -> dict[str, Any]:
    return {sys.intern(kind): _pick(detail or {}, _STATE.get(kind, _STATE_OTHER))
            for kind, detail in (state or {}).items()}


def _container_status(cs: Mapping[str, Any]) -> dict[str, Any]:
    out = _pick(cs, _CONTAINER_STATUS)
    if "name" in out:
        out["name"] = _value(out["name"])
    for key in ("state", "lastState"):
        if cs.get(key):  # an empty lastState (never restarted) says nothing
            out[key] = _state(cs[key])
    return out


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of ``pod`` the operator reads (see the module docstring); a new dict
    sharing leaf values with ``pod``."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}

    m = _pick(meta, _META)
    all_labels = meta.get("labels") or {}
    # Our constants as keys (one string for all pods, not one decoded per pod).
    labels = {k: _value(all_labels[k]) for k in KEPT_LABELS if k in all_labels}
    if labels:
        m["labels"] = labels
    annotations = {sys.intern(k): _value(v) for k, v in (meta.get("annotations") or {}).items()
                   if k.startswith(_OUR_ANNOTATIONS)}
    if annotations:
        m["annotations"] = annotations
    if "ownerReferences" in meta:
        m["ownerReferences"] = [{k: _value(v) for k, v in _pick(r, _OWNER).items()}
                                for r in meta["ownerReferences"] or ()]

    s: dict[str, Any] = _pick(spec, ("nodeName",))
    for key, init in (("containers", False), ("initContainers", True)):
        kept = [k for c in spec.get(key) or () if (k := _container(c, init)) is not None]
        if kept:
            s[key] = kept
    if overhead := _devices(spec.get("overhead")):
        s["overhead"] = overhead

    st = _pick(status, ("phase",))
    if "conditions" in status:
        st["conditions"] = [_pick(c, _CONDITION) for c in status["conditions"] or ()]
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in status:
            st[key] = [_container_status(cs) for cs in status[key] or ()]

    out = _pick(pod, ("apiVersion", "kind"))
    out.update(metadata=m, spec=s, status=st)
    return out
