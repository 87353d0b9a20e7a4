"""Semantic comparison of a desired child with the observed one: skip no-op applies.

``needs_apply(desired, observed)`` is True when

1. ``observed`` is None (the child does not exist), or
2. the hash differs: ``observed`` carries an ``aim.engine.amd.com/applied-hash``
   annotation and it is not :func:`applied_hash` of ``desired``. This catches what
   a subset check cannot: a field *removed* from desired (say, ``spec.replicas`` once
   an autoscaler owns it) is still present in observed, or
3. the subset check fails: some field set in ``desired`` is missing from or
   different in ``observed``. This catches changes made by others (kubectl edit,
   another manager) to fields we own.

Protocol for the reconciler: apply ``stamp_applied_hash(desired)`` (a copy of
desired with the annotation) and gate it with ``needs_apply`` (either form of
desired works: the hash ignores its own annotation).

Subset rules (modelled on what the API server does to an applied object):

* Only fields present in desired are compared; observed may have more (server
  defaults, status, other managers' fields). Top-level ``apiVersion``/``kind``
  (list items lack them), ``status`` and, of ``metadata``, everything except
  ``labels``, ``annotations`` and ``ownerReferences`` are ignored.
* A zero value in desired (``{}``, ``[]``, ``""``, ``0``, ``False``, None) matches an
  absent field: the API server drops omitempty zero values.
* Quantities (values under ``requests``/``limits``/``hard``/``capacity``,
  ``sizeLimit``, ``averageValue``, a metric target's ``value``) compare by value:
  "1000m" == "1", "0.5" == "500m", "1Gi" == "1073741824".
* Otherwise scalars compare by type and value: an int-or-string port 8000 is not
  "8000" (the API server keeps the distinction); named ports stay strings; ints
  and floats compare numerically; booleans are never numbers.
* Lists of maps with a merge key are matched by key, not position (containers,
  env, volumes, imagePullSecrets: ``name``; container ports: ``containerPort`` +
  ``protocol``; Service ports: ``port`` + ``protocol``; volumeMounts:
  ``mountPath``; tolerations: all their fields; ownerReferences: ``uid``), and
  observed may hold extra items (keys are unique in desired, as the API server
  requires). Every other list is compared element by element and must have the
  same length (atomic lists such as args are replaced whole by an apply).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .meta import ANNOTATION_APPLIED_HASH
from .quantity import try_parse_quantity

__all__ = [
    "ANNOTATION_APPLIED_HASH",
    "applied_hash",
    "covers",
    "is_quantity_path",
    "needs_apply",
    "stamp_applied_hash",
]

Path = tuple[str, ...]

_QUANTITY_MAPS = frozenset({"requests", "limits", "hard", "capacity", "allocatable"})
_QUANTITY_FIELDS = frozenset({"sizeLimit", "averageValue"})
_METADATA_FIELDS = ("labels", "annotations", "ownerReferences")
_IGNORED_TOP = frozenset({"apiVersion", "kind", "status"})


def _field_key(*fields: str, defaults: Mapping[str, Any] | None = None
               ) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    d = defaults or {}
    return lambda item: tuple(item.get(f) or d.get(f) or "" for f in fields)


def _port_key(item: Mapping[str, Any]) -> tuple[Any, ...]:
    proto = item.get("protocol") or "TCP"
    if "containerPort" in item:
        return ("containerPort", item["containerPort"], proto)
    return ("port", item.get("port"), proto)


_BY_NAME = _field_key("name")
_MERGE_KEYS: Mapping[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {
    "containers": _BY_NAME,
    "initContainers": _BY_NAME,
    "ephemeralContainers": _BY_NAME,
    "env": _BY_NAME,
    "volumes": _BY_NAME,
    "imagePullSecrets": _BY_NAME,
    "volumeMounts": _field_key("mountPath"),
    "ports": _port_key,
    "tolerations": _field_key("key", "operator", "value", "effect", "tolerationSeconds",
                              defaults={"operator": "Equal"}),
    "ownerReferences": _field_key("uid"),
}


def is_quantity_path(path: Path) -> bool:
    """Whether the value at ``path`` (field names; list items add ``"[]"``) is a
    resource quantity."""
    if not path:
        return False
    last = path[-1]
    if last in _QUANTITY_FIELDS:
        return True
    if len(path) >= 2 and path[-2] in _QUANTITY_MAPS:
        return True
    return last == "value" and len(path) >= 2 and path[-2] == "target"


def _is_zero(value: Any) -> bool:
    """The values Go's omitempty drops, so the API server may not echo them back."""
    if value is None or value is False:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value) == 0
    return False


