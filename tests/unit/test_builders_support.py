"""Shared helpers of the builder and diff tests (endpoints, recipes, structural checks).

Lives in a ``test_builders_*`` module so it stays with the tests it serves; the other
modules import it by name (tests/unit is on sys.path, like recipes_fixtures).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.builders import ChosenRecipe, OperatorSettings
from aim_controller.builders.quantity import parse_quantity
from aim_controller.recipes.identity import ConfigId

SPEC_EXAMPLES = Path(__file__).resolve().parents[1] / "integration" / "spec_examples"
NAMESPACE = "aim-engine"
UID = "0b5ab3f0-5d4e-4f0e-9a57-3c0f2b8a1e11"
DEFAULT_MODEL = {"id": "Qwen/Qwen2.5-7B-Instruct"}

QWEN32_ARGS_TP4 = (
    "--model", "Qwen/Qwen3-32B", "--dtype", "bfloat16", "--tensor-parallel-size", "4",
    "--max-model-len", "32768", "--gpu-memory-utilization", "0.9",
    "--trust-remote-code", "true", "--port", "8000",
)
GPU_TOLERATION = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def endpoint(spec: dict[str, Any] | None = None, *, name: str = "qwen-demo",
             namespace: str = NAMESPACE, uid: str = UID) -> AIMEndpoint:
    """An AIMEndpoint as the reconciler sees it (metadata filled by the API server)."""
    body = {"model": dict(DEFAULT_MODEL)} | (spec or {})
    return AIMEndpoint.model_validate({
        "apiVersion": "aim.engine.amd.com/v1alpha1",
        "kind": "AIMEndpoint",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1},
        "spec": body,
    })


def from_document(doc: dict[str, Any]) -> AIMEndpoint:
    """A spec example as stored by the API server: namespace and uid filled in, and the
    model merged into fragments that lack it."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta.setdefault("namespace", NAMESPACE)
    meta.setdefault("uid", UID)
    doc["spec"].setdefault("model", dict(DEFAULT_MODEL))
    return AIMEndpoint.model_validate(doc)


