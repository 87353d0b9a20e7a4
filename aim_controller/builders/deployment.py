"""The Deployment (apps/v1) that runs the inference engine.

Invariants of the built object:

* ``spec.selector`` is :func:`~.meta.selector_labels` (immutable, never model- or
  recipe-dependent); the pod template carries all endpoint labels.
* ``amd.com/gpu`` requests == limits == the GPUs per replica; the engine's
  tensor-parallel size is the same number (see :mod:`.engine`).
* ``spec.replicas`` is present iff no autoscaler owns it (see :mod:`.scaling`).
* The pod template's ``aim.engine.amd.com/config-checksum`` annotation changes iff
  the rendered engine config or the chosen recipe's identity changes.
* The pod template carries ``spec.podTemplate``'s labels and annotations, except
  where a key is one the operator sets itself: there the operator's value stands.
* ``progressDeadlineSeconds`` >= the startup probe's whole window.

Resources (per replica; recipe first, ``spec.resources`` overrides):

* ``gpuCount`` sets the ``amd.com/gpu`` request and limit;
* ``memory`` sets the memory request and limit;
* ``cpu`` sets the cpu request; the recipe's cpu limit is kept only if it is >= the
  new request (a limit below the request is invalid), otherwise dropped.

Node placement: a required node affinity on the AMD node labeller's device-id
labels, in either form, with the same rules as the recipe engine
(:mod:`aim_controller.recipes.inventory`). Its terms are ORed:

* ``amd.com/gpu.device-id`` or ``beta.amd.com/gpu.device-id`` ``In`` the recipe
  hardware's PCI ids (the labeller writes these on nodes with one GPU model);
* per id, the count-encoded ``amd.com/gpu.device-id.<id>`` ``Exists`` (what the
  labeller writes on nodes with several models, and what some nodes carry
  alone). For a multi-GPU replica the term also requires that no other known
  model's count label exists, so it matches a node only when all its GPUs are
  of the chosen hardware: ``amd.com/gpu`` does not say which GPUs a pod gets,
  and the AMD device plugin has no per-model resource names, so a tensor-
  parallel pod on a mixed node could get GPUs of two models. A 1-GPU replica
  may land on a mixed node (its GPU type is then not guaranteed); a preferred
  term (weight 100) steers it to nodes whose GPUs are all of the chosen
  hardware while they have room.

"Known" is :data:`aim_controller.recipes.gpus.DEVICE_IDS`; a GPU of an unknown
device id on a node does not exclude it (the recipe engine does not count such a
node). Nodes identified only by product name are not targeted. Nodes whose GPUs
are partitioned (``amd.com/compute-memory-partition`` other than SPX) are excluded
from every term: there ``amd.com/gpu`` counts partitions, not GPUs.

Security: hardened by default (seccomp RuntimeDefault, non-root unless the spec asks
for root, the ROCm device groups, no privilege escalation, no capabilities, a
writable HOME), with ``spec.security.podSecurityContext`` winning field by field: see
:mod:`.pod_security`. The service account token is not
mounted (the engine never talks to the API server). Service links are off: a
Service named e.g. ``vllm`` would inject ``VLLM_PORT=tcp://...``, which vLLM reads
as its own setting and rejects.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from aim_controller.api.v1alpha1 import GPU_RESOURCE, AIMEndpoint
from aim_controller.recipes.gpus import DEVICE_IDS

from .engine import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    PORT_NAME,
    EngineConfig,
    config_checksum,
    render_engine,
)
from .inputs import ChosenRecipe, SharedCache
from .meta import (
    ANNOTATION_CONFIG_CHECKSUM,
    ANNOTATION_RECIPE,
    endpoint_labels,
    endpoint_ref,
    object_meta,
    selector_labels,
)
from .pod_security import container_security_context, home_volume, pod_security_context
from .quantity import format_quantity, parse_quantity, try_parse_quantity
from .scaling import deployment_replicas
from .settings import OperatorSettings

__all__ = [
    "CACHE_VOLUME",
    "COUNT_LABEL_PREFIX",
    "DEVICE_ID_LABELS",
    "PARTITION_LABEL",
    "PROBE_PERIOD_SECONDS",
    "SHARED_CACHE_VOLUME",
    "SHM_VOLUME",
    "build_deployment",
    "cache_pvc_name",
    "container_resources",
    "gpu_node_affinity",
    "service_account_name",
    "shm_size",
]

SHM_VOLUME = "dshm"
CACHE_VOLUME = "model-cache"
SHARED_CACHE_VOLUME = "aim-cache"  # an AIMCache's PVC, read-only
DEVICE_ID_LABELS = ("amd.com/gpu.device-id", "beta.amd.com/gpu.device-id")
# The count-encoded form: amd.com/gpu.device-id.<id>=<GPUs of that id>.
COUNT_LABEL_PREFIX = "amd.com/gpu.device-id."
PARTITION_LABEL = "amd.com/compute-memory-partition"
# Every compute/memory partition mode except SPX (one partition = one whole GPU).
_PARTITIONED = tuple(
    f"{mode}_nps{nps}" for mode in ("dpx", "tpx", "qpx", "cpx") for nps in (1, 2, 4, 8)
)
PROBE_PERIOD_SECONDS = 10
REVISION_HISTORY_LIMIT = 3


def cache_pvc_name(name: str) -> str:
    return f"{name}-cache"


def service_account_name(endpoint: AIMEndpoint) -> str | None:
    """The pods' ServiceAccount: ``serviceAccount.name``, else the endpoint's name when
    the operator creates it, else None (the namespace's default)."""
    sa = endpoint.spec.security.service_account
    if sa.name:
        return sa.name
    return endpoint_ref(endpoint).name if sa.create else None


def container_resources(endpoint: AIMEndpoint, chosen: ChosenRecipe, gpus: int) -> dict[str, Any]:
    """requests/limits of the engine container (see the module docstring), keys sorted."""
    requests = dict(chosen.requests)
    limits = dict(chosen.limits)
    requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    res = endpoint.spec.resources
    if res is not None and res.memory is not None:
        requests["memory"] = limits["memory"] = str(res.memory)
    if res is not None and res.cpu is not None:
        requests["cpu"] = str(res.cpu)
        cpu_limit = try_parse_quantity(limits.get("cpu"))
        if cpu_limit is not None and cpu_limit < parse_quantity(requests["cpu"]):
            del limits["cpu"]
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}


