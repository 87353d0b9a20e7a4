"""AIMEndpoint: one model served as an inference endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, StringConstraints

from .cache import CachedModelState
from .common import (
    API_VERSION_LITERAL,
    DEFAULT_BACKEND,
    MAX_GPUS_PER_REPLICA,
    MAX_MESSAGE,
    NAME_PATTERN,
    REASON_PATTERN,
    APIModel,
    Backend,
    Conditions,
    Duration,
    GpuCount,
    Hardware,
    IntOrPercent,
    ObjectMeta,
    Precision,
    Quantity,
    cel,
    nested,
    quantity_not_less,
    validations,
)

OptimizeFor = Literal["throughput", "latency", "cost"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
StrategyType = Literal["RollingUpdate", "Recreate"]
RecipeSource = Literal["builtin", "namespace", "estimated"]
CandidateVerdict = Literal["Selected", "Feasible", "Rejected"]
FsGroupChangePolicy = Literal["OnRootMismatch", "Always"]
ModelSource = Literal["AIMCache", "Own", "None"]

OPTIMIZE_FOR_VALUES: tuple[OptimizeFor, ...] = get_args(OptimizeFor)
SERVICE_TYPES: tuple[ServiceType, ...] = get_args(ServiceType)
RECIPE_SOURCES: tuple[RecipeSource, ...] = get_args(RecipeSource)
CANDIDATE_VERDICTS: tuple[CandidateVerdict, ...] = get_args(CandidateVerdict)
MODEL_SOURCES: tuple[ModelSource, ...] = get_args(ModelSource)

# The AMD device metrics exporter's per-GPU graphics-engine activity (percent).
DEFAULT_GPU_UTILIZATION_METRIC = "gpu_gfx_activity"
DEFAULT_SERVICE_PORT = 8000
MAX_REPLICAS = 1000
MAX_CANDIDATES = 64
MAX_ABANDONED = 16

Percent = Annotated[int, Field(ge=1, le=100)]
ShortString = Annotated[str, StringConstraints(min_length=1, max_length=253)]
ReasonCode = Annotated[
    str, StringConstraints(pattern=REASON_PATTERN, min_length=1, max_length=128)
]
Message = Annotated[str, StringConstraints(max_length=MAX_MESSAGE)]


class ModelSpec(APIModel):
    """The model to serve."""

    id: Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=256)]
    """Model identifier, e.g. a Hugging Face repository id such as "Qwen/Qwen3-32B". Recipes
    are matched on this id (AIMRecipe spec.modelId)."""
    version: Annotated[str, StringConstraints(pattern=r"^\S+$", max_length=128)] | None = None
    """Model version or revision to serve (e.g. a Hugging Face branch, tag or commit, or
    "latest"). Unset means latest."""
    size_hint: (
        Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?[MBT]$", max_length=16)]
        | None
    ) = None
    """Approximate parameter count such as "7B", "0.5B" or "70B". Added by aim-controller:
    used only to estimate a recipe (GPU count, precision) when neither an AIMRecipe nor a
    built-in recipe exists for the model; such a selection is marked estimated in
    status.recipe."""


class RecipeSelector(APIModel):
    """How the recipe (GPU count, precision, backend and engine arguments) is chosen.

    With autoSelect (the default) the operator ranks the AIMRecipes of the namespace and its
    built-in catalog that fit the cluster's free GPUs by optimizeFor; the outcome, with every
    candidate considered, is recorded in status.recipe.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.autoSelect || has(self.gpuCount)",
                "recipe.gpuCount is required when recipe.autoSelect is false",
                field_path=".gpuCount",
                reason="FieldValueRequired",
            )
        )
    )

    auto_select: bool = True
    """Let the operator select the best recipe that fits the cluster's GPUs. When true,
    gpuCount, precision and backend (if set) only narrow the candidates. When false,
    gpuCount is required and the recipe must match exactly."""
    gpu_count: GpuCount | None = None
    """GPUs per replica (tensor-parallel size). Required when autoSelect is false."""
    precision: Precision | None = None
    """Weight precision / quantization of the recipe. Unset means any."""
    backend: Backend = DEFAULT_BACKEND
    """Inference engine."""
    hardware: Hardware | None = None
    """Added by aim-controller: GPU model the recipe must be for, e.g. MI300X. Unset
    means any. Narrows the candidates in both modes."""
    optimize_for: OptimizeFor = "throughput"
    """Added by aim-controller: what automatic selection optimizes among fitting recipes:
    throughput (tokens/s per replica), latency (time per token) or cost (fewest GPUs)."""


