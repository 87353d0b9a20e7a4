"""The Deployments of a canary rollout (see
:mod:`aim_controller.reconcilers.endpoint_canary` for when each is used).

* The built Deployment's pod template is identified by :func:`template_hash`,
  stamped on the Deployment's metadata (never on the pod template: that would roll
  the pods) as ``aim.engine.amd.com/template-hash`` when the canary is enabled.
* :func:`stable_keeping_template`: the stable Deployment as built (replicas,
  strategy, labels: the autoscaler keeps driving it), but with the pod template it
  runs now, so its pods are untouched during a canary and after a rollback.
* :func:`build_canary_deployment`: ``<name>-canary``, the new template with the
  canary label and annotation, in proportion to the split. Its pods keep the
  endpoint's selector labels, so the endpoint's Service sends them their share of
  requests (the split by replica ratio; where an HTTPRoute splits them instead, the
  pods lack ``app.kubernetes.io/name`` and only the canary's Service selects them);
  its own selector is the instance and canary labels, so it never counts the stable
  pods. (The stable Deployment's selector also matches
  the canary's pods; a ReplicaSet adopts only pods of its own pod-template-hash,
  and the Deployment controller only ReplicaSets it controls, so neither takes
  them.) The pod annotation marks them in the operator's slim pod cache.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from aim_controller.api.v1alpha1.groupversion import GROUP

from .meta import ANNOTATION_APPLIED_HASH, LABEL_INSTANCE, LABEL_NAME

__all__ = [
    "ANNOTATION_CANARY",
    "ANNOTATION_TEMPLATE_HASH",
    "LABEL_CANARY",
    "build_canary_deployment",
    "canary_name",
    "deployment_template_hash",
    "is_canary_pod",
    "stable_keeping_template",
    "stamp_template_hash",
    "template_hash",
]

ANNOTATION_TEMPLATE_HASH = f"{GROUP}/template-hash"
LABEL_CANARY = f"{GROUP}/canary"
ANNOTATION_CANARY = LABEL_CANARY
CANARY_SUFFIX = "-canary"


def canary_name(name: str) -> str:
    return f"{name}{CANARY_SUFFIX}"


def template_hash(template: Mapping[str, Any] | None) -> str:
    """sha256 (16 hex digits) of a built pod template's canonical JSON."""
    blob = json.dumps(template or {}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def deployment_template_hash(deployment: Mapping[str, Any] | None) -> str | None:
    """The template hash a Deployment was stamped with, or None."""
    value = _annotations(deployment or {}).get(ANNOTATION_TEMPLATE_HASH)
    return str(value) if value is not None else None


def _with_annotation(obj: dict[str, Any], key: str, value: str | None) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    ann = {k: v for k, v in (meta.get("annotations") or {}).items()
           if k not in (key, ANNOTATION_APPLIED_HASH)}
    if value is not None:
        ann[key] = value
    if ann:
        meta["annotations"] = dict(sorted(ann.items()))
    else:
        meta.pop("annotations", None)
    return obj


def stamp_template_hash(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the built ``deployment`` stamped with its pod template's hash."""
    out = copy.deepcopy(dict(deployment))
    return _with_annotation(out, ANNOTATION_TEMPLATE_HASH,
                            template_hash(out["spec"].get("template")))


def stable_keeping_template(desired: Mapping[str, Any], observed: Mapping[str, Any]
                            ) -> dict[str, Any]:
    """The stable Deployment as ``desired`` has it, with the pod template (and its
    hash) of the ``observed`` one: what it runs stays as it is."""
    out = copy.deepcopy(dict(desired))
    out["spec"]["template"] = copy.deepcopy((observed.get("spec") or {}).get("template") or {})
    return _with_annotation(out, ANNOTATION_TEMPLATE_HASH, deployment_template_hash(observed))


def build_canary_deployment(stable: Mapping[str, Any], replicas: int, *, routed: bool = False
                            ) -> dict[str, Any]:
    """``<name>-canary`` from the built (and template-hash stamped) stable Deployment.

    ``routed``: an HTTPRoute splits the requests (see :mod:`.httproute`); the pods then
    lack ``app.kubernetes.io/name``, so the endpoint's Service does not select them.
    The selector (immutable) is the same either way."""
    out = copy.deepcopy(dict(stable))
    meta = out["metadata"]
    name = str(meta["name"])
    meta["name"] = canary_name(name)
    spec = out["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {LABEL_CANARY: "true", LABEL_INSTANCE: name}}
    tmeta = spec["template"].setdefault("metadata", {})
    labels = dict(tmeta.get("labels") or {}) | {LABEL_CANARY: "true"}
    if routed:
        labels.pop(LABEL_NAME, None)
    tmeta["labels"] = dict(sorted(labels.items()))
    tmeta["annotations"] = dict(sorted((dict(tmeta.get("annotations") or {})
                                        | {ANNOTATION_CANARY: "true"}).items()))
    return _with_annotation(out, ANNOTATION_TEMPLATE_HASH, deployment_template_hash(stable))


def is_canary_pod(pod: Mapping[str, Any]) -> bool:
    """Whether a pod is a canary's (by its annotation, which the slim pod cache keeps)."""
    return _annotations(pod).get(ANNOTATION_CANARY) == "true"
