"""The v1alpha1 models: they parse every example of the spec, round-trip, and default
the way the spec and the CRD say."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from aim_controller.api.v1alpha1 import (
    API_VERSION,
    DEFAULT_GPU_UTILIZATION_METRIC,
    AIMCache,
    AIMCacheStatus,
    AIMEndpoint,
    AIMEndpointStatus,
    AIMRecipe,
    AIMRecipeStatus,
    CachedModelStatus,
    Condition,
    RecipeCandidate,
    RecipeConfigurationStatus,
    RecipeSelection,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "integration" / "spec_examples"
SPEC = Path("/work/shared/spec/aim-engine-operator.md")
MODELS: dict[str, type[BaseModel]] = {
    "AIMEndpoint": AIMEndpoint,
    "AIMRecipe": AIMRecipe,
    "AIMCache": AIMCache,
}


def example_docs() -> list[Any]:
    params = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            if doc["kind"] in MODELS:
                params.append(pytest.param(doc, id=f"{path.stem}-{i}"))
    return params


def test_examples_cover_every_kind() -> None:
    kinds = [p.values[0]["kind"] for p in example_docs()]
    assert kinds.count("AIMEndpoint") == 7
    assert kinds.count("AIMRecipe") == 2
    assert kinds.count("AIMCache") == 1


@pytest.mark.skipif(not SPEC.exists(), reason="product spec not available here")
def test_examples_are_the_specs() -> None:
    """Every YAML example of the spec is in spec_examples, verbatim but for the model id
    merged into the two fragments."""
    text = SPEC.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    blocks += re.findall(r"<< EOF[^\n]*\n(.*?\n)EOF\n", text, re.S)
    want = []
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            if doc and doc["kind"] in (*MODELS, "ResourceQuota"):
                if doc["kind"] == "AIMEndpoint" and "model" not in doc["spec"]:
                    doc["spec"]["model"] = {"id": "Qwen/Qwen2.5-7B-Instruct"}
                want.append(doc)
    have = [
        d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]
    assert len(want) == 11
    assert sorted(json.dumps(d, sort_keys=True) for d in want) == sorted(
        json.dumps(d, sort_keys=True) for d in have
    )


@pytest.mark.parametrize("doc", example_docs())
def test_spec_example_parses_and_round_trips(doc: dict[str, Any]) -> None:
    model = MODELS[doc["kind"]]
    obj = model.model_validate(doc)
    # Only what was set comes back, and all of it: nothing in the example was ignored.
    assert obj.model_dump(mode="json", exclude_unset=True) == doc
    assert model.model_validate(obj.model_dump(mode="json")) == obj


def test_snake_case_attributes_camel_case_wire() -> None:
    ep = AIMEndpoint.model_validate(
        {
            "metadata": {"name": "x", "resourceVersion": "7"},
            "spec": {
                "model": {"id": "m", "sizeHint": "7B"},
                "recipe": {"autoSelect": False, "gpuCount": 2, "optimizeFor": "latency"},
                "scaling": {"targetCPUUtilization": 70, "targetGPUUtilization": 85},
            },
        }
    )
    assert ep.spec.recipe.auto_select is False
    assert ep.spec.recipe.gpu_count == 2
    assert ep.spec.model.size_hint == "7B"
    assert ep.spec.scaling.target_cpu_utilization == 70
    assert ep.metadata.resource_version == "7"
    wire = ep.model_dump(mode="json", exclude_none=True)
    assert wire["apiVersion"] == API_VERSION
    assert wire["spec"]["scaling"]["targetGPUUtilization"] == 85
    assert wire["spec"]["recipe"]["optimizeFor"] == "latency"
    # Python names work too, for code that builds objects.
    built = AIMEndpoint(metadata={"name": "y"}, spec={"model": {"id": "m"}, "replicas": 2})
    assert built.spec.replicas == 2


def test_endpoint_defaults() -> None:
    spec = AIMEndpoint.model_validate({"spec": {"model": {"id": "m"}}}).spec
    assert spec.replicas == 1
    assert spec.recipe.auto_select is True
    assert spec.recipe.backend == "vllm"
    assert spec.recipe.optimize_for == "throughput"
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (1, 1)
    assert spec.scaling.gpu_utilization_metric == DEFAULT_GPU_UTILIZATION_METRIC
    assert DEFAULT_GPU_UTILIZATION_METRIC == "gpu_gfx_activity"
    assert (spec.service.type, spec.service.port) == ("ClusterIP", 8000)
    assert spec.cache.enabled is False
    assert spec.cache.retain_on_delete is True
    assert spec.monitoring.enabled is False
    assert spec.monitoring.prometheus.interval == "30s"
    assert spec.deployment.strategy.type == "RollingUpdate"
    assert spec.deployment.canary.enabled is False
    assert spec.security.service_account.create is False
    assert spec.resources is None and spec.image is None


def test_recipe_and_cache_defaults() -> None:
    recipe = AIMRecipe.model_validate(
        {"spec": {"modelId": "m", "hardware": "MI300X", "configurations": [{"gpuCount": 1}]}}
    ).spec
    assert (recipe.precision, recipe.backend) == ("bfloat16", "vllm")
    assert recipe.configurations[0].enabled is True
    cache = AIMCache.model_validate(
        {"spec": {"storage": {"size": "1Ti"}, "models": [{"id": "m"}]}}
    ).spec
    assert cache.storage.access_mode == "ReadWriteMany"
    assert cache.models[0].priority == "medium"
    assert cache.cleanup.enabled is False


@pytest.mark.parametrize("value", ["64Gi", "500m", "16", "1.5", "1e3", ".5Ki", 16, 0])
def test_quantity_accepts(value: object) -> None:
    spec = {"model": {"id": "m"}, "resources": {"memory": value}}
    ep = AIMEndpoint.model_validate({"spec": spec})
    assert ep.spec.resources is not None and ep.spec.resources.memory == value


@pytest.mark.parametrize("value", ["lots", "-4", "64GB", "1 Gi", "", -1, 1.5])
def test_quantity_rejects(value: object) -> None:
    with pytest.raises(ValidationError):
        AIMEndpoint.model_validate({"spec": {"model": {"id": "m"}, "resources": {"memory": value}}})


@pytest.mark.parametrize("value", ["30s", "300s", "1h30m", "7d", "250ms", "1.5h"])
def test_duration_accepts(value: str) -> None:
    spec = {"model": {"id": "m"}, "scaling": {"scaleDownDelay": value}}
    assert AIMEndpoint.model_validate({"spec": spec}).spec.scaling.scale_down_delay == value


@pytest.mark.parametrize("value", ["5 minutes", "300", "s", "5M", "-5s", ""])
def test_duration_rejects(value: str) -> None:
    with pytest.raises(ValidationError):
        spec = {"model": {"id": "m"}, "scaling": {"scaleDownDelay": value}}
        AIMEndpoint.model_validate({"spec": spec})


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("0 2 * * *", True),
        ("*/15 * * * *", True),
        ("0 0 1 JAN MON", True),
        ("30 4 1-7 * 1,3,5", True),
        ("@daily", True),
        ("every day", False),
        ("0 2 * *", False),
        ("0 2 * * * *", False),
        ("@sometimes", False),
    ],
)
def test_cron_schedule(schedule: str, ok: bool) -> None:
    doc = {"spec": {"storage": {"size": "1Ti"}, "cleanup": {"enabled": True, "schedule": schedule}}}
    if ok:
        assert AIMCache.model_validate(doc).spec.cleanup.schedule == schedule
    else:
        with pytest.raises(ValidationError):
            AIMCache.model_validate(doc)


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def ready(status: str = "True") -> Condition:
    return Condition(
        type="Ready", status=status, reason="Available", message="ok", last_transition_time=NOW,
        observed_generation=3,
    )


def test_endpoint_status_selection_record_wire_format() -> None:
    status = AIMEndpointStatus(
        observed_generation=3,
        conditions=[ready()],
        replicas=2,
        ready_replicas=2,
        available_replicas=2,
        selector="app.kubernetes.io/instance=x",
        url="http://x.ns.svc:8000",
        recipe=RecipeSelection(
            recipe_name="qwen-32b-mi300x-bf16",
            recipe_namespace="aim-engine",
            source="namespace",
            configuration_index=1,
            gpu_count=4,
            hardware="MI300X",
            precision="bfloat16",
            backend="vllm",
            score=0.93,
            reason="highest throughput among fitting configurations",
            candidates=[
                RecipeCandidate(recipe="qwen-32b-mi300x-bf16", source="namespace", gpu_count=4,
                                hardware="MI300X", precision="bfloat16", verdict="Selected",
                                reason="BestScore"),
                RecipeCandidate(recipe="qwen-32b-mi300x-bf16", gpu_count=8, hardware="MI300X",
                                verdict="Rejected", reason="InsufficientGPUs",
                                message="no node has 8 free MI300X"),
            ],
            selected_at=NOW,
        ),
    )
    wire = status.model_dump(mode="json", exclude_none=True)
    assert wire["recipe"]["recipeName"] == "qwen-32b-mi300x-bf16"
    assert wire["recipe"]["configurationIndex"] == 1
    assert wire["recipe"]["selectedAt"] == "2026-01-02T03:04:05Z"
    assert wire["recipe"]["estimated"] is False
    assert wire["recipe"]["candidates"][1]["verdict"] == "Rejected"
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert wire["readyReplicas"] == 2
    assert AIMEndpointStatus.model_validate(wire) == status


def test_recipe_and_cache_status_wire_format() -> None:
    rs = AIMRecipeStatus(
        observed_generation=1, conditions=[ready()], valid=True, summary="1/2 configs fit",
        configurations=[
            RecipeConfigurationStatus(gpu_count=1, fitting_replicas=8, nodes=["n1", "n2"],
                                      gpu_models=["MI300X"]),
            RecipeConfigurationStatus(gpu_count=8, message="no node with 8 free GPUs"),
        ],
    )
    wire = rs.model_dump(mode="json", exclude_none=True)
    assert wire["configurations"][0]["fittingReplicas"] == 8
    assert wire["configurations"][0]["gpuModels"] == ["MI300X"]
    assert AIMRecipeStatus.model_validate(wire) == rs

    cs = AIMCacheStatus(
        phase="Ready", persistent_volume_claim="global-model-cache", capacity_bytes=10,
        used_bytes=5, models=[CachedModelStatus(id="Qwen/Qwen3-32B", state="Ready",
                                                size_bytes=5, last_used_time=NOW)],
    )
    wire = cs.model_dump(mode="json", exclude_none=True)
    assert wire["models"][0]["lastUsedTime"] == "2026-01-02T03:04:05Z"
    assert wire["usedBytes"] == 5
    assert AIMCacheStatus.model_validate(wire) == cs


@pytest.mark.parametrize(
    "bad",
    [
        {"verdict": "Maybe"},
        {"reason": "not a code"},
        {"gpuCount": -1},
    ],
)
def test_candidate_rejects(bad: dict[str, Any]) -> None:
    base = {"recipe": "r", "gpuCount": 1, "verdict": "Selected", "reason": "BestScore"}
    with pytest.raises(ValidationError):
        RecipeCandidate.model_validate({**base, **bad})


def test_unknown_fields_are_ignored_not_fatal() -> None:
    """A controller one release behind its CRD must still read new objects."""
    ep = AIMEndpoint.model_validate(
        {"spec": {"model": {"id": "m"}, "someFutureField": 1}, "status": {"futureStatus": "x"}}
    )
    assert ep.spec.model.id == "m"
    assert "someFutureField" not in ep.model_dump()["spec"]


def test_metadata_keeps_unmodelled_keys() -> None:
    ep = AIMEndpoint.model_validate(
        {"metadata": {"name": "x", "managedFields": [{"manager": "kubectl"}]},
         "spec": {"model": {"id": "m"}}}
    )
    assert ep.model_dump(mode="json")["metadata"]["managedFields"] == [{"manager": "kubectl"}]