class EndpointResources(APIModel):
    """Per-replica resources. Each field set overrides what the selected recipe asks for."""

    gpu_count: GpuCount | None = None
    """GPUs per replica, overriding the recipe's count; automatic selection then only
    considers recipe configurations with this many GPUs. Must equal recipe.gpuCount when
    both are set."""
    memory: Quantity | None = None
    """Memory per replica (request and limit), e.g. "64Gi"."""
    cpu: Quantity | None = None
    """CPU per replica (request), e.g. "16" or "8000m"."""


class Scaling(APIModel):
    """Replica bounds and autoscaling targets.

    When maxReplicas > minReplicas the operator creates a HorizontalPodAutoscaler that
    targets this AIMEndpoint's scale subresource and so owns spec.replicas.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.maxReplicas >= self.minReplicas",
                "scaling.maxReplicas must be greater than or equal to scaling.minReplicas",
                field_path=".maxReplicas",
                reason="FieldValueInvalid",
            )
        )
    )

    min_replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    """Lower bound on replicas; also the floor applied to spec.replicas. 0 lets
    `kubectl scale --replicas=0` park the endpoint."""
    max_replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    """Upper bound for the autoscaler. Equal to minReplicas (the default) means no
    autoscaler."""
    target_cpu_utilization: Percent | None = Field(None, alias="targetCPUUtilization")
    """Target average CPU utilization (percent of request) across replicas."""
    target_memory_utilization: Percent | None = Field(None, alias="targetMemoryUtilization")
    """Target average memory utilization (percent of request) across replicas."""
    target_gpu_utilization: Percent | None = Field(None, alias="targetGPUUtilization")
    """Target average GPU utilization (percent) across replicas, read from the Pods metric
    named by gpuUtilizationMetric through a custom metrics API (custom.metrics.k8s.io,
    e.g. prometheus-adapter). While no such API is served (APIService
    v1beta1.custom.metrics.k8s.io or v1beta2.custom.metrics.k8s.io Available), the
    HorizontalPodAutoscaler is created without the GPU metric, on the CPU/memory targets
    (CPU 80% when none is set), and ScalingReady=False (GpuMetricsUnavailable) says so;
    the GPU metric is added when the API becomes available, without a restart."""
    gpu_utilization_metric: Annotated[
        str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=128)
    ] = DEFAULT_GPU_UTILIZATION_METRIC
    """Added by aim-controller: name of the per-pod custom metric (custom.metrics.k8s.io)
    used for targetGPUUtilization. The default is the AMD device metrics exporter's
    gpu_gfx_activity, served e.g. through prometheus-adapter."""
    scale_down_delay: Duration | None = None
    """How long load must stay low before scaling down (HPA scale-down stabilization
    window), e.g. "300s"."""
    scale_up_delay: Duration | None = None
    """How long load must stay high before scaling up (HPA scale-up stabilization window),
    e.g. "60s"."""


class GatewayRef(APIModel):
    """A Gateway (Gateway API, gateway.networking.k8s.io) an HTTPRoute attaches to."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=253)]
    """Name of the Gateway."""
    namespace: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)] | None \
        = None
    """Namespace of the Gateway; unset means the endpoint's (a Gateway elsewhere must
    allow routes from it)."""
    section_name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=253)] \
        | None = None
    """Listener of the Gateway to attach to; unset means all that allow it."""


class ServiceSpec(APIModel):
    """The Service in front of the endpoint's pods."""

    type: ServiceType = "ClusterIP"
    """Service type."""
    port: int = Field(DEFAULT_SERVICE_PORT, ge=1, le=65535)
    """Port the Service exposes the OpenAI-compatible HTTP API on."""
    annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=64
    )
    """Annotations copied onto the Service, e.g. for cloud load balancers."""
    gateway: GatewayRef | None = None
    """Added by aim-controller: attach the endpoint to this Gateway with an HTTPRoute
    ``<name>`` (needs the Gateway API's HTTPRoute CRD; without it the endpoint's status
    says so in the GatewayRouted condition). During a canary the route splits requests
    between the Service and the canary's Service ``<name>-canary`` by
    deployment.canary.trafficSplit exactly."""


