"""AIMCache: a shared volume of pre-downloaded model weights."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, StringConstraints

from .common import (
    API_VERSION_LITERAL,
    CRON_PATTERN,
    NAME_PATTERN,
    APIModel,
    Conditions,
    Duration,
    ObjectMeta,
    Quantity,
    cel,
    map_list,
    nested,
    quantity_not_less,
    validations,
)

AccessMode = Literal["ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany"]
Priority = Literal["high", "medium", "low"]
CachePhase = Literal["Pending", "Provisioning", "Ready", "Degraded", "Failed"]
CachedModelState = Literal["Pending", "Downloading", "Ready", "Failed", "Evicted"]

ACCESS_MODES: tuple[AccessMode, ...] = get_args(AccessMode)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
CACHE_PHASES: tuple[CachePhase, ...] = get_args(CachePhase)
CACHED_MODEL_STATES: tuple[CachedModelState, ...] = get_args(CachedModelState)
MAX_CACHED_MODELS = 256

ModelId = Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=256)]


class CacheStorage(APIModel):
    """The PersistentVolumeClaim holding the cache."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                quantity_not_less("self.size", "oldSelf.size"),
                "storage.size cannot shrink (a PVC cannot shrink)",
                field_path=".size",
                reason="FieldValueForbidden",
            ),
            cel(
                "has(self.storageClass) == has(oldSelf.storageClass)"
                " && (!has(self.storageClass) || self.storageClass == oldSelf.storageClass)",
                "storage.storageClass is immutable",
                field_path=".storageClass",
                reason="FieldValueForbidden",
            ),
            cel(
                "self.accessMode == oldSelf.accessMode",
                "storage.accessMode is immutable",
                field_path=".accessMode",
                reason="FieldValueForbidden",
            ),
        )
    )

    storage_class: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    """StorageClass of the PVC. Unset means the cluster default. Immutable."""
    size: Quantity
    """Requested size, e.g. "500Gi". May grow (if the StorageClass allows expansion), never
    shrink."""
    access_mode: AccessMode = "ReadWriteMany"
    """PVC access mode. ReadWriteMany lets endpoints on any node mount the cache. Immutable."""


class CachedModel(APIModel):
    """A model to keep in the cache."""

    id: ModelId
    """Model identifier, as in AIMEndpoint spec.model.id. Unique within the cache."""
    priority: Priority = "medium"
    """Eviction priority when space runs out: low is evicted first, high last."""
    retention: Duration | None = None
    """How long the model is kept after it was last used, e.g. "30d". Unset means until
    evicted for space."""
    revision: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]+$",
                                               max_length=255)] | None = None
    """Hub revision to download: a branch, tag or commit. Unset means the default
    branch."""
    size_hint: Quantity | None = None
    """Expected size on disk, e.g. "16Gi", for the space check. Unset: estimated from the
    built-in catalog's parameter count and precision, else from the model id."""


class SecretKeyRef(APIModel):
    """A key of a Secret in the AIMCache's namespace."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=253)]
    """Name of the Secret."""
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = (
        "token")
    """Key within the Secret."""


class CacheSource(APIModel):
    """Where the models are downloaded from (the Hugging Face Hub or a mirror)."""

    hf_endpoint: Annotated[str, StringConstraints(pattern=r"^https?://\S+$",
                                                  max_length=2048)] | None = None
    """Base URL of a Hub mirror (HF_ENDPOINT), e.g. "https://hf-mirror.example.com". Unset
    means https://huggingface.co."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a Hub token (HF_TOKEN) for gated or private models. The
    download Jobs read it; the operator never does."""


class CleanupSpec(APIModel):
    """Periodic eviction of expired and low-priority models."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.enabled || has(self.schedule)",
                "cleanup.schedule is required when cleanup.enabled is true",
                field_path=".schedule",
                reason="FieldValueRequired",
            )
        )
    )

    enabled: bool = False
    """Run cleanup on schedule."""
    schedule: Annotated[str, StringConstraints(pattern=CRON_PATTERN, max_length=128)] | None = (
        None
    )
    """Cron schedule with five fields (minute hour day-of-month month day-of-week), e.g.
    "0 2 * * *" for daily at 02:00, or a macro such as @daily."""
    max_age: Duration | None = None
    """Evict models not used for this long, e.g. "30d" (a model's own retention wins)."""
    min_free_space: Quantity | None = None
    """Evict by priority until at least this much space is free, e.g. "100Gi". Must be less
    than storage.size."""


