"""The generated CRDs on the real kube-apiserver: they install, accept every example of
the spec (without pruning anything), default like the pydantic models, reject the
invalid-object corpus naming the offending field, explain themselves, and serve the
scale subresource and printer columns."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invalid_objects import Case, load_cases
from localcluster import LocalCluster
from pydantic import BaseModel

from aim_controller.api.v1alpha1 import (
    AIM_CACHE,
    AIM_ENDPOINT,
    AIM_RECIPE,
    API_VERSION,
    GROUP,
    AIMCache,
    AIMCacheStatus,
    AIMEndpoint,
    AIMEndpointStatus,
    AIMRecipe,
    AIMRecipeStatus,
    RecipeSelector,
)

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parent / "spec_examples"
MODELS: dict[str, type[BaseModel]] = {
    "AIMEndpoint": AIMEndpoint,
    "AIMRecipe": AIMRecipe,
    "AIMCache": AIMCache,
}
CASES = load_cases()
FIELD_MANAGER = "aim-crd-tests"
NOW = "2026-01-02T03:04:05Z"


@pytest.fixture(scope="module")
def corpus_ns(crds: LocalCluster) -> Iterator[str]:
    """One namespace for the whole corpus (dry runs, and uniquely named real objects)."""
    name = f"crd-corpus-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def create(c: LocalCluster, ns: str, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
    args = ["create", "-n", ns, "-o", "json"]
    if dry_run:
        args.append("--dry-run=server")
    return c.kubectl(*args, "-f", "-", input=json.dumps(obj), check=False)


def update(c: LocalCluster, ns: str, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
    """Server-side apply of the whole object (one field manager, so it owns every field)."""
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-n", ns, "-o", "json"]
    if dry_run:
        args.append("--dry-run=server")
    return c.kubectl(*args, "-f", "-", input=json.dumps(obj), check=False)


def get(c: LocalCluster, ns: str, resource: str, name: str) -> dict[str, Any]:
    res = c.kubectl("get", "-n", ns, resource, name, "-o", "json")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def prune_empty(value: Any) -> Any:
    """Drop empty maps and lists: the server defaults a map only where the schema says
    so (``default: {}``), never a list."""
    if isinstance(value, dict):
        items = {k: prune_empty(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [prune_empty(v) for v in value]
    return value


def assert_kept(sent: Any, stored: Any, path: str = "") -> None:
    """Everything sent is stored as sent: no field was pruned as unknown."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), path
        for key, value in sent.items():
            assert key in stored, f"{path}.{key} was pruned by the API server"
            assert_kept(value, stored[key], f"{path}.{key}")
    else:
        assert sent == stored, f"{path}: sent {sent!r}, stored {stored!r}"


# --- installation -----------------------------------------------------------------------


def test_crds_are_established_and_structural(crds: LocalCluster) -> None:
    for names in (AIM_ENDPOINT, AIM_RECIPE, AIM_CACHE):
        crd = json.loads(crds.kubectl("get", "crd", names.crd_name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
        assert "NonStructuralSchema" not in conditions, conditions
        assert crd["status"]["acceptedNames"]["shortNames"] == list(names.short_names)


def test_api_resources_short_names_and_category(crds: LocalCluster) -> None:
    out = crds.kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"aimendpoints", "aimrecipes", "aimcaches"}
    for plural, short in (("aimendpoints", "aiep"), ("aimrecipes", "airc"), ("aimcaches", "aich")):
        assert short in rows[plural].split()
        assert "aim-engine" in rows[plural]


# --- the spec's examples --------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_spec_example_is_accepted_as_written(
    crds: LocalCluster, namespace: str, path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"].pop("namespace", None)  # each example gets a fresh namespace
        res = crds.kubectl("create", "-n", namespace, "-o", "json", "-f", "-",
                           input=json.dumps(doc), check=False)
        assert res.returncode == 0, f"{path.name}: {res.stderr}"
        stored = json.loads(res.stdout)
        assert_kept(doc["spec"], stored["spec"], f"{path.name}:spec")
        if doc["kind"] in MODELS:
            # What the server stores (with its defaults) is what the controller will read.
            MODELS[doc["kind"]].model_validate(stored)


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "AIMEndpoint", "spec": {"model": {"id": "Qwen/Qwen2.5-7B-Instruct"}}},
        {"kind": "AIMEndpoint", "spec": {"model": {"id": "m"}, "recipe": {"autoSelect": False,
                                                                          "gpuCount": 2}}},
        {"kind": "AIMRecipe", "spec": {"modelId": "m", "hardware": "MI355X",
                                       "configurations": [{"gpuCount": 8}]}},
        {"kind": "AIMCache", "spec": {"storage": {"size": "1Ti"}, "models": [{"id": "m"}]}},
    ],
    ids=["endpoint-minimal", "endpoint-manual", "recipe-minimal", "cache-minimal"],
)
def test_server_defaults_match_model_defaults(
    crds: LocalCluster, corpus_ns: str, obj: dict[str, Any]
) -> None:
    obj = {"apiVersion": API_VERSION, "metadata": {"name": f"defaults-{uuid.uuid4().hex[:8]}"},
           **obj}
    res = create(crds, corpus_ns, obj, dry_run=True)
    assert res.returncode == 0, res.stderr
    stored = json.loads(res.stdout)
    model = MODELS[obj["kind"]]
    assert model.model_validate(stored).spec == model.model_validate(obj).spec
    # ... and the server really filled them in (the model did not just default again).
    want = model.model_validate(obj).model_dump(mode="json", exclude_none=True)["spec"]
    # (An object defaulted to {} by the server, e.g. AIMCache spec.source, is as good as
    # absent: compare both pruned.)
    assert prune_empty(want) == prune_empty(stored["spec"])