class PrometheusSpec(APIModel):
    """Prometheus scraping (a ServiceMonitor; needs the Prometheus operator's CRDs)."""

    enabled: bool = True
    """Create a ServiceMonitor when monitoring.enabled is true."""
    interval: Duration = "30s"
    """Scrape interval."""


class GrafanaSpec(APIModel):
    """Grafana dashboard provisioning."""

    enabled: bool = False
    """Provision a dashboard ConfigMap (picked up by a Grafana dashboard sidecar)."""
    dashboard: ShortString | None = None
    """Dashboard name. Unset means the operator's built-in endpoint dashboard."""


class MonitoringSpec(APIModel):
    """Metrics collection (a Prometheus ServiceMonitor) and Grafana dashboards."""

    enabled: bool = False
    """Master switch: nothing below applies unless true."""
    prometheus: PrometheusSpec = nested(PrometheusSpec)
    grafana: GrafanaSpec = nested(GrafanaSpec)


class EndpointCacheSpec(APIModel):
    """A PersistentVolumeClaim holding the downloaded model weights.

    A shared AIMCache comes first: when an AIMCache in the endpoint's namespace lists
    spec.model.id at the same revision (its revision equals spec.model.version; unset
    and "latest" both mean the default branch) and holds the model Ready, the pods
    mount that cache's PVC read-only and load the model from it; this
    PVC is then not used for weights (not created; kept, not deleted, if it exists).
    While that cache is still downloading the model, the endpoint waits for it (no
    Deployment yet) until the operator's --cache-wait-timeout; after it, or when the
    cache reports the model Failed or Evicted, the endpoint downloads the model itself,
    onto this PVC when enabled. status.cache says which is used.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!oldSelf.enabled || !self.enabled || !has(self.size) || !has(oldSelf.size) || "
                + quantity_not_less("self.size", "oldSelf.size"),
                "cache.size cannot shrink while the cache is enabled (a PVC cannot shrink)",
                field_path=".size",
                reason="FieldValueForbidden",
            ),
            cel(
                "!oldSelf.enabled || !self.enabled || (has(self.storageClass) =="
                " has(oldSelf.storageClass) && (!has(self.storageClass)"
                " || self.storageClass == oldSelf.storageClass))",
                "cache.storageClass cannot change while the cache is enabled (a PVC's storage"
                " class is immutable)",
                field_path=".storageClass",
                reason="FieldValueForbidden",
            ),
        )
    )

    enabled: bool = False
    """Keep model weights on a PVC so restarts and new replicas skip the download."""
    storage_class: ShortString | None = None
    """StorageClass of the PVC. Unset means the cluster default. Immutable while enabled."""
    size: Quantity = "100Gi"
    """Requested PVC size. May grow (if the StorageClass allows expansion), never shrink."""
    retain_on_delete: bool = True
    """Added by aim-controller: keep the PVC (and its weights) when the AIMEndpoint is
    deleted. Set false to delete it with the endpoint."""


class ServiceAccountSpec(APIModel):
    """The ServiceAccount the pods run as."""

    create: bool = False
    """Create the ServiceAccount (named by name, else after the endpoint)."""
    name: (
        Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=253)] | None
    ) = None
    """ServiceAccount name. Unset: the endpoint's name when create is true, else the
    namespace's default ServiceAccount."""


SeccompProfileType = Literal["RuntimeDefault", "Localhost", "Unconfined"]


