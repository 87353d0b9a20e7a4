"""The children of an AIMCache, as plain manifests: the PVC, one download Job per model
and the cleanup CronJob. Pure: the parsed AIMCache and :class:`CacheJobSettings` in.

Invariants:

* Every child carries :func:`cache_labels` (managed-by, part-of, component, the cache's
  name) and the AIMCache's controller ownerReference, so garbage collection removes
  it with the cache and the operator's label-selected informers see it.
* Names are bounded: the PVC ``aimcache-<name>`` (<= 253), a download Job
  ``aimcache-<name>-<key>`` (<= 63, its name is a pod label value) where ``<key>`` is
  :func:`download_key` (model id, revision and source: a change is a new Job, as a
  Job's template is immutable), the CronJob ``aimcache-<name>-cleanup`` (<= 52, the
  CronJob limit). Too long a cache name is cut and suffixed with a hash.
* Jobs run the operator's own image with ``aim-controller cache-download`` /
  ``cache-clean`` (see :mod:`aim_controller.modelcache`) and the PVC mounted at
  :data:`~aim_controller.modelcache.layout.CACHE_MOUNT_PATH`; a Hub token is passed by
  ``secretKeyRef`` only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aim_controller.api.v1alpha1 import API_VERSION, KIND_AIM_CACHE
from aim_controller.api.v1alpha1.cache import AIMCache, CachedModel
from aim_controller.modelcache.download import EXIT_NO_SPACE, EXIT_PERMANENT, EXIT_USAGE
from aim_controller.modelcache.layout import CACHE_MOUNT_PATH

from .meta import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_MODEL, LABEL_PART_OF, MANAGED_BY, PART_OF
from .meta import sanitize_label_value as _label_value

__all__ = [
    "ANNOTATION_CACHE_MODEL",
    "ANNOTATION_EXPECTED_BYTES",
    "COMPONENT_MODEL_CACHE",
    "DEFAULT_OPERATOR_IMAGE",
    "JOB_CLEANUP",
    "JOB_DOWNLOAD",
    "LABEL_CACHE",
    "LABEL_CACHE_JOB",
    "CacheJobSettings",
    "build_cache_volume_claim",
    "build_cleanup_cronjob",
    "build_download_job",
    "cache_labels",
    "cache_owner_reference",
    "cache_pvc_claim_name",
    "cleanup_cronjob_name",
    "download_job_name",
    "download_key",
]

LABEL_CACHE = "aim.engine.amd.com/cache"
LABEL_CACHE_JOB = "aim.engine.amd.com/cache-job"
JOB_DOWNLOAD = "download"
JOB_CLEANUP = "cleanup"
ANNOTATION_CACHE_MODEL = "aim.engine.amd.com/cache-model"
ANNOTATION_EXPECTED_BYTES = "aim.engine.amd.com/expected-bytes"
COMPONENT_MODEL_CACHE = "model-cache"
DEFAULT_OPERATOR_IMAGE = "aim-controller:dev"
"""The operator's image as the manifests name it (Makefile IMG); Deployments pass their
own through --operator-image / OPERATOR_IMAGE."""

_PREFIX = "aimcache-"
_VOLUME = "cache"
_RUN_AS = 65532  # the operator image's user (Dockerfile)


@dataclass(frozen=True, slots=True)
class CacheJobSettings:
    """How cache Jobs run.

    Invariants: ``image`` is non-empty; the durations are positive; ``backoff_limit``
    >= 0.
    """

    image: str = DEFAULT_OPERATOR_IMAGE
    backoff_limit: int = 2
    """Retries of a download pod: a network hiccup, not a wrong model id, forever."""
    active_deadline_seconds: int = 6 * 3600
    """A download (queued pod time included) may take this long: 140 GB at 10 MB/s."""
    ttl_seconds_after_finished: int = 3600
    """A finished download Job is removed an hour later (the state is in the status); a
    failed download is tried again once its Job is gone."""
    cleanup_deadline_seconds: int = 3600

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("the cache Jobs need an image")
        if min(self.active_deadline_seconds, self.ttl_seconds_after_finished,
               self.cleanup_deadline_seconds) <= 0 or self.backoff_limit < 0:
            raise ValueError("cache Job durations must be positive")


def _bounded(name: str, suffix: str, limit: int) -> str:
    """``aimcache-<name><suffix>`` within ``limit`` characters (a DNS label's shape)."""
    full = f"{_PREFIX}{name}{suffix}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    room = limit - len(_PREFIX) - len(suffix) - len(digest) - 1
    return f"{_PREFIX}{name[:room].rstrip('-.')}-{digest}{suffix}"


def cache_pvc_claim_name(cache_name: str) -> str:
    return _bounded(cache_name, "", 253)


def cleanup_cronjob_name(cache_name: str) -> str:
    return _bounded(cache_name, "-cleanup", 52)


def download_key(model: CachedModel, cache: AIMCache) -> str:
    """10 hex digits naming what a download fetches: model id, revision and source."""
    src = cache.spec.source
    token = src.token_secret_ref
    ident = json.dumps([model.id, model.revision, src.hf_endpoint,
                        [token.name, token.key] if token else None])
    return hashlib.sha256(ident.encode()).hexdigest()[:10]


def download_job_name(cache_name: str, key: str) -> str:
    return _bounded(cache_name, f"-{key}", 63)


def cache_labels(cache_name: str, job: str | None = None) -> dict[str, str]:
    labels = {
        LABEL_CACHE: _label_value(cache_name),
        LABEL_COMPONENT: COMPONENT_MODEL_CACHE,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
    }
    if job is not None:
        labels[LABEL_CACHE_JOB] = job
    return dict(sorted(labels.items()))


def cache_owner_reference(cache: AIMCache) -> dict[str, Any]:
    m = cache.metadata
    if not (m.name and m.namespace and m.uid):
        raise ValueError("AIMCache metadata needs name, namespace and uid")
    return {"apiVersion": API_VERSION, "kind": KIND_AIM_CACHE, "name": m.name, "uid": m.uid,
            "controller": True, "blockOwnerDeletion": True}


def _meta(cache: AIMCache, name: str, labels: Mapping[str, str],
          annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": cache.metadata.namespace,
                           "labels": dict(labels),
                           "ownerReferences": [cache_owner_reference(cache)]}
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    return out


def build_cache_volume_claim(cache: AIMCache) -> dict[str, Any]:
    """The cache's PVC: class, size and access mode from ``spec.storage`` (a larger size
    is a resize request; class and mode are immutable in the API)."""
    st = cache.spec.storage
    name = cache.metadata.name or ""
    spec: dict[str, Any] = {
        "accessModes": [st.access_mode],
        "resources": {"requests": {"storage": str(st.size)}},
        "volumeMode": "Filesystem",
    }
    if st.storage_class is not None:
        spec["storageClassName"] = st.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(cache, cache_pvc_claim_name(name), cache_labels(name)),
            "spec": spec}