# --- the invalid-object corpus --------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_object_is_rejected_naming_the_field(
    crds: LocalCluster, corpus_ns: str, case: Case
) -> None:
    if case.updated is None:
        res = create(crds, corpus_ns, case.obj, dry_run=True)
    else:
        first = update(crds, corpus_ns, case.obj)
        assert first.returncode == 0, f"the starting object must be valid: {first.stderr}"
        res = update(crds, corpus_ns, case.updated, dry_run=True)
    assert res.returncode != 0, f"{case.id} was accepted"
    assert "is invalid" in res.stderr, res.stderr
    for text in case.expect:
        assert text in res.stderr, f"{case.id}: {text!r} not in {res.stderr}"


# --- kubectl explain, scale, get --------------------------------------------------------


def flat(text: str) -> str:
    return " ".join(text.split())


def test_explain_prints_the_model_docs(crds: LocalCluster) -> None:
    out = flat(crds.kubectl("explain", "aimendpoint.spec.recipe").stdout)
    assert flat(RecipeSelector.__doc__ or "") in out
    for name, field in RecipeSelector.model_fields.items():
        assert field.alias and field.description, name
        assert field.alias in out
        assert flat(field.description) in out, f"{field.alias}: description missing"
    assert "enum: throughput, latency, cost" in out
    schedule = flat(crds.kubectl("explain", "aimcache.spec.cleanup.schedule").stdout)
    assert "Cron schedule with five fields" in schedule
    fits = flat(crds.kubectl("explain", "aimrecipe.status.summary").stdout)
    assert "One-line fit summary" in fits


def test_kubectl_scale_sets_spec_replicas(crds: LocalCluster, corpus_ns: str) -> None:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    obj = {"apiVersion": API_VERSION, "kind": "AIMEndpoint", "metadata": {"name": name},
           "spec": {"model": {"id": "m"}, "scaling": {"minReplicas": 1, "maxReplicas": 5}}}
    assert create(crds, corpus_ns, obj).returncode == 0
    assert get(crds, corpus_ns, "aimendpoint", name)["spec"]["replicas"] == 1  # defaulted

    crds.kubectl("scale", "-n", corpus_ns, f"aimendpoint/{name}", "--replicas=3")
    assert get(crds, corpus_ns, "aimendpoint", name)["spec"]["replicas"] == 3

    crds.kubectl("patch", "-n", corpus_ns, f"aimendpoint/{name}", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {
                     "replicas": 2, "selector": "app.kubernetes.io/instance=" + name}}))
    scale = json.loads(crds.kubectl(
        "get", "--raw",
        f"/apis/{API_VERSION}/namespaces/{corpus_ns}/{AIM_ENDPOINT.plural}/{name}/scale",
    ).stdout)
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 2, "selector": f"app.kubernetes.io/instance={name}"}