class SeccompProfileSpec(APIModel):
    """The pods' seccomp profile (core/v1 SeccompProfile). Unset: RuntimeDefault."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type == 'Localhost' ? has(self.localhostProfile)"
                " : !has(self.localhostProfile)",
                "seccompProfile.localhostProfile is required for type Localhost and"
                " forbidden otherwise",
                field_path=".localhostProfile",
                reason="FieldValueInvalid",
            )
        )
    )

    type: SeccompProfileType
    """RuntimeDefault (the container runtime's default profile), Localhost (a profile
    file on the node) or Unconfined (none: refused where the namespace enforces the
    baseline or restricted Pod Security Standard)."""
    localhost_profile: (
        Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None
    ) = None
    """For type Localhost: the profile's path, relative to the kubelet's seccomp
    directory."""


class PodSecurityContextSpec(APIModel):
    """Pod-level security attributes (a subset of core/v1 PodSecurityContext).

    Unset fields get hardened defaults (seccomp RuntimeDefault, a non-root user unless
    root is asked for, the ROCm device groups): see the operator's README."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.runAsNonRoot) && self.runAsNonRoot && has(self.runAsUser)"
                " && self.runAsUser == 0)",
                "podSecurityContext.runAsUser cannot be 0 (root) when runAsNonRoot is true",
                field_path=".runAsUser",
                reason="FieldValueInvalid",
            )
        )
    )

    run_as_user: int | None = Field(None, ge=0, le=2147483647)
    """UID the containers run as."""
    run_as_group: int | None = Field(None, ge=0, le=2147483647)
    """Primary GID of the containers' processes."""
    fs_group: int | None = Field(None, ge=0, le=2147483647)
    """Supplemental GID that owns mounted volumes."""
    run_as_non_root: bool | None = None
    """Require the containers to run as a non-root user."""
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2147483647)]] = Field(
        default_factory=list, max_length=32
    )
    """Additional GIDs: the groups that own /dev/kfd and /dev/dri on the nodes. Empty:
    video (44) and render (109, stock Ubuntu; check `getent group render` on the
    nodes)."""
    fs_group_change_policy: FsGroupChangePolicy | None = None
    """When to change volume ownership to fsGroup: OnRootMismatch or Always."""
    seccomp_profile: SeccompProfileSpec | None = None
    """Added by aim-controller: the pods' seccomp profile. Unset: RuntimeDefault."""


# A label or annotation key: an optional DNS-subdomain prefix and "/", then a name of at
# most 63 characters (apimachinery's IsQualifiedName). No backslash: it is also a CEL
# string literal.
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
MAX_POD_METADATA = 64


def _qualified_keys(what: str) -> dict[str, Any]:
    return validations(cel(
        f"self.all(k, size(k) <= 317 && k.matches('{QUALIFIED_NAME_PATTERN}'))",
        f"podTemplate.{what} keys must be qualified names (an optional DNS subdomain"
        " prefix and '/', then at most 63 characters: alphanumerics, '-', '_', '.')",
        reason="FieldValueInvalid",
    ))


class PodTemplateMetadata(APIModel):
    """Labels and annotations added to the endpoint's pods, e.g. for a service mesh's
    sidecar injection or cost allocation. Keys the operator sets on its pods itself
    (app.kubernetes.io/name, instance, component, part-of and managed-by,
    aim.engine.amd.com/endpoint and model, the config checksum) keep the operator's
    values. A change rolls the pods."""

    labels: dict[
        str, Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=63)]
    ] = Field(default_factory=dict, max_length=MAX_POD_METADATA,
              json_schema_extra=_qualified_keys("labels"))
    """Labels of the pods."""
    annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=MAX_POD_METADATA,
        json_schema_extra=_qualified_keys("annotations"),
    )
    """Annotations of the pods."""


class SecuritySpec(APIModel):
    """Identity and security context of the pods."""

    service_account: ServiceAccountSpec = nested(ServiceAccountSpec)
    pod_security_context: PodSecurityContextSpec | None = None