def _pod_spec(cache: AIMCache, container: dict[str, Any]) -> dict[str, Any]:
    name = cache.metadata.name or ""
    container = {
        **container,
        "image": container["image"],
        "volumeMounts": [{"name": _VOLUME, "mountPath": CACHE_MOUNT_PATH}],
        # The command's one-line JSON report; its stderr tail if it died before writing.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": _RUN_AS, "runAsGroup": _RUN_AS,
                            "fsGroup": _RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": _VOLUME,
                     "persistentVolumeClaim": {"claimName": cache_pvc_claim_name(name)}}],
    }


def build_download_job(cache: AIMCache, model: CachedModel, settings: CacheJobSettings,
                       expected_bytes: int | None = None) -> dict[str, Any]:
    """The Job that downloads ``model`` into the cache (created once, never updated: a
    changed model, revision or source is another Job, see :func:`download_key`)."""
    name = cache.metadata.name or ""
    labels = cache_labels(name, JOB_DOWNLOAD) | {LABEL_MODEL: _label_value(model.id)}
    labels = dict(sorted(labels.items()))
    annotations = {ANNOTATION_CACHE_MODEL: model.id}
    if expected_bytes is not None:
        annotations[ANNOTATION_EXPECTED_BYTES] = str(expected_bytes)
    args = ["cache-download", "--root", CACHE_MOUNT_PATH, "--model", model.id]
    if model.revision:
        args += ["--revision", model.revision]
    env: list[dict[str, Any]] = []
    src = cache.spec.source
    if src.hf_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": src.hf_endpoint})
    if src.token_secret_ref is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": src.token_secret_ref.name, "key": src.token_secret_ref.key}}})
    container: dict[str, Any] = {
        "name": JOB_DOWNLOAD, "image": settings.image, "command": ["aim-controller"],
        "args": args, "env": env,
        # CPU bounded (TLS and hashing of parallel file downloads), not starving the node.
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"cpu": "2", "memory": "4Gi"}},
    }
    if not env:
        del container["env"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(cache, download_job_name(name, download_key(model, cache)), labels,
                          annotations),
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            # A 404, a refused token or a full volume fails at once; an evicted pod
            # (node drain) does not count against backoffLimit.
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {
                    "containerName": JOB_DOWNLOAD, "operator": "In",
                    "values": sorted({EXIT_USAGE, EXIT_PERMANENT, EXIT_NO_SPACE})}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {"metadata": {"labels": labels, "annotations": annotations},
                         "spec": _pod_spec(cache, container)},
        },
    }


def build_cleanup_cronjob(cache: AIMCache, settings: CacheJobSettings,
                          policy_json: str, capacity_bytes: int | None = None) -> dict[str, Any]:
    """The CronJob that runs ``aim-controller cache-clean`` on ``cleanup.schedule`` with the
    policy :func:`~aim_controller.reconcilers.cache_decide.cleanup_policy` computed (the
    in-use set included), one run at a time. ``capacity_bytes``: the volume's size, so free
    space is counted against it (a shared filesystem reports the whole server's)."""
    name = cache.metadata.name or ""
    schedule = cache.spec.cleanup.schedule
    if schedule is None:
        raise ValueError("cleanup.schedule is required when cleanup is enabled")
    labels = cache_labels(name, JOB_CLEANUP)
    container = {
        "name": JOB_CLEANUP, "image": settings.image, "command": ["aim-controller"],
        "args": ["cache-clean", "--root", CACHE_MOUNT_PATH, "--policy-json", policy_json,
                 *(["--capacity-bytes", str(capacity_bytes)] if capacity_bytes else [])],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "512Mi"}},
    }
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": _meta(cache, cleanup_cronjob_name(name), labels),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": settings.cleanup_deadline_seconds,
                    "template": {"metadata": {"labels": labels},
                                 "spec": _pod_spec(cache, container)},
                },
            },
        },
    }
