"""The model cache PersistentVolumeClaim (v1) ``<name>-cache``, when ``cache.enabled``.

Retention rule. The cache PVC always carries the endpoint's labels
(``app.kubernetes.io/instance: <name>``, ``aim.engine.amd.com/endpoint: <name>``,
``app.kubernetes.io/managed-by: aim-controller``, ...). It gets the endpoint's
controller ownerReference only when ``cache.retainOnDelete`` is false, so that
Kubernetes garbage collection deletes it together with the endpoint. By default
(``retainOnDelete: true``) it has no ownerReference: it survives the deletion of
the endpoint, with the downloaded weights, and when an endpoint of the same name
is created again in the namespace it is found by name (``<name>-cache``) and labels
and re-adopted as is, so the model is not downloaded again. Flipping
``retainOnDelete`` on a live endpoint adds or removes the ownerReference on the
next apply. Disabling the cache (``cache.enabled: false``) unmounts the volume but
does not delete a retained PVC: the operator only ever deletes children it
controls, so a retained PVC is removed by deleting it by hand (``kubectl delete pvc
<name>-cache``).

Access mode: ReadWriteMany when the endpoint may run more than one replica
(``scaling.maxReplicas > 1``), since replicas land on different nodes and all mount
the cache; ReadWriteOnce otherwise (one node; any block storage works). The
StorageClass must support the mode; RWX needs a shared filesystem (NFS, CephFS,
Azure Files, EFS, ...), otherwise the claim stays Pending. A PVC's access modes
and storage class are immutable, so for an existing claim the caller passes its
``access_modes`` back in (:func:`build_cache_pvc`'s ``existing_access_modes``)
and they are kept; only the size may change (grow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .deployment import cache_pvc_name
from .meta import endpoint_ref, object_meta

__all__ = ["build_cache_pvc", "cache_access_mode", "cache_pvc_name", "released_cache_pvc"]


def cache_access_mode(endpoint: AIMEndpoint) -> str:
    return "ReadWriteMany" if endpoint.spec.scaling.max_replicas > 1 else "ReadWriteOnce"


def build_cache_pvc(
    endpoint: AIMEndpoint, *, existing_access_modes: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """The cache PVC, or None when the cache is disabled (see the retention rule)."""
    cache = endpoint.spec.cache
    if not cache.enabled:
        return None
    modes = list(existing_access_modes) if existing_access_modes else [cache_access_mode(endpoint)]
    spec: dict[str, Any] = {
        "accessModes": modes,
        "resources": {"requests": {"storage": str(cache.size)}},
        "volumeMode": "Filesystem",
    }
    if cache.storage_class is not None:
        spec["storageClassName"] = cache.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(
            endpoint, cache_pvc_name(endpoint_ref(endpoint).name), owned=not cache.retain_on_delete
        ),
        "spec": spec,
    }


_OUR_LABEL_PREFIXES = ("app.kubernetes.io/", "aim.engine.amd.com/")


def released_cache_pvc(observed: Mapping[str, Any]) -> dict[str, Any]:
    """An apply of the observed cache PVC without the endpoint's ownerReference.

    For the update that turns the cache off while asking to keep it
    (``cache.enabled: false`` with ``retainOnDelete: true``): the claim keeps the
    weights and its spec (immutable fields as they are), and garbage collection no
    longer deletes it with the endpoint.
    """
    meta = observed.get("metadata") or {}
    spec = observed.get("spec") or {}
    out_spec = {k: spec[k] for k in ("accessModes", "storageClassName", "volumeMode")
                if k in spec}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is not None:
        out_spec["resources"] = {"requests": {"storage": storage}}
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if k.startswith(_OUR_LABEL_PREFIXES)}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                     "labels": labels},
        "spec": out_spec,
    }
