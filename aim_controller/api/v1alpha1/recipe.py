"""AIMRecipe: a tested way to run one model on one GPU model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .common import (
    API_VERSION_LITERAL,
    DEFAULT_BACKEND,
    MAX_GPUS_PER_REPLICA,
    MAX_MESSAGE,
    APIModel,
    Backend,
    Conditions,
    GpuCount,
    Hardware,
    ObjectMeta,
    Precision,
    ResourceList,
    cel,
    map_list,
    validations,
)

GPU_RESOURCE = "amd.com/gpu"
MAX_CONFIGURATIONS = 16
# Bounds of the AIMRecipe status lists and summary.
MAX_STATUS_NODES = 100
MAX_STATUS_GPU_MODELS = 16
MAX_SUMMARY = 256


def _gpu_resource_rule(which: str) -> dict[str, str]:
    # Extended resources are whole numbers, so comparing the string forms is exact
    # for the spellings users write ("4" or 4).
    return cel(
        f"!has(self.resources) || !has(self.resources.{which})"
        f" || !('{GPU_RESOURCE}' in self.resources.{which})"
        f" || string(self.resources.{which}['{GPU_RESOURCE}']) == string(self.gpuCount)",
        f"resources.{which}['{GPU_RESOURCE}'] must equal gpuCount",
        field_path=f".resources.{which}",
        reason="FieldValueInvalid",
    )


class EnvVar(APIModel):
    """An environment variable of the inference server container."""

    name: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)]
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=4096)] = ""
    """Variable value."""


class ConfigurationResources(APIModel):
    """Container resources of one replica (as in core/v1 ResourceRequirements). Unset:
    amd.com/gpu equal to gpuCount plus the operator's memory and CPU estimates."""

    requests: ResourceList = Field(default_factory=dict, max_length=16)
    """Minimum resources, e.g. {"amd.com/gpu": "4", "memory": "64Gi", "cpu": "16"}.
    amd.com/gpu, if present, must equal the configuration's gpuCount."""
    limits: ResourceList = Field(default_factory=dict, max_length=16)
    """Maximum resources. amd.com/gpu, if present, must equal the configuration's
    gpuCount."""


class RecipeConfiguration(APIModel):
    """One way to run the recipe: a GPU count with its engine arguments and resources."""

    model_config = ConfigDict(
        json_schema_extra=validations(_gpu_resource_rule("requests"), _gpu_resource_rule("limits"))
    )

    gpu_count: GpuCount
    """GPUs per replica (tensor-parallel size). Unique within the recipe."""
    enabled: bool = True
    """Whether selection may use this configuration."""
    args: list[Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=list, max_length=128
    )
    """Arguments of the inference server, e.g. ["--tensor-parallel-size", "4"]."""
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, json_schema_extra=map_list("name")
    )
    """Added by aim-controller: environment variables of the inference server container."""
    resources: ConfigurationResources | None = None


class RecipePerformance(APIModel):
    """Measured or expected performance of the recipe; used to rank candidates."""

    expected_tokens_per_second: int | None = Field(None, ge=0)
    """Expected output throughput of one replica in tokens per second."""
    expected_latency_ms: int | None = Field(None, ge=0)
    """Expected per-request latency in milliseconds."""
    max_batch_size: int | None = Field(None, ge=1)
    """Largest batch (concurrent sequences) the recipe was tuned for."""


class AIMRecipeSpec(APIModel):
    """Desired state of an AIMRecipe."""

    model_id: Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=256)]
    """Model the recipe serves; matched against AIMEndpoint spec.model.id."""
    hardware: Hardware
    """GPU model the recipe was made for."""
    precision: Precision = "bfloat16"
    """Weight precision / quantization."""
    backend: Backend = DEFAULT_BACKEND
    """Inference engine."""
    image: (
        Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=512)]
        | None
    ) = None
    """Added by aim-controller: container image the recipe was validated with. AIMEndpoint
    spec.image overrides it."""
    configurations: list[RecipeConfiguration] = Field(
        min_length=1,
        max_length=MAX_CONFIGURATIONS,
        json_schema_extra=map_list(
            "gpuCount",
            rules=(
                cel(
                    "self.all(c, self.exists_one(d, d.gpuCount == c.gpuCount))",
                    "configurations must have distinct gpuCount values",
                    reason="FieldValueInvalid",
                ),
            ),
        ),
    )
    """Supported GPU counts, at least one."""
    performance: RecipePerformance | None = None


class RecipeConfigurationStatus(APIModel):
    """Where one configuration fits in the cluster right now."""

    gpu_count: int = Field(ge=1, le=MAX_GPUS_PER_REPLICA)
    """The configuration's GPUs per replica."""
    enabled: bool = True
    """The configuration's enabled flag."""
    fitting_replicas: int = Field(0, ge=0)
    """How many replicas of this configuration the free GPUs of matching nodes hold."""
    nodes: list[Annotated[str, StringConstraints(max_length=253)]] = Field(
        default_factory=list, max_length=MAX_STATUS_NODES
    )
    """Nodes with enough free GPUs of the recipe's hardware (truncated to 100)."""
    gpu_models: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=MAX_STATUS_GPU_MODELS
    )
    """GPU models seen on those nodes."""
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] = ""
    """Why it does not fit, when fittingReplicas is 0."""


class AIMRecipeStatus(APIModel):
    """Observed state of an AIMRecipe."""

    observed_generation: int | None = Field(None, ge=0)
    """The .metadata.generation this status reflects."""
    conditions: Conditions = Field(default_factory=list)
    """Current conditions (Ready, Valid, ...)."""
    valid: bool | None = None
    """Whether the recipe passed the operator's checks beyond the schema."""
    summary: Annotated[str, StringConstraints(max_length=MAX_SUMMARY)] | None = None
    """One-line fit summary, e.g. "2/2 configs fit (4x1 GPU, 1x4 GPU)"."""
    configurations: list[RecipeConfigurationStatus] = Field(
        default_factory=list, max_length=MAX_CONFIGURATIONS
    )
    """Fit of each configuration."""


class AIMRecipe(APIModel):
    """AIMRecipe describes how to run one model on one AMD GPU model: precision, backend
    and, per GPU count, the engine arguments and resources. AIMEndpoints select among
    recipes in their namespace and the operator's built-in catalog."""

    api_version: API_VERSION_LITERAL = "aim.engine.amd.com/v1alpha1"
    """APIVersion of the object."""
    kind: Literal["AIMRecipe"] = "AIMRecipe"
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: AIMRecipeSpec
    status: AIMRecipeStatus = Field(default_factory=AIMRecipeStatus)