def shm_size(requests: dict[str, str], settings: OperatorSettings) -> str:
    """sizeLimit of /dev/shm: half the memory request, at most ``shm_size_limit``,
    rounded down to MiB (at least 1Mi); the cap alone when there is no memory
    request. (A memory-backed emptyDir counts against the container's memory.)"""
    cap = parse_quantity(settings.shm_size_limit)
    mem = try_parse_quantity(requests.get("memory"))
    size = cap if mem is None else min(cap, mem / 2)
    mib = Fraction(2**20)
    return format_quantity(max(mib, (size // mib) * mib), binary=True)


def gpu_node_affinity(
    device_ids: tuple[str, ...], *, gpus_per_replica: int
) -> dict[str, Any] | None:
    """Node affinity for the recipe's GPU model, or None without device ids (see the
    module docstring).

    Required terms are ORed: the single-value device-id label in either form, or a
    count-encoded device-id label (for ``gpus_per_replica`` > 1 only on nodes without
    another known model's count label); each term also excludes partitioned nodes
    (NotIn also matches nodes without the label). 1-GPU replicas prefer nodes without
    another model's count label.
    """
    if not device_ids:
        return None
    ids = sorted(device_ids)
    not_partitioned: dict[str, Any] = {
        "key": PARTITION_LABEL, "operator": "NotIn", "values": list(_PARTITIONED),
    }
    no_other_model: list[dict[str, Any]] = [
        {"key": f"{COUNT_LABEL_PREFIX}{d}", "operator": "DoesNotExist"}
        for d in sorted(DEVICE_IDS)
        if d not in ids
    ]
    terms = [
        {"matchExpressions": [{"key": key, "operator": "In", "values": ids}, not_partitioned]}
        for key in DEVICE_ID_LABELS
    ]
    for d in ids:
        counted: list[dict[str, Any]] = [{"key": f"{COUNT_LABEL_PREFIX}{d}", "operator": "Exists"}]
        if gpus_per_replica > 1:
            counted += no_other_model
        terms.append({"matchExpressions": [*counted, not_partitioned]})
    node_affinity: dict[str, Any] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms},
    }
    if gpus_per_replica == 1 and no_other_model:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 100, "preference": {"matchExpressions": no_other_model}},
        ]
    return {"nodeAffinity": node_affinity}


