"""AIMRecipe objects parsed into small immutable types, validated, and indexed by model id.

An AIMRecipe (``aim.engine.amd.com/v1alpha1``) describes how to serve one
model on one hardware at one precision with one backend; each of its
``configurations`` is a GPU count with vLLM args and resources. Every
configuration becomes one :class:`RecipeConfig`, the unit the selector
ranks. Objects are validated once against the API model
(:class:`~aim_controller.api.v1alpha1.AIMRecipe`, the schema the API server
enforces); its defaults are the only defaults. Validation problems never raise:
they are recorded in ``RecipeConfig.invalid`` and surface as ``InvalidRecipe``
candidates.

A configuration is invalid when

* the object does not validate against the API model (then every
  configuration of the recipe is);
* two configurations of the recipe share a ``gpuCount`` (both are invalid,
  whatever their order; CEL rejects this at admission);
* its engine args use a different number of GPUs: ``--tensor-parallel-size``
  x ``--pipeline-parallel-size`` x ``--data-parallel-size`` (each defaulting
  to 1, as in vLLM and SGLang; SGLang's ``--tp-size``/``--pp-size``/
  ``--dp-size`` count too) must equal ``gpuCount``;
* ``resources.requests``/``limits`` ``amd.com/gpu`` differ from ``gpuCount``;
* ``--dtype`` contradicts a floating-point ``precision`` (``bfloat16`` with
  ``--dtype float16``);
* the precision is ``fp8`` on hardware without fp8 (CDNA2);
* the recipe's hardware is not a known model.

``performance`` is recipe-level in the CRD while configurations differ in
GPU count; the numbers are taken to describe the *smallest* configuration
(``reference_gpu_count``) and are scaled to the others by
:mod:`.perfmodel`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from aim_controller.api.v1alpha1 import GPU_RESOURCE, AIMRecipe, AIMRecipeSpec, validation_message

from . import gpus
from .identity import SOURCE_BUILTIN, SOURCE_ESTIMATED, SOURCE_NAMESPACE, SOURCE_RANK, ConfigId
from .quantity import gpu_count

__all__ = [
    "BYTES_PER_PARAM",
    "SOURCE_BUILTIN",
    "SOURCE_ESTIMATED",
    "SOURCE_NAMESPACE",
    "SOURCE_RANK",
    "Performance",
    "Recipe",
    "RecipeConfig",
    "RecipeIndex",
    "arg_value",
    "normalize_precision",
    "parse_recipe",
]

_PRECISION_ALIASES: Mapping[str, str] = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "fp8": "fp8",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8-e4m3": "fp8",
    "int8": "int8",
    "w8a8": "int8",
    "int4": "int4",
    "w4a16": "int4",
    "mxfp4": "mxfp4",
    "awq": "awq",
    "gptq": "gptq",
}
BYTES_PER_PARAM: Mapping[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "mxfp4": 0.5,
    "awq": 0.5,
    "gptq": 0.5,
}
_FLOAT_PRECISIONS = frozenset({"bfloat16", "float16", "float32"})
_DTYPE_ALIASES: Mapping[str, str] = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "float32": "float32",
    "float": "float32",
    "auto": "auto",
}
# Parallelism flags per backend (vLLM spellings, then SGLang's short forms).
_PARALLEL_FLAGS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "vllm": {
        "tensor": ("--tensor-parallel-size", "-tp"),
        "pipeline": ("--pipeline-parallel-size", "-pp"),
        "data": ("--data-parallel-size", "-dp"),
    },
    "sglang": {
        "tensor": ("--tensor-parallel-size", "--tp-size"),
        "pipeline": ("--pipeline-parallel-size", "--pp-size"),
        "data": ("--data-parallel-size", "--dp-size"),
    },
}


def normalize_precision(value: str) -> str:
    """Canonical precision name; unknown values are lower-cased and kept."""
    v = value.strip().lower()
    return _PRECISION_ALIASES.get(v, v)


def arg_value(args: Sequence[str], *names: str) -> str | None:
    """Value of the last ``--name value`` / ``--name=value`` in ``args`` (vLLM accepts ``_``)."""
    wanted = {n.replace("_", "-") for n in names}
    found: str | None = None
    for i, a in enumerate(args):
        flag, eq, val = a.partition("=")
        flag = flag.replace("_", "-") if flag.startswith("-") else flag
        if flag not in wanted:
            continue
        if eq:
            found = val
        elif i + 1 < len(args):
            found = args[i + 1]
    return found


@dataclass(frozen=True, slots=True)
class Performance:
    """Expected serving numbers; any may be unknown."""

    tokens_per_second: float | None = None
    latency_ms: float | None = None
    max_batch_size: int | None = None


@dataclass(frozen=True, slots=True)
class RecipeConfig:
    """One configuration of one recipe: the unit of selection.

    ``id`` is unique among valid configurations; ``hardware`` is canonical when
    known (the raw value otherwise, with ``invalid`` set).
    """

    source: str
    namespace: str | None
    name: str
    model_id: str
    hardware: str
    precision: str
    backend: str
    gpu_count: int
    enabled: bool
    args: tuple[str, ...]
    resources: Mapping[str, Mapping[str, str]]
    performance: Performance
    reference_gpu_count: int
    invalid: str = ""
    index: int | None = None  # position in spec.configurations; None for estimates
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    image: str | None = None
    # The gpuCount of the configuration this one was scaled from (:mod:`.derive`).
    derived_from: int | None = None

    @property
    def id(self) -> ConfigId:
        return ConfigId(self.source, self.namespace or "", self.name, self.gpu_count)


@dataclass(frozen=True, slots=True)
class Recipe:
    source: str
    namespace: str | None
    name: str
    model_id: str
    hardware: str
    precision: str
    backend: str
    configs: tuple[RecipeConfig, ...]

    @property
    def shadow_key(self) -> tuple[str, str, str]:
        return (self.hardware, self.precision, self.backend)


def _positive_int(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v > 0 else None
    if isinstance(v, str) and v.strip().isdigit():
        n = int(v.strip())
        return n if n > 0 else None
    return None


def _performance(spec: AIMRecipeSpec) -> Performance:
    p = spec.performance
    if p is None:
        return Performance()
    # 0 means "not measured", as an unset field.
    return Performance(
        float(p.expected_tokens_per_second) if p.expected_tokens_per_second else None,
        float(p.expected_latency_ms) if p.expected_latency_ms else None,
        p.max_batch_size,
    )


def _validate_config(
    gpu_n: int,
    args: Sequence[str],
    resources: Mapping[str, Mapping[str, str]],
    precision: str,
    hw: str,
    backend: str,
) -> str:
    flag_sets = _PARALLEL_FLAGS.get(backend, {})
    sizes: dict[str, int] = {"tensor": 1, "pipeline": 1, "data": 1}
    for what, flags in flag_sets.items():
        raw = arg_value(args, *flags)
        if raw is None:
            continue
        n = _positive_int(raw)
        if n is None:
            return f"{flags[0]} {raw!r} is not a positive integer"
        sizes[what] = n
    used = sizes["tensor"] * sizes["pipeline"] * sizes["data"]
    if used != gpu_n:
        how = f"--tensor-parallel-size {sizes['tensor']}"
        if sizes["pipeline"] != 1:
            how += f" x --pipeline-parallel-size {sizes['pipeline']}"
        if sizes["data"] != 1:
            how += f" x --data-parallel-size {sizes['data']}"
        if arg_value(args, *flag_sets["tensor"]) is None:
            how += ", the engine's default"
        gpus_word = "GPU" if used == 1 else "GPUs"
        return f"args use {used} {gpus_word} ({how}) but gpuCount is {gpu_n}"
    for part in ("requests", "limits"):
        v = resources.get(part, {}).get(GPU_RESOURCE)
        if v is not None and gpu_count(v) != gpu_n:
            return f"resources.{part}[amd.com/gpu]={v} but gpuCount is {gpu_n}"
    dtype = arg_value(args, "--dtype")
    if dtype is not None and precision in _FLOAT_PRECISIONS:
        d = _DTYPE_ALIASES.get(dtype.strip().lower())
        if d is None:
            return f"--dtype {dtype!r} is not a vLLM dtype"
        if d not in ("auto", precision):
            return f"--dtype {dtype} contradicts precision {precision}"
    model = gpus.MODELS.get(hw)
    if precision == "fp8" and model is not None and not model.fp8:
        return f"{hw} ({model.generation}) has no fp8 support"
    return ""


def _unvalidated(obj: Mapping[str, Any], source: str, err: ValidationError) -> Recipe | None:
    """A recipe whose object fails the API schema: every configuration invalid, but
    still matched by model id and shadowing what it names, so the user sees why."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    spec = spec if isinstance(spec, Mapping) else {}

    def text(v: object, default: str = "") -> str:
        return v.strip() if isinstance(v, str) and v.strip() else default

    model_id = text(spec.get("modelId"))
    if not model_id:
        return None
    fields = AIMRecipeSpec.model_fields
    name = text(meta.get("name"), "<unnamed>")
    namespace = text(meta.get("namespace")) or None if source == SOURCE_NAMESPACE else None
    raw_hw = text(spec.get("hardware"))
    hw = gpus.normalize_hardware(raw_hw) or raw_hw
    precision = normalize_precision(text(spec.get("precision"), str(fields["precision"].default)))
    backend = text(spec.get("backend"), str(fields["backend"].default)).lower()
    problem = f"invalid spec: {validation_message(err, limit=3)}"
    raw = spec.get("configurations")
    items: list[object] = list(raw) if isinstance(raw, list) and raw else [None]
    configs = tuple(
        RecipeConfig(
            source, namespace, name, model_id, hw, precision, backend,
            (_positive_int(c.get("gpuCount")) if isinstance(c, Mapping) else None) or 0,
            not (isinstance(c, Mapping) and c.get("enabled") is False), (),
            MappingProxyType({}), Performance(), 1, problem, i,
        )
        for i, c in enumerate(items)
    )  # fmt: skip
    return Recipe(source, namespace, name, model_id, hw, precision, backend, configs)