def _scalar_equal(d: Any, o: Any, path: Path) -> bool:
    if isinstance(d, bool) or isinstance(o, bool):
        return isinstance(d, bool) and isinstance(o, bool) and d == o
    if is_quantity_path(path):
        qd, qo = try_parse_quantity(d), try_parse_quantity(o)
        if qd is not None and qo is not None:
            return qd == qo
    if isinstance(d, int | float) and isinstance(o, int | float):
        return d == o
    return type(d) is type(o) and d == o


def covers(desired: Any, observed: Any, path: Path = ()) -> bool:
    """Whether ``observed`` has every field of ``desired`` with an equal value (the
    subset rules of the module docstring; ``path`` is where we are)."""
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return observed is None and _is_zero(desired)
        for key, dv in desired.items():
            if key not in observed or observed[key] is None:
                if not _is_zero(dv):
                    return False
                continue
            if not covers(dv, observed[key], (*path, key)):
                return False
        return True
    if isinstance(desired, list | tuple):
        if observed is None:
            return not desired
        if not isinstance(observed, list | tuple):
            return False
        return _covers_list(desired, observed, path)
    if observed is None:
        return _is_zero(desired)
    return _scalar_equal(desired, observed, path)


def _covers_list(desired: Sequence[Any], observed: Sequence[Any], path: Path) -> bool:
    key_of = _MERGE_KEYS.get(path[-1]) if path else None
    item_path = (*path, "[]")
    if key_of is not None and all(isinstance(i, Mapping) for i in desired):
        index: dict[tuple[Any, ...], Any] = {}
        for o in observed:
            if isinstance(o, Mapping):
                index.setdefault(key_of(o), o)
        for d in desired:
            o = index.get(key_of(d))
            if o is None or not covers(d, o, item_path):
                return False
        return True
    if len(desired) != len(observed):
        return False
    return all(covers(d, o, item_path) for d, o in zip(desired, observed, strict=True))


def _without_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without the applied-hash annotation (and without an annotations map
    left empty), so stamped and unstamped forms hash alike."""
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, Mapping) and "annotations" in meta:
        meta = dict(meta)
        ann = {k: v for k, v in (meta["annotations"] or {}).items() if k != ANNOTATION_APPLIED_HASH}
        if ann:
            meta["annotations"] = ann
        else:
            del meta["annotations"]
        out["metadata"] = meta
    return out


def applied_hash(desired: Mapping[str, Any]) -> str:
    """sha256 (hex) of desired's canonical JSON (sorted keys, no whitespace), ignoring
    the applied-hash annotation itself. Stable across processes and runs."""
    canonical = json.dumps(
        _without_hash(desired), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _copy_json(v: Any) -> Any:
    # copy.deepcopy's memo and dispatch cost ~3x this for the JSON-shaped desired objects.
    t = type(v)
    if t is dict:
        return {k: _copy_json(x) for k, x in v.items()}
    if t is list:
        return [_copy_json(x) for x in v]
    if t in (str, int, float, bool) or v is None:
        return v
    return copy.deepcopy(v)


def stamp_applied_hash(desired: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``desired`` annotated with its :func:`applied_hash`."""
    out: dict[str, Any] = _copy_json(dict(desired))
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations[ANNOTATION_APPLIED_HASH] = applied_hash(desired)
    meta["annotations"] = dict(sorted(annotations.items()))
    return out


def _covers_object(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> bool:
    if not isinstance(observed, Mapping):
        return False
    for key, dv in desired.items():
        if key in _IGNORED_TOP:
            continue
        if key == "metadata" and isinstance(dv, Mapping):
            om = observed.get("metadata")
            om = om if isinstance(om, Mapping) else {}
            for f in _METADATA_FIELDS:
                if f in dv and not covers(dv[f], om.get(f), ("metadata", f)):
                    return False
            continue
        if not covers({key: dv}, observed):
            return False
    return True


def _annotation(obj: Mapping[str, Any], key: str) -> Any:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    return annotations.get(key) if isinstance(annotations, Mapping) else None


def needs_apply(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """True when applying ``desired`` could change ``observed`` (see the module
    docstring: missing, hash differs, or subset mismatch)."""
    if observed is None:
        return True
    have = _annotation(observed, ANNOTATION_APPLIED_HASH)
    if have is not None:
        # A stamped desired carries its hash already (the hash ignores its own annotation).
        want = _annotation(desired, ANNOTATION_APPLIED_HASH) or applied_hash(desired)
        if have != want:
            return True
    # A stamped desired also requires the stamp itself to be present.
    return not _covers_object(desired, observed)
