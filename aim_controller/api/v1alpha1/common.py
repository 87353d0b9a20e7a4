"""Shared building blocks of the v1alpha1 models.

The pydantic models are the single source of truth: `aim_controller.api.crdgen`
turns them into the CRD schemas. Field docstrings become the schema descriptions
(`kubectl explain`), `Field` constraints become OpenAPI validations, and
`json_schema_extra` carries what OpenAPI cannot say (CEL rules, list types,
int-or-string markers, `default: {}` on nested objects so their own defaults apply).

Parsing is lenient about unknown fields (`extra="ignore"`): objects come from the
API server, which has already pruned and validated them, and a controller that is
one release behind its CRD must not fail on a field it does not know yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

# A Kubernetes resource.Quantity without a sign (requests, limits and sizes are
# never negative). Same grammar as the apimachinery pattern controller-gen emits.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# One or more `<number><unit>` terms, e.g. 30s, 1h30m, 7d, 250ms.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
# Five whitespace-separated cron fields, or one of the @-macros CronJob accepts.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9A-Za-z*?/,-]+( +[0-9A-Za-z*?/,-]+){4})$"
)
# metav1.Condition's reason: a CamelCase machine-readable code.
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# metav1.Condition's type: an optionally prefixed qualified name.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
# A Kubernetes object name (DNS-1123 subdomain).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Hardware = Literal[
    "MI210", "MI250", "MI250X", "MI300A", "MI300X", "MI308X", "MI325X", "MI350X", "MI355X"
]
Precision = Literal["float16", "bfloat16", "fp8", "mxfp4", "int8", "int4", "awq", "gptq"]
Backend = Literal["vllm", "sglang"]
ConditionStatus = Literal["True", "False", "Unknown"]
API_VERSION_LITERAL = Literal["aim.engine.amd.com/v1alpha1"]

HARDWARE_MODELS: tuple[Hardware, ...] = get_args(Hardware)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
DEFAULT_BACKEND: Backend = "vllm"

MAX_GPUS_PER_REPLICA = 64
MAX_MESSAGE = 1024
"""Longest human-readable message in a status (conditions, candidates, configurations)."""

GpuCount = Annotated[int, Field(ge=1, le=MAX_GPUS_PER_REPLICA)]
"""GPUs per replica (the engine's tensor-parallel size)."""

INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}

Quantity = Annotated[
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)],
    Field(json_schema_extra=INT_OR_STRING),
]
"""A Kubernetes quantity: an integer or a string such as "64Gi", "500m", "16"."""

IntOrPercent = Annotated[
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=r"^(100|[1-9]?[0-9])%$", max_length=4)],
    Field(json_schema_extra=INT_OR_STRING),
]
"""An absolute count or a percentage such as "25%" (like Deployment's maxSurge)."""

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
"""A duration such as "30s", "5m", "1h30m" or "7d"."""

ResourceList = dict[str, Quantity]
"""Resource name (cpu, memory, amd.com/gpu, ...) to quantity, as in a container's resources."""


class APIModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One `x-kubernetes-validations` entry.

    `field_path` is relative to the object the rule sits on (e.g. ".maxReplicas") and is
    where the API server reports the error; `reason` is one of FieldValueInvalid,
    FieldValueRequired, FieldValueForbidden, FieldValueDuplicate.
    """
    out = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def quantity_not_less(new: str, old: str) -> str:
    """CEL: quantity `new` >= quantity `old` (int-or-string fields).

    True when either is not a quantity: the schema pattern reports that one.
    """
    return (
        f"!isQuantity(string({new})) || !isQuantity(string({old}))"
        f" || quantity(string({new})).compareTo(quantity(string({old}))) >= 0"
    )


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules."""
    return {"x-kubernetes-validations": list(rules)}


def map_list(*keys: str, rules: tuple[dict[str, str], ...] = ()) -> dict[str, Any]:
    """`json_schema_extra` of a list whose items are identified by `keys`.

    Server-side apply merges such lists item by item and the API server rejects
    duplicate keys.
    """
    out: dict[str, Any] = {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": list(keys),
    }
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    return out


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    return value


def nested(model: type[BaseModel]) -> Any:
    """A nested object that is always present, so the defaults inside it apply.

    The schema default is the model's fully defaulted form (not just `{}`): the API
    server validates a default against the CEL rules as written, without filling in the
    inner defaults first.
    """
    default = _prune(model().model_dump(mode="json", by_alias=True))
    return Field(default_factory=model, json_schema_extra={"default": default})


class Condition(APIModel):
    """An observation of one aspect of the resource's state (metav1.Condition)."""

    type: Annotated[str, StringConstraints(pattern=CONDITION_TYPE_PATTERN, max_length=316)]
    """Type of condition in CamelCase, e.g. Ready."""
    status: ConditionStatus
    """Status of the condition: True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: datetime
    """When the condition last changed status."""
    reason: Annotated[
        str, StringConstraints(pattern=REASON_PATTERN, min_length=1, max_length=1024)
    ]
    """Machine-readable CamelCase reason for the last transition."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """Human-readable details about the last transition."""


Conditions = Annotated[
    list[Condition], Field(max_length=32, json_schema_extra=map_list("type"))
]
"""Conditions keyed by type (at most one per type)."""


class OwnerReference(APIModel):
    """Identifies an owning object (metav1.OwnerReference)."""

    api_version: str
    """API version of the owner."""
    kind: str
    """Kind of the owner."""
    name: str
    """Name of the owner."""
    uid: str
    """UID of the owner."""
    controller: bool | None = None
    """True if the owner is the managing controller."""
    block_owner_deletion: bool | None = None
    """If true, the owner cannot be deleted before this object is gone (foreground deletion)."""


class ObjectMeta(APIModel):
    """The subset of metav1.ObjectMeta the controller reads; other keys are kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    """Object name, unique in its namespace."""
    generate_name: str | None = None
    """Prefix the server uses to generate a name."""
    namespace: str | None = None
    """Namespace of the object."""
    uid: str | None = None
    """Server-assigned unique id."""
    resource_version: str | None = None
    """Opaque version for optimistic concurrency and watches."""
    generation: int | None = None
    """Sequence number of the desired state (spec)."""
    creation_timestamp: datetime | None = None
    """When the object was created."""
    deletion_timestamp: datetime | None = None
    """When graceful deletion was requested."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels of the object."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations of the object."""
    finalizers: list[str] = Field(default_factory=list)
    """Finalizers that must be removed before the object is deleted."""
    owner_references: list[OwnerReference] = Field(default_factory=list)
    """Objects this object depends on."""


def validation_message(err: ValidationError, limit: int = 5, *, prefix: str = "") -> str:
    """The first ``limit`` problems of a failed validation, as "spec.a.b: message; ...";
    ``prefix`` names where the validated value sits ("spec" for a spec alone)."""
    return "; ".join(
        f"{'.'.join(map(str, (prefix, *e['loc']) if prefix else e['loc']))}: {e['msg']}"
        for e in err.errors()[:limit]
    )
