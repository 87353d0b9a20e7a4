"""Property tests of the semantic diff over generated endpoints and recipes.

* ``needs_apply(d, d)`` is False for every built child (and for arbitrary JSON trees);
* ``needs_apply(d, server_defaulted(d))`` is False, where ``server_defaulted``
  simulates the API server: added defaults and status, dropped omitempty zero
  values, canonicalized quantities, merge-keyed lists reordered and extended,
  metadata filled in, apiVersion/kind stripped as in list responses;
* changing any leaf of desired in observed makes ``needs_apply`` True;
* and ``desired_children`` is deterministic for every generated input.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_builders_support import endpoint

from aim_controller.api.v1alpha1 import RECIPE_SOURCES, AIMEndpoint, RecipeSource
from aim_controller.builders import (
    ChosenRecipe,
    OperatorSettings,
    desired_children,
    needs_apply,
    stamp_applied_hash,
)
from aim_controller.builders.diff import is_quantity_path
from aim_controller.builders.quantity import format_quantity, try_parse_quantity
from aim_controller.recipes.identity import ConfigId

Json = Any
Path = tuple[Any, ...]
MERGE_KEYED = {"containers": "name", "env": "name", "volumes": "name",
               "volumeMounts": "mountPath", "ownerReferences": "uid"}

# --- generated inputs ------------------------------------------------------------------

quantities = st.sampled_from(["1", "4", "16", "500m", "0.5", "8000m", "32Gi", "64Gi", "100G",
                              "1536Mi", "128Gi", "1e3"])
durations = st.sampled_from(["30s", "60s", "300s", "5m", "1h30m", "2h", "250ms"])


@st.composite
def endpoint_specs(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(0, 4))
    hi = draw(st.integers(max(lo, 1), 6))
    spec: dict[str, Any] = {
        "model": {"id": draw(st.sampled_from(["Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B",
                                              "x" * 70 + "/long-model"]))},
        "replicas": draw(st.integers(0, 6)),
        "scaling": {"minReplicas": lo, "maxReplicas": hi},
        "service": {"type": draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"])),
                    "port": draw(st.sampled_from([80, 8000, 8080]))},
    }
    if draw(st.booleans()):
        spec["model"]["version"] = draw(st.sampled_from(["latest", "main", "abc123"]))
    for field in ("targetCPUUtilization", "targetMemoryUtilization", "targetGPUUtilization"):
        if draw(st.booleans()):
            spec["scaling"][field] = draw(st.integers(1, 100))
    for field in ("scaleUpDelay", "scaleDownDelay"):
        if draw(st.booleans()):
            spec["scaling"][field] = draw(durations)
    if draw(st.booleans()):
        spec["service"]["annotations"] = {"example.com/a": draw(st.text(max_size=10))}
    if draw(st.booleans()):
        spec["resources"] = {k: draw(quantities) for k in ("memory", "cpu")
                             if draw(st.booleans())}
    if draw(st.booleans()):
        spec["cache"] = {"enabled": True, "retainOnDelete": draw(st.booleans()),
                         "size": draw(st.sampled_from(["100Gi", "1Ti", 1073741824]))}
        if draw(st.booleans()):
            spec["cache"]["storageClass"] = "fast-ssd"
    if draw(st.booleans()):
        spec["monitoring"] = {"enabled": True,
                              "prometheus": {"enabled": draw(st.booleans())},
                              "grafana": {"enabled": draw(st.booleans())}}
    if draw(st.booleans()):
        spec["security"] = {"serviceAccount": {"create": draw(st.booleans())},
                            "podSecurityContext": {"runAsUser": draw(st.integers(0, 2000)),
                                                   "supplementalGroups": [44, 992]}}
    strategy = draw(st.sampled_from([None, "Recreate", "RollingUpdate"]))
    if strategy == "Recreate":
        spec["deployment"] = {"strategy": {"type": "Recreate"}}
    elif strategy == "RollingUpdate":
        spec["deployment"] = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": draw(st.sampled_from([0, 1, "25%"])), "maxUnavailable": 1}}}
    return spec


@st.composite
def chosen_recipes(draw: st.DrawFn) -> ChosenRecipe:
    gpus = draw(st.sampled_from([1, 2, 4, 8]))
    args: list[str] = ["--dtype", "bfloat16"]
    if draw(st.booleans()):
        args += ["--port", draw(st.sampled_from(["8000", "9000"]))]
    if draw(st.booleans()):
        args += ["--tensor-parallel-size", str(draw(st.sampled_from([1, gpus])))]
    source: RecipeSource = draw(st.sampled_from(RECIPE_SOURCES))
    return ChosenRecipe(
        id=ConfigId(source, "ns" if source == "namespace" else "",
                    draw(st.sampled_from(["r1", "r2"])), gpus),
        hardware="MI300X",
        device_ids=tuple(draw(st.lists(st.sampled_from(["74a1", "74b5", "74a5"]), max_size=3))),
        precision="bfloat16",
        backend=draw(st.sampled_from(["vllm", "sglang"])),
        args=tuple(args),
        requests={"amd.com/gpu": str(gpus), "memory": draw(quantities), "cpu": "4"},
        limits={"amd.com/gpu": str(gpus), "cpu": draw(st.sampled_from(["2", "8"]))},
        tolerations=tuple(draw(st.lists(st.sampled_from([
            {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"},
        ]), max_size=2))),
        estimated=source == "estimated",
        env=draw(st.dictionaries(st.sampled_from(["A", "B", "HF_HOME"]), st.text(max_size=5),
                                 max_size=2)),
        selection_record={"recipeName": "r", "score": draw(st.floats(0, 1))},
    )


@st.composite
def children(draw: st.DrawFn) -> list[dict[str, Any]]:
    ep: AIMEndpoint = endpoint(draw(endpoint_specs()), name=draw(st.sampled_from(["a", "qwen"])))
    s = OperatorSettings()
    objs = desired_children(ep, draw(chosen_recipes()), s,
                            monitoring_available=draw(st.booleans()))
    if draw(st.booleans()):
        objs = [stamp_applied_hash(o) for o in objs]
    return objs


# --- simulated API server -------------------------------------------------------------


def _is_zero(v: Json) -> bool:
    return v is None or v is False or (not isinstance(v, bool) and v == 0) or v in ("", {}, [])


def _respell(value: Json, rng: random.Random) -> Json:
    q = try_parse_quantity(value)
    if q is None or q < 0:
        return value
    try:
        return format_quantity(q, binary=rng.random() < 0.5)
    except ValueError:
        return value


def _default(value: Json, path: Path, rng: random.Random) -> Json:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if _is_zero(v) and rng.random() < 0.5:
                continue  # omitempty
            out[k] = _default(v, (*path, k), rng)
        if rng.random() < 0.3:
            out[f"defaulted{rng.randrange(1000)}x"] = rng.choice([0, "Always", {"a": 1}, [1]])
        return out
    if isinstance(value, list):
        items = [_default(v, (*path, "[]"), rng) for v in value]
        key = MERGE_KEYED.get(path[-1]) if path else None
        if key and all(isinstance(i, dict) and key in i for i in items):
            rng.shuffle(items)
            items.insert(rng.randrange(len(items) + 1), {key: f"injected-{rng.randrange(99)}"})
        return items
    if is_quantity_path(tuple(p for p in path if isinstance(p, str))):
        return _respell(value, rng)
    return value


def server_defaulted(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = _default(copy.deepcopy(obj), (), rng)
    out.pop("apiVersion", None)
    out.pop("kind", None)
    meta = out.setdefault("metadata", {})
    meta |= {"uid": "0000", "resourceVersion": "77", "generation": 2,
             "creationTimestamp": "2025-01-01T00:00:00Z",
             "managedFields": [{"manager": "aim-controller", "operation": "Apply"}]}
    meta.setdefault("labels", {})["added-by"] = "webhook"
    out["status"] = {"observedGeneration": 2}
    return out


# --- leaves ----------------------------------------------------------------------------


def leaves(value: Json, path: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path


def compared(path: Path) -> bool:
    """Leaves needs_apply looks at (identity fields are not)."""
    if path[0] in ("apiVersion", "kind"):
        return False
    return not (path[0] == "metadata" and path[1] not in ("labels", "annotations",
                                                            "ownerReferences"))


def mutate(value: Json) -> Json:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if value is None:
        return "x"
    return f"{value}1"  # a different string; a different value if a quantity


def set_at(obj: Json, path: Path, value: Json) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def get_at(obj: Json, path: Path) -> Json:
    for p in path:
        obj = obj[p]
    return obj


# --- properties ------------------------------------------------------------------------

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(children())
def test_an_object_needs_no_apply_against_itself(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        assert not needs_apply(o, copy.deepcopy(o)), o["kind"]


@PROPS
@given(children(), st.randoms(use_true_random=False))
def test_server_defaulting_needs_no_apply(objs: list[dict[str, Any]], rng: random.Random) -> None:
    for o in objs:
        observed = server_defaulted(o, rng)
        assert not needs_apply(o, observed), (o["kind"], observed)


@PROPS
@given(children())
def test_changing_any_leaf_needs_apply(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        for path in leaves(o):
            if not compared(path):
                continue
            observed = copy.deepcopy(o)
            set_at(observed, path, mutate(get_at(o, path)))
            assert needs_apply(o, observed), (o["kind"], path)


@PROPS
@given(children(), st.data())
def test_removing_a_desired_field_needs_apply(objs: list[dict[str, Any]], data: st.DataObject
                                              ) -> None:
    for o in objs:
        paths = [p for p in leaves(o) if compared(p) and not _is_zero(get_at(o, p))]
        path = data.draw(st.sampled_from(paths))
        observed = copy.deepcopy(o)
        parent = get_at(observed, path[:-1])
        del parent[path[-1]]
        assert needs_apply(o, observed), (o["kind"], path)


@PROPS
@given(endpoint_specs(), chosen_recipes(), st.booleans())
def test_desired_children_is_deterministic(spec: dict[str, Any], c: ChosenRecipe,
                                           available: bool) -> None:
    a = desired_children(endpoint(spec), c, OperatorSettings(), monitoring_available=available)
    b = desired_children(endpoint(copy.deepcopy(spec)), copy.deepcopy(c), OperatorSettings(),
                         monitoring_available=available)
    assert json.dumps(a) == json.dumps(b)


json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8) \
    | st.floats(allow_nan=False, allow_infinity=False)
json_trees = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=4), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["spec", "data", "metadata", "x"]), json_trees,
                       max_size=4))
def test_arbitrary_trees_need_no_apply_against_themselves(obj: dict[str, Any]) -> None:
    assert not needs_apply(obj, copy.deepcopy(obj))