class RollingUpdateSpec(APIModel):
    """Rolling update parameters (as in a Deployment)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.maxSurge) || !has(self.maxUnavailable)"
                " || !(string(self.maxSurge) in ['0', '0%']"
                " && string(self.maxUnavailable) in ['0', '0%'])",
                "rollingUpdate.maxSurge and rollingUpdate.maxUnavailable must not both be 0",
                field_path=".maxUnavailable",
                reason="FieldValueInvalid",
            )
        )
    )

    max_surge: IntOrPercent | None = None
    """Extra replicas allowed above the desired count during an update (count or percent).
    Each surge replica needs its own GPUs."""
    max_unavailable: IntOrPercent | None = None
    """Replicas that may be unavailable during an update (count or percent)."""


class StrategySpec(APIModel):
    """How running replicas are replaced by new ones."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type == 'RollingUpdate' || !has(self.rollingUpdate)",
                "strategy.rollingUpdate may only be set when strategy.type is RollingUpdate",
                field_path=".rollingUpdate",
                reason="FieldValueForbidden",
            )
        )
    )

    type: StrategyType = "RollingUpdate"
    """RollingUpdate replaces pods gradually; Recreate stops all old pods first (needs no
    spare GPUs)."""
    rolling_update: RollingUpdateSpec | None = None


DEFAULT_CANARY_DURATION = "300s"
CanaryPhase = Literal["Progressing", "Analyzing", "Promoting", "Succeeded", "RolledBack"]
CANARY_PHASES: tuple[CanaryPhase, ...] = get_args(CanaryPhase)


class CanarySpec(APIModel):
    """Canary rollout of a new version next to the current one."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.enabled || (self.trafficSplit >= 1 && self.trafficSplit <= 99)",
                "canary.trafficSplit must be between 1 and 99 when the canary is enabled",
                field_path=".trafficSplit",
                reason="FieldValueInvalid",
            )
        )
    )

    enabled: bool = False
    """Roll out changes of the pod template (model version, image, recipe, arguments,
    podTemplate) as a canary first: the Deployment keeps what it runs while
    ``<name>-canary`` runs the new template; promoted once healthy for duration, rolled
    back (CanaryFailed) when its pods fail. See status.canary; the annotations
    aim.engine.amd.com/canary-promote and aim.engine.amd.com/canary-abort (set a new
    value each time) promote or abort the running canary by hand."""
    traffic_split: int = Field(10, ge=0, le=100)
    """Percent of traffic sent to the canary: the canary gets replicas in this
    proportion to the Deployment's (at least one) behind the one Service, so the split
    is by replica ratio and approximate (status.canary.weight says what it is)."""
    duration: Duration | None = None
    """How long the canary must stay healthy (all replicas Ready, no restart, no
    failure) before it is promoted, e.g. "300s". Unset means 300s."""


class DeploymentSpec(APIModel):
    """Rollout behaviour: the update strategy of the underlying Deployment and canary
    rollouts."""

    strategy: StrategySpec = nested(StrategySpec)
    canary: CanarySpec = nested(CanarySpec)


class AIMEndpointSpec(APIModel):
    """Desired state of an AIMEndpoint."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.resources) || !has(self.resources.gpuCount) || !has(self.recipe)"
                " || !has(self.recipe.gpuCount) || self.resources.gpuCount == self.recipe.gpuCount",
                "resources.gpuCount must equal recipe.gpuCount when both are set",
                field_path=".resources.gpuCount",
                reason="FieldValueInvalid",
            )
        )
    )

    model: ModelSpec
    image: (
        Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=512)]
        | None
    ) = None
    """Added by aim-controller: container image of the inference server, overriding the
    image the recipe/backend implies (e.g. a mirrored or pinned AIM image)."""
    replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    """Desired replicas; the scale subresource (kubectl scale, HorizontalPodAutoscaler)
    reads and writes this field. The endpoint runs replicas clamped to
    [scaling.minReplicas, scaling.maxReplicas] (the Available condition says so when it
    clamps). With an autoscaler (scaling.maxReplicas > scaling.minReplicas) the
    autoscaler owns this field."""
    recipe: RecipeSelector = nested(RecipeSelector)
    resources: EndpointResources | None = None
    scaling: Scaling = nested(Scaling)
    service: ServiceSpec = nested(ServiceSpec)
    monitoring: MonitoringSpec = nested(MonitoringSpec)
    cache: EndpointCacheSpec = nested(EndpointCacheSpec)
    security: SecuritySpec = nested(SecuritySpec)
    deployment: DeploymentSpec = nested(DeploymentSpec)
    pod_template: PodTemplateMetadata | None = None
    """Added by aim-controller: labels and annotations of the pods."""