def parse_recipe(obj: Mapping[str, Any], source: str) -> Recipe | None:
    """Parse one AIMRecipe object; None when it names no model (it can match nothing)."""
    try:
        recipe = AIMRecipe.model_validate(obj)
    except ValidationError as err:
        return _unvalidated(obj, source, err)
    meta, spec = recipe.metadata, recipe.spec
    model_id = spec.model_id.strip()
    name = meta.name or "<unnamed>"
    namespace = (meta.namespace or None) if source == SOURCE_NAMESPACE else None
    hw = spec.hardware
    precision = spec.precision
    backend = spec.backend
    perf = _performance(spec)
    counts: dict[int, int] = {}
    for rc in spec.configurations:
        counts[rc.gpu_count] = counts.get(rc.gpu_count, 0) + 1
    reference = min(counts)
    configs: list[RecipeConfig] = []
    for index, rc in enumerate(spec.configurations):
        n = rc.gpu_count
        args = tuple(rc.args)
        res = rc.resources
        resources: Mapping[str, Mapping[str, str]] = MappingProxyType(
            {part: MappingProxyType({k: str(v) for k, v in getattr(res, part).items()})
             for part in ("requests", "limits") if res is not None and getattr(res, part)}
        )  # fmt: skip
        if counts[n] > 1:
            invalid = f"gpuCount {n} appears in {counts[n]} configurations"
        else:
            invalid = _validate_config(n, args, resources, precision, hw, backend)
        configs.append(
            RecipeConfig(
                source=source,
                namespace=namespace,
                name=name,
                model_id=model_id,
                hardware=hw,
                precision=precision,
                backend=backend,
                gpu_count=n,
                enabled=rc.enabled,
                args=args,
                resources=resources,
                performance=perf,
                reference_gpu_count=reference,
                invalid=invalid,
                index=index,
                env=MappingProxyType({e.name: e.value for e in rc.env}),
                image=spec.image,
            )
        )
    return Recipe(source, namespace, name, model_id, hw, precision, backend, tuple(configs))