def _probe(path: str, *, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _probes(engine: EngineConfig, settings: OperatorSettings) -> dict[str, Any]:
    path = engine.profile.health_path
    # The startup probe holds off liveness while weights download and load; its
    # window is the whole startup budget (default 180 x 10 s = 30 min).
    startup_failures = -(-settings.startup_budget_seconds // PROBE_PERIOD_SECONDS)
    return {
        "startupProbe": _probe(
            path, period=PROBE_PERIOD_SECONDS, failures=startup_failures, timeout=5
        ),
        "readinessProbe": _probe(path, period=PROBE_PERIOD_SECONDS, failures=3, timeout=5),
        # Lenient: a server saturated by long generations answers /health slowly, and
        # a restart costs a full model load.
        "livenessProbe": _probe(path, period=30, failures=5, timeout=10),
    }


def _strategy(endpoint: AIMEndpoint) -> dict[str, Any]:
    st = endpoint.spec.deployment.strategy
    if st.type == "Recreate":
        return {"type": "Recreate"}
    ru = st.rolling_update
    # Always written (the API defaults are 25%/25%) so the operator owns them: a later
    # switch to Recreate then removes them, instead of leaving server-defaulted
    # values that fail validation next to type Recreate.
    surge = ru.max_surge if ru is not None and ru.max_surge is not None else "25%"
    unavailable = (
        ru.max_unavailable if ru is not None and ru.max_unavailable is not None else "25%"
    )
    return {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def _cache_volumes(
    endpoint: AIMEndpoint, settings: OperatorSettings, shared: SharedCache | None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, mount) of the weights: an AIMCache's PVC read-only, else the own cache
    PVC when enabled, else none."""
    if shared is not None:
        return [({"name": SHARED_CACHE_VOLUME, "persistentVolumeClaim": {
                    "claimName": shared.claim_name, "readOnly": True}},
                 {"name": SHARED_CACHE_VOLUME, "mountPath": shared.mount_path,
                  "readOnly": True})]
    if endpoint.spec.cache.enabled:
        claim = cache_pvc_name(endpoint_ref(endpoint).name)
        return [({"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": claim}},
                 {"name": CACHE_VOLUME, "mountPath": settings.cache_mount_path})]
    return []


def _container(
    endpoint: AIMEndpoint, chosen: ChosenRecipe, engine: EngineConfig, settings: OperatorSettings,
    shared: SharedCache | None = None,
) -> dict[str, Any]:
    resources = container_resources(endpoint, chosen, engine.gpu_count)
    _, home_mount, home_env = home_volume()
    mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}, home_mount]
    mounts += [mount for _, mount in _cache_volumes(endpoint, settings, shared)]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": engine.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(engine.command),
        "args": list(engine.args),
        "ports": [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
    }
    env = [{"name": k, "value": v} for k, v in engine.env]
    if all(e["name"] != home_env["name"] for e in env):
        env = sorted([*env, home_env], key=lambda e: e["name"])
    container["env"] = env
    container |= {
        "resources": resources,
        "volumeMounts": sorted(mounts, key=lambda m: m["mountPath"]),
        **_probes(engine, settings),
        "securityContext": container_security_context(),
    }
    return container


def build_deployment(
    endpoint: AIMEndpoint, chosen: ChosenRecipe, settings: OperatorSettings,
    shared: SharedCache | None = None,
) -> dict[str, Any]:
    """The endpoint's Deployment, ``<name>``, as a server-side apply manifest.
    ``shared``: an AIMCache holds the model Ready (mounted read-only instead of the
    own cache PVC; see :mod:`.engine`)."""
    ref = endpoint_ref(endpoint)
    engine = render_engine(endpoint, chosen, settings, shared)
    container = _container(endpoint, chosen, engine, settings, shared)
    shm = shm_size(container["resources"]["requests"], settings)
    volumes: list[dict[str, Any]] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        home_volume()[0],
    ]
    volumes += [volume for volume, _ in _cache_volumes(endpoint, settings, shared)]

    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
    }
    sa = service_account_name(endpoint)
    if sa is not None:
        pod_spec["serviceAccountName"] = sa
    pod_spec["securityContext"] = pod_security_context(endpoint)
    affinity = gpu_node_affinity(chosen.device_ids, gpus_per_replica=engine.gpu_count)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    if chosen.tolerations:
        pod_spec["tolerations"] = _tolerations(chosen)
    pod_spec["volumes"] = sorted(volumes, key=lambda v: v["name"])

    extra = endpoint.spec.pod_template
    # The user's labels and annotations first: ours win (the selector labels above all).
    labels = (extra.labels if extra else {}) | endpoint_labels(endpoint)
    annotations = (extra.annotations if extra else {}) | {
        ANNOTATION_CONFIG_CHECKSUM: config_checksum(engine, chosen),
        "kubectl.kubernetes.io/default-container": CONTAINER_NAME,
    }
    template = {
        "metadata": {
            "labels": dict(sorted(labels.items())),
            "annotations": dict(sorted(annotations.items())),
        },
        "spec": pod_spec,
    }
    spec: dict[str, Any] = {
        "replicas": deployment_replicas(endpoint.spec),
        "selector": {"matchLabels": selector_labels(ref.name)},
        "strategy": _strategy(endpoint),
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "progressDeadlineSeconds": settings.progress_deadline_seconds,
        "template": template,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(endpoint, ref.name, annotations={ANNOTATION_RECIPE: chosen.id.ref}),
        "spec": spec,
    }


def _tolerations(chosen: ChosenRecipe) -> list[dict[str, Any]]:
    """The recipe's tolerations, deduplicated and in a fixed order."""
    unique = {
        tuple(sorted((k, str(v)) for k, v in t.items())): dict(sorted(t.items()))
        for t in chosen.tolerations
    }
    return [unique[k] for k in sorted(unique)]