class RecipeCandidate(APIModel):
    """One recipe configuration the selection considered, and what became of it."""

    recipe: ShortString
    """Name of the recipe (AIMRecipe name, or built-in catalog entry name)."""
    source: RecipeSource | None = None
    """Where the recipe came from."""
    gpu_count: int = Field(ge=0, le=MAX_GPUS_PER_REPLICA)
    """GPUs per replica of the configuration."""
    hardware: ShortString | None = None
    """GPU model the recipe is for, e.g. MI300X."""
    precision: ShortString | None = None
    """Precision of the recipe."""
    backend: ShortString | None = None
    """Inference engine of the recipe."""
    verdict: CandidateVerdict
    """Selected (chosen), Feasible (fits but ranked lower) or Rejected."""
    score: float | None = None
    """Ranking score under spec.recipe.optimizeFor; higher is better."""
    reason: ReasonCode
    """CamelCase code for the verdict, e.g. InsufficientGPUs, HardwareNotPresent."""
    message: Message = ""
    """Human-readable explanation of the verdict."""


class AbandonedChoice(APIModel):
    """A configuration the endpoint moved away from because its pods stayed
    unschedulable: not chosen again before its until time (a backoff that doubles with each
    abandonment: 5 min, 10, 20, ... capped at 1 h)."""

    recipe: ShortString
    """Name of the recipe."""
    recipe_namespace: ShortString | None = None
    """Namespace of the AIMRecipe; unset for built-in and estimated recipes."""
    source: RecipeSource
    """Where the recipe came from."""
    gpu_count: int = Field(ge=0, le=MAX_GPUS_PER_REPLICA)
    """GPUs per replica of the configuration."""
    count: int = Field(1, ge=1, le=1000)
    """How many times the endpoint moved away from it."""
    until: datetime
    """Not chosen again before this time."""