_PARSE_MEMO: dict[tuple[str, str, str, str, str], Recipe | None] = {}
_PARSE_MEMO_MAX = 8192


def _parse_memoized(obj: Mapping[str, Any], source: str) -> Recipe | None:
    """parse_recipe, memoized by (uid or namespace/name, resourceVersion) when the object has one.

    The API server changes resourceVersion on every write, so a hit is the
    same content; objects without one (tests, hand-made dicts) are parsed
    every time.
    """
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    if not rv:
        return parse_recipe(obj, source)
    key = (
        source,
        str(meta.get("uid", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(rv),
    )
    if key in _PARSE_MEMO:
        return _PARSE_MEMO[key]
    if len(_PARSE_MEMO) >= _PARSE_MEMO_MAX:
        _PARSE_MEMO.clear()  # crude but bounded; a full re-parse of a snapshot is cheap
    recipe = _PARSE_MEMO[key] = parse_recipe(obj, source)
    return recipe


def _model_key(obj: Mapping[str, Any], namespace: str | None) -> str | None:
    spec = obj.get("spec")
    # type() before isinstance(): this runs for every recipe of a view's scan.
    if type(spec) is not dict and not isinstance(spec, Mapping):
        return None
    model = spec.get("modelId")
    if type(model) is not str and not isinstance(model, str):
        return None
    if namespace is not None:
        ns = (obj.get("metadata") or {}).get("namespace")
        if ns and ns != namespace:
            return None
    return model.strip().lower() or None


class RecipeIndex:
    """AIMRecipe objects of one source, looked up by model id (case-insensitive).

    :meth:`build` groups the objects by model id up front (one pass; cache the
    index by snapshot version and share it between selections); :meth:`view`
    only wraps them and scans on lookup, for one-off selections. Either way a
    model's recipes are parsed on first lookup and kept. With ``namespace``,
    objects from other namespaces are ignored. Lookups only add to internal
    caches (idempotently), so sharing an index between threads is safe.
    """

    __slots__ = ("_groups", "_namespace", "_objects", "_parsed", "source")

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]],
        source: str,
        namespace: str | None = None,
        *,
        grouped: bool = True,
    ) -> None:
        self.source = source
        self._namespace = namespace
        self._objects = tuple(objects)
        self._groups: dict[str, list[Mapping[str, Any]]] | None = None
        self._parsed: dict[str, tuple[Recipe, ...]] = {}
        if grouped:
            self._group()

    @classmethod
    def build(
        cls, objects: Iterable[Mapping[str, Any]], source: str, namespace: str | None = None
    ) -> RecipeIndex:
        return cls(objects, source, namespace, grouped=True)

    @classmethod
    def view(
        cls, objects: Iterable[Mapping[str, Any]], source: str, namespace: str | None = None
    ) -> RecipeIndex:
        return cls(objects, source, namespace, grouped=False)

    def _group(self) -> dict[str, list[Mapping[str, Any]]]:
        if self._groups is None:
            groups: dict[str, list[Mapping[str, Any]]] = {}
            for obj in self._objects:
                key = _model_key(obj, self._namespace)
                if key is not None:
                    groups.setdefault(key, []).append(obj)
            self._groups = groups
        return self._groups

    def lookup(self, model_id: str) -> tuple[Recipe, ...]:
        key = model_id.strip().lower()
        hit = self._parsed.get(key)
        if hit is None:
            if self._groups is not None:
                objs: Iterable[Mapping[str, Any]] = self._groups.get(key, ())
            else:
                objs = self._scan(key)
            parsed = (_parse_memoized(o, self.source) for o in objs)
            hit = tuple(
                sorted(
                    (r for r in parsed if r is not None), key=lambda r: (r.namespace or "", r.name)
                )
            )
            self._parsed[key] = hit
        return hit

    def _scan(self, key: str) -> list[Mapping[str, Any]]:
        out = []
        for o in self._objects:
            spec = o.get("spec")
            if type(spec) is dict:  # cheap reject of other models first
                model = spec.get("modelId")
                if type(model) is str and model.lower().strip() != key:
                    continue
            if _model_key(o, self._namespace) == key:
                out.append(o)
        return out

    def model_ids(self) -> list[str]:
        """Display model ids (the smallest spelling among a model's recipes), sorted."""
        groups = self._group()
        out = []
        for key in sorted(groups):
            spellings = {
                str((o.get("spec") or {}).get("modelId", key)).strip() for o in groups[key]
            }
            out.append(min(spellings))
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self._group().values())