def endpoint_status() -> dict[str, Any]:
    return AIMEndpointStatus.model_validate({
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                        "message": "2/2 replicas ready", "lastTransitionTime": NOW,
                        "observedGeneration": 1}],
        "replicas": 2, "readyReplicas": 2, "availableReplicas": 2,
        "selector": "app.kubernetes.io/instance=x", "url": "http://x.ns.svc:8000",
        "recipe": {
            "recipeName": "qwen-32b-mi300x-bf16", "recipeNamespace": "ns", "source": "namespace",
            "configurationIndex": 1, "gpuCount": 4, "hardware": "MI300X",
            "precision": "bfloat16", "backend": "vllm", "estimated": False, "score": 0.9,
            "reason": "best throughput that fits", "selectedAt": NOW,
            "candidates": [
                {"recipe": "qwen-32b-mi300x-bf16", "source": "namespace", "gpuCount": 4,
                 "hardware": "MI300X", "precision": "bfloat16", "backend": "vllm",
                 "verdict": "Selected", "score": 0.9, "reason": "BestScore"},
                {"recipe": "qwen-32b-mi300x-bf16", "gpuCount": 8, "hardware": "MI300X",
                 "verdict": "Rejected", "reason": "InsufficientGPUs",
                 "message": "no node has 8 free MI300X GPUs"},
            ],
        },
    }).model_dump(mode="json", exclude_none=True)


STATUSES: list[Any] = [
    pytest.param("AIMEndpoint", {"model": {"id": "Qwen/Qwen3-32B"}}, endpoint_status(),
                 ["Qwen/Qwen3-32B", "qwen-32b-mi300x-bf16", "MI300X", "4", "True", "2"],
                 id="endpoint"),
    pytest.param(
        "AIMRecipe",
        {"modelId": "Qwen/Qwen3-32B", "hardware": "MI300X", "configurations": [{"gpuCount": 4}]},
        AIMRecipeStatus.model_validate({
            "observedGeneration": 1, "valid": True, "summary": "1/1 configs fit",
            "configurations": [{"gpuCount": 4, "enabled": True, "fittingReplicas": 2,
                                "nodes": ["gpu-node-0"], "gpuModels": ["MI300X"]}],
        }).model_dump(mode="json", exclude_none=True),
        ["Qwen/Qwen3-32B", "MI300X", "bfloat16", "vllm", "true", "1/1 configs fit"],
        id="recipe",
    ),
    pytest.param(
        "AIMCache",
        {"storage": {"size": "500Gi"}},
        AIMCacheStatus.model_validate({
            "phase": "Ready", "persistentVolumeClaim": "c", "capacityBytes": 536870912000,
            "usedBytes": 1000, "lastCleanupTime": NOW,
            "models": [{"id": "Qwen/Qwen3-32B", "state": "Ready", "sizeBytes": 1000,
                        "lastUsedTime": NOW}],
        }).model_dump(mode="json", exclude_none=True),
        ["500Gi", "Ready"],
        id="cache",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "status", "columns"), STATUSES)
def test_status_written_by_the_models_is_accepted_and_printed(
    crds: LocalCluster, corpus_ns: str, kind: str, spec: dict[str, Any],
    status: dict[str, Any], columns: list[str],
) -> None:
    name = f"status-{uuid.uuid4().hex[:8]}"
    obj = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    assert create(crds, corpus_ns, obj).returncode == 0
    resource = kind.lower()
    crds.kubectl("patch", "-n", corpus_ns, f"{resource}/{name}", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": status}))
    stored = get(crds, corpus_ns, resource, name)
    assert_kept(status, stored["status"], "status")
    assert MODELS[kind].model_validate(stored).model_dump(mode="json", exclude_none=True)[
        "status"] == status

    table = crds.kubectl("get", "-n", corpus_ns, resource, name).stdout.splitlines()
    row = re.split(r"\s{2,}", table[1].strip())
    assert row[0] == name
    assert row[1:1 + len(columns)] == columns, table


def test_category_lists_all_three_kinds(crds: LocalCluster, namespace: str) -> None:
    for path in ("aimendpoint-qwen-32b-production.yaml", "aimrecipe-qwen-32b-mi300x-bf16.yaml",
                 "aimcache-global-model-cache.yaml"):
        doc = yaml.safe_load((EXAMPLES / path).read_text())
        doc["metadata"].pop("namespace")
        crds.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(doc))
    out = crds.kubectl("get", "aim-engine", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(out) == [
        f"aimcache.{GROUP}/global-model-cache",
        f"aimendpoint.{GROUP}/qwen-32b-production",
        f"aimrecipe.{GROUP}/qwen-32b-mi300x-bf16",
    ]
    for short in ("aiep", "airc", "aich"):
        assert len(crds.kubectl("get", short, "-n", namespace, "-o", "name").stdout.split()) == 1