class RecipeSelection(APIModel):
    """The record of the last recipe selection: what was chosen, from where, and why."""

    recipe_name: ShortString | None = None
    """Name of the selected recipe (AIMRecipe name or built-in catalog entry name)."""
    recipe_namespace: ShortString | None = None
    """Namespace of the selected AIMRecipe; unset for built-in and estimated recipes."""
    source: RecipeSource | None = None
    """builtin (operator catalog), namespace (an AIMRecipe) or estimated (from the model
    size)."""
    configuration_index: int | None = Field(None, ge=0)
    """Index of the selected entry in the recipe's configurations."""
    gpu_count: int | None = Field(None, ge=0, le=MAX_GPUS_PER_REPLICA)
    """GPUs per replica of the selected configuration."""
    hardware: ShortString | None = None
    """GPU model the selection targets, e.g. MI300X."""
    precision: ShortString | None = None
    """Precision of the selected recipe."""
    backend: ShortString | None = None
    """Inference engine of the selected recipe."""
    estimated: bool = False
    """True when no recipe existed and the configuration was estimated from the model
    size."""
    score: float | None = None
    """Ranking score of the selected configuration."""
    reason: Message | None = None
    """Reason code of the outcome: Selected, Sticky, Reselected, Estimated, NoRecipe,
    NoFeasibleCandidate or InvalidSpec."""
    message: Message | None = None
    """Why this configuration won (or why none could be selected), in words."""
    optimize_for: OptimizeFor | None = None
    """The optimizeFor preference the candidates were ranked by."""
    inputs_hash: Annotated[str, StringConstraints(max_length=128)] | None = None
    """Hash of the endpoint's recipe inputs (model, recipe section, resources.gpuCount).
    While it is unchanged, a deployed selection is kept (sticky)."""
    candidates_omitted: int | None = Field(None, ge=0)
    """Candidates considered but not listed, beyond the list's bound."""
    candidates: list[RecipeCandidate] = Field(
        default_factory=list, max_length=MAX_CANDIDATES,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    """Every configuration considered, best first (truncated to 64)."""
    selected_at: datetime | None = None
    """When this selection was made. The unschedulable grace of a choice counts from
    here, so an endpoint moves at most once per grace period."""
    abandoned: list[AbandonedChoice] = Field(
        default_factory=list, max_length=MAX_ABANDONED,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    """Configurations moved away from for unschedulable pods, with their backoff."""


class ModelCacheStatus(APIModel):
    """Where the endpoint's model weights come from (see spec.cache)."""

    source: ModelSource
    """AIMCache (a shared AIMCache holds the model Ready: its PVC is mounted read-only),
    Own (the endpoint downloads the model onto its own cache PVC) or None (the engine
    downloads the model into the container at every start)."""
    aim_cache: ShortString | None = None
    """The AIMCache in the namespace that lists the model (used, waited for, or given up
    on: see state and the CacheReady condition)."""
    persistent_volume_claim: ShortString | None = None
    """The PVC holding the weights the pods use: the AIMCache's, or the endpoint's own."""
    path: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Where the pods read the model from when source is AIMCache."""
    state: CachedModelState | None = None
    """The model's state in that AIMCache: Pending, Downloading, Ready, Failed or
    Evicted."""
    waiting_since: datetime | None = None
    """Since when the endpoint waits for the AIMCache to download the model; the wait
    ends after the operator's --cache-wait-timeout counted from here."""


class CanaryStatus(APIModel):
    """The endpoint's canary rollout: the last one, kept once it is over."""

    phase: CanaryPhase
    """Progressing (the canary's pods start), Analyzing (all Ready; healthy since
    analysisStartTime), Promoting (the Deployment takes the canary's template),
    Succeeded, or RolledBack (the canary removed; the Deployment untouched)."""
    weight: int = Field(0, ge=0, le=100)
    """Percent of the Service's pods that are the canary's (its approximate share of
    requests)."""
    replicas: int = Field(0, ge=0)
    """Replicas of the canary Deployment."""
    start_time: datetime | None = None
    """When this canary started."""
    analysis_start_time: datetime | None = None
    """Since when all canary replicas have been Ready and healthy (the clock that must
    reach spec.deployment.canary.duration)."""
    template_hash: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Hash of the pod template the canary runs."""
    stable_template_hash: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Hash of the pod template the Deployment ran when the canary started."""
    result: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The analysis result: Pending, Passed, Failed, Aborted, PromotedByAnnotation or
    Reverted (the spec went back to the Deployment's template)."""
    message: Message = ""
    """What happens and why, with the evidence of a failure."""
    promote_token: Annotated[str, StringConstraints(max_length=256)] | None = None
    """The last value of the canary-promote annotation acted on."""
    abort_token: Annotated[str, StringConstraints(max_length=256)] | None = None
    """The last value of the canary-abort annotation acted on."""


class AIMEndpointStatus(APIModel):
    """Observed state of an AIMEndpoint."""

    observed_generation: int | None = Field(None, ge=0)
    """The .metadata.generation this status reflects."""
    conditions: Conditions = Field(default_factory=list)
    """Current conditions (Ready, RecipeSelected, ...)."""
    replicas: int | None = Field(None, ge=0)
    """Total pods of the endpoint (scale subresource status.replicas)."""
    ready_replicas: int | None = Field(None, ge=0)
    """Pods that are ready."""
    available_replicas: int | None = Field(None, ge=0)
    """Pods that have been ready for the minimum ready time."""
    selector: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """Label selector of the pods, in string form (scale subresource labelSelectorPath,
    used by the HorizontalPodAutoscaler)."""
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """In-cluster base URL of the OpenAI-compatible API."""
    recipe: RecipeSelection | None = None
    canary: CanaryStatus | None = None
    """The canary rollout (spec.deployment.canary), when enabled."""
    cache: ModelCacheStatus | None = None


class AIMEndpoint(APIModel):
    """AIMEndpoint serves one model as an OpenAI-compatible inference endpoint on AMD GPUs:
    the operator selects a recipe that fits the cluster and runs a Deployment, Service,
    optional autoscaler, cache PVC and monitoring for it."""

    api_version: API_VERSION_LITERAL = "aim.engine.amd.com/v1alpha1"
    """APIVersion of the object."""
    kind: Literal["AIMEndpoint"] = "AIMEndpoint"
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: AIMEndpointSpec
    status: AIMEndpointStatus = Field(default_factory=AIMEndpointStatus)