class AIMCacheSpec(APIModel):
    """Desired state of an AIMCache."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.cleanup) || !has(self.cleanup.minFreeSpace)"
                " || !isQuantity(string(self.cleanup.minFreeSpace))"
                " || !isQuantity(string(self.storage.size))"
                " || quantity(string(self.cleanup.minFreeSpace)).isLessThan("
                "quantity(string(self.storage.size)))",
                "cleanup.minFreeSpace must be less than storage.size",
                field_path=".cleanup.minFreeSpace",
                reason="FieldValueInvalid",
            )
        )
    )

    storage: CacheStorage
    models: list[CachedModel] = Field(
        default_factory=list,
        max_length=MAX_CACHED_MODELS,
        json_schema_extra=map_list(
            "id",
            rules=(
                cel(
                    "self.all(m, self.exists_one(n, n.id == m.id))",
                    "models must have distinct ids",
                    reason="FieldValueInvalid",
                ),
            ),
        ),
    )
    """Models to pre-download and keep."""
    source: CacheSource = nested(CacheSource)
    """Where models are downloaded from."""
    cleanup: CleanupSpec = nested(CleanupSpec)


class CachedModelStatus(APIModel):
    """State of one model in the cache."""

    id: ModelId
    """Model identifier."""
    state: CachedModelState
    """Pending, Downloading, Ready, Failed or Evicted."""
    size_bytes: int | None = Field(None, ge=0)
    """Bytes the model takes in the cache."""
    last_used_time: datetime | None = None
    """When an endpoint last used the model."""
    message: Annotated[str, StringConstraints(max_length=1024)] = ""
    """Details, e.g. the download error."""
    revision: Annotated[str, StringConstraints(max_length=255)] | None = None
    """The revision (commit) downloaded."""
    in_spec: bool = True
    """False once the model was removed from spec.models: it stays on the volume until
    cleanup removes it (after its retention)."""
    priority: Priority | None = None
    """The model's priority, as last given in the spec (kept for removed models)."""
    retention: Duration | None = None
    """The model's retention, as last given in the spec (kept for removed models)."""
    job: Annotated[str, StringConstraints(max_length=253)] | None = None
    """The download Job this state comes from."""
    job_uid: Annotated[str, StringConstraints(max_length=64)] | None = None
    """UID of that Job (tells a new download of an evicted model from the old one)."""


class AIMCacheStatus(APIModel):
    """Observed state of an AIMCache."""

    observed_generation: int | None = Field(None, ge=0)
    """The .metadata.generation this status reflects."""
    conditions: Conditions = Field(default_factory=list)
    """Current conditions (Ready, ...)."""
    phase: CachePhase | None = None
    """Summary of the cache's state."""
    persistent_volume_claim: Annotated[str, StringConstraints(max_length=253)] | None = None
    """Name of the PVC backing the cache."""
    capacity_bytes: int | None = Field(None, ge=0)
    """Capacity of the bound volume in bytes."""
    used_bytes: int | None = Field(None, ge=0)
    """Bytes used by cached models."""
    used: Annotated[str, StringConstraints(max_length=32)] | None = None
    """usedBytes, human readable (e.g. "80.6Gi")."""
    models_ready: Annotated[str, StringConstraints(max_length=16)] | None = None
    """Ready models of the spec over all of them, e.g. "2/3"."""
    models: list[CachedModelStatus] = Field(
        default_factory=list, max_length=MAX_CACHED_MODELS, json_schema_extra=map_list("id")
    )
    """Per-model state."""
    last_cleanup_time: datetime | None = None
    """When cleanup last ran."""
    last_cleanup: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """What the last cleanup did: removed models with reasons and the bytes freed."""


class AIMCache(APIModel):
    """AIMCache keeps a set of models downloaded on a shared volume so AIMEndpoints start
    without fetching weights, and evicts them by priority and age."""

    api_version: API_VERSION_LITERAL = "aim.engine.amd.com/v1alpha1"
    """APIVersion of the object."""
    kind: Literal["AIMCache"] = "AIMCache"
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: AIMCacheSpec
    status: AIMCacheStatus = Field(default_factory=AIMCacheStatus)