def spec_example_endpoints() -> Iterator[tuple[str, AIMEndpoint]]:
    """(id, endpoint) for every AIMEndpoint YAML example of the product spec."""
    for path in sorted(SPEC_EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("kind") == "AIMEndpoint":
                yield f"{path.stem}[{i}]", from_document(doc)


def chosen(**overrides: Any) -> ChosenRecipe:
    """The spec's 4-GPU qwen-32b-mi300x-bf16 configuration, as the recipe engine chose it."""
    fields: dict[str, Any] = {
        "recipe_name": "qwen-32b-mi300x-bf16",
        "recipe_namespace": NAMESPACE,
        "source": "namespace",
        "hardware": "MI300X",
        "device_ids": ("74a1", "74b5"),
        "precision": "bfloat16",
        "backend": "vllm",
        "gpu_count": 4,
        "args": QWEN32_ARGS_TP4,
        "requests": {"amd.com/gpu": "4", "memory": "64Gi", "cpu": "16"},
        "limits": {"amd.com/gpu": "4", "memory": "128Gi", "cpu": "32"},
        "tolerations": (GPU_TOLERATION,),
        "estimated": False,
        "selection_record": {"recipeName": "qwen-32b-mi300x-bf16", "gpuCount": 4,
                             "candidates": [{"recipe": "qwen-32b-mi300x-bf16", "score": 1.0}]},
    }
    fields |= overrides
    return ChosenRecipe(**with_config_id(fields))


def with_config_id(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with the recipe_name/recipe_namespace/source/gpu_count keys folded
    into the one ``id`` (a ConfigId), so tests can override any of them by name."""
    out = dict(fields)
    out["id"] = ConfigId(out.pop("source"), out.pop("recipe_namespace") or "",
                         out.pop("recipe_name"), out.pop("gpu_count"))
    return out


def chosen_1gpu(**overrides: Any) -> ChosenRecipe:
    """A built-in single-GPU configuration without --port or --tensor-parallel-size."""
    fields: dict[str, Any] = {
        "recipe_name": "qwen2.5-7b-instruct-mi300x",
        "recipe_namespace": None,
        "source": "builtin",
        "gpu_count": 1,
        "args": ("--model", "Qwen/Qwen2.5-7B-Instruct", "--max-model-len", "8192"),
        "requests": {"amd.com/gpu": "1", "memory": "32Gi", "cpu": "4"},
        "limits": {"amd.com/gpu": "1", "memory": "64Gi", "cpu": "8"},
    }
    return chosen(**(fields | overrides))


SETTINGS = OperatorSettings()


def by_kind(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {len(hits)}"
    return hits[0]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


# --- structural sanity ----------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _check_key(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(f"bad key prefix {key!r}")
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errors.append(f"bad key name {key!r}")
    return errors


def _check_plain_json(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in
                ([] if isinstance(k, str) else [f"{where}: non-string key {k!r}"])
                + _check_plain_json(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _check_plain_json(v, f"{where}[{i}]")]
    if value is None or isinstance(value, str | int | float | bool):
        return []
    return [f"{where}: {type(value).__name__} is not a JSON type"]


def structural_problems(obj: dict[str, Any]) -> list[str]:
    """What the API server would reject (or we never want to send) in ``obj``."""
    errors = _check_plain_json(obj, obj.get("kind", "?"))
    for f in ("apiVersion", "kind", "metadata"):
        if f not in obj:
            errors.append(f"missing {f}")
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    if not meta.get("namespace"):
        errors.append("missing namespace")
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        errors.append(f"bad name {name!r}")
    if obj.get("kind") in ("Service",) and (len(name) > 63 or not _DNS1035.match(name)):
        errors.append(f"bad Service name {name!r}")
    for k, v in meta.get("labels", {}).items():
        errors += _check_key(k)
        if not isinstance(v, str) or not _LABEL_VALUE.match(v) or len(v) > 63:
            errors.append(f"bad label value {k}={v!r}")
    for k, v in meta.get("annotations", {}).items():
        errors += _check_key(k)
        if not isinstance(v, str):
            errors.append(f"annotation {k} is not a string")
    refs = meta.get("ownerReferences", [])
    if sum(1 for r in refs if r.get("controller")) > 1:
        errors.append("more than one controller reference")
    for r in refs:
        if set(r) < {"apiVersion", "kind", "name", "uid"}:
            errors.append(f"incomplete ownerReference {r}")
    if obj.get("kind") == "ConfigMap":
        for k in obj.get("data", {}):
            if not _CONFIGMAP_KEY.match(k) or len(k) > 253:
                errors.append(f"bad ConfigMap key {k!r}")
        if sum(len(v) for v in obj.get("data", {}).values()) > 1 << 20:
            errors.append("ConfigMap larger than 1 MiB")
    if obj.get("kind") == "Deployment":
        errors += _deployment_problems(obj)
    if obj.get("kind") == "Service":
        for p in obj["spec"]["ports"]:
            if len(p["name"]) > 15 or not _PORT_NAME.match(p["name"]):
                errors.append(f"bad port name {p['name']!r}")
    return errors


def _deployment_problems(obj: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    spec = obj["spec"]
    tpl = spec["template"]
    selector = spec["selector"]["matchLabels"]
    if not selector.items() <= tpl["metadata"]["labels"].items():
        errors.append("selector does not match the template labels")
    pod = tpl["spec"]
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        if not _DNS1123_LABEL.match(c["name"]):
            errors.append(f"bad container name {c['name']!r}")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                errors.append(f"mount of unknown volume {m['name']}")
        for p in c.get("ports", []):
            if len(p["name"]) > 15 or not _PORT_NAME.match(p["name"]):
                errors.append(f"bad port name {p['name']!r}")
        req, lim = c["resources"].get("requests", {}), c["resources"].get("limits", {})
        for r, q in req.items():
            if r in lim and parse_quantity(lim[r]) < parse_quantity(q):
                errors.append(f"{r}: limit {lim[r]} < request {q}")
        if req.get("amd.com/gpu") != lim.get("amd.com/gpu"):
            errors.append("amd.com/gpu request != limit")
    budget = Fraction(0)
    for c in pod["containers"]:
        sp = c.get("startupProbe")
        if sp:
            budget = max(budget, Fraction(sp["periodSeconds"] * sp["failureThreshold"]))
    if spec["progressDeadlineSeconds"] < budget:
        errors.append("progressDeadlineSeconds shorter than the startup window")
    return errors
