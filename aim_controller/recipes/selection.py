"""Choose the recipe configuration an AIMEndpoint runs: pure, deterministic, explainable.

Candidates
    Every configuration of every AIMRecipe whose ``modelId`` equals the
    endpoint's ``model.id`` (case-insensitive): recipes of the endpoint's
    namespace first, then the built-in catalog. A namespace recipe with the
    same (hardware, precision, backend) as a catalog recipe shadows it, even
    when the namespace recipe is disabled or invalid: a namespace recipe is an
    explicit statement about that combination. Only when *no* recipe exists
    for the model are estimated configurations derived (:mod:`.estimate`).

Checks, in order (the first failure is the candidate's reason)
    ``ShadowedByNamespaceRecipe``; ``GpuCountMismatch`` (``resources.gpuCount``,
    else ``recipe.gpuCount``), ``PrecisionMismatch`` (``recipe.precision``) and
    ``BackendMismatch`` (``recipe.backend``, default vllm) -- set fields narrow
    the candidates with or without ``autoSelect``;
    ``Disabled``; ``InvalidRecipe``; ``InsufficientGpuMemory`` (estimates);
    ``HardwareNotPresent`` (no usable node serves the hardware);
    ``DoesNotFitOnOneNode`` (no node has ``gpuCount`` allocatable GPUs);
    ``InsufficientFreeGPUs`` (fewer than ``max(1, minReplicas)`` replicas fit
    in free GPUs; with equal-sized replicas first-fit decreasing is optimal,
    so this is ``sum(free // gpuCount) < replicas``); ``QuotaExceeded``
    (``replicas x gpuCount`` above what the namespace's GPU quota leaves).

Precedence (before any score)
    Recipes of the endpoint's namespace before the catalog (a platform team's
    own recipe is its explicit choice), then configurations whose GPU pool
    carries no taint before tainted pools: a taint marks capacity the admin
    keeps for work that needs it, so it is tolerated only when nothing
    untainted is feasible.

Score (lexicographic; all terms rounded so float noise cannot reorder)
    Performance is the recipe's ``performance`` scaled from its smallest
    configuration to this one (:mod:`.perfmodel`), or an estimate from the
    hardware, model size and precision when absent.

    * ``throughput``: tokens/s per GPU (desc), fewer GPUs, newer hardware,
      source (namespace, builtin, estimated), recipe namespace/name, gpuCount.
    * ``latency``: expected latency ms (asc), more GPUs, tokens/s per GPU
      (desc), newer hardware, source, namespace/name, gpuCount.
    * ``cost``: GPUs held at minReplicas (asc), tokens/s per GPU (desc), older
      hardware (keeps newer parts free), source, namespace/name, gpuCount.

    The reported ``score`` is the first term, signed so that higher is
    better: tokens/s per GPU, minus the latency in ms, or minus the GPUs
    held. The final (namespace/name, gpuCount) terms make every valid
    candidate's key unique, so the result never depends on input order.

Stickiness
    A previous decision (``status`` record) is kept (``Sticky``) while the
    endpoint's ``inputsHash`` is unchanged and its configuration still exists,
    is enabled, valid, unshadowed and has the same hardware/precision/backend
    -- even if it no longer fits in free capacity or quota, which its own pods
    hold. Other workloads coming and going therefore never move an endpoint.
    Only when the caller reports the endpoint's pods unschedulable for at
    least ``reselect_after`` is the best feasible *other* candidate chosen
    (``Reselected``); if there is none the previous choice stays. A previous
    choice that can no longer be kept (gone, disabled, changed, or an
    estimate now that recipes exist) is replaced with reason ``Reselected``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from aim_controller.api.v1alpha1 import MAX_CANDIDATES, AIMEndpointSpec, validation_message

from . import gpus
from .backoff import Abandoned, abandon
from .capacity import capacity_verdict
from .catalog import builtin_index
from .derive import derive_configs
from .estimate import ModelSize, estimate_options, model_size
from .identity import SOURCE_BUILTIN, SOURCE_ESTIMATED, SOURCE_NAMESPACE, SOURCE_RANK, ConfigId
from .inventory import GpuInventory
from .perfmodel import DEFAULT_PARAMS, estimate_performance, scale_latency, scale_tokens_per_second
from .quota import GpuQuota, gpu_quota
from .reasons import CLOSEST, Reason
from .recipe import RecipeConfig, RecipeIndex
from .request import EndpointRequest, PreviousChoice
from .text import clip, plural

__all__ = [
    "DEFAULT_RESELECT_AFTER",
    "Candidate",
    "Decision",
    "Reason",
    "Verdict",
    "select",
]

# How long an endpoint's pods may stay unschedulable before it moves (--unschedulable-grace).
DEFAULT_RESELECT_AFTER = timedelta(minutes=5)


class Verdict(StrEnum):
    SELECTED = "Selected"
    FEASIBLE = "Feasible"
    REJECTED = "Rejected"


SortKey = tuple[float | int | str, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration as the selector judged it.

    ``tokens_per_second`` and ``latency_ms`` are for one replica at this GPU
    count (None when rejected before scoring); ``score`` is the first term of
    the sort key for the decision's ``optimizeFor``.
    """

    config: RecipeConfig
    verdict: Verdict
    reason: Reason
    message: str
    tokens_per_second: float | None = None
    latency_ms: float | None = None
    score: float | None = None

    @property
    def id(self) -> ConfigId:
        return self.config.id

    @property
    def estimated(self) -> bool:
        return self.config.source == SOURCE_ESTIMATED

    def to_status(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"recipe": c.name, "source": c.source}
        # Empty strings (a recipe without hardware) are omitted, like absent values.
        out |= {k: v for k, v in _identity(c).items() if v}
        out |= {
            "gpuCount": c.gpu_count,
            "verdict": str(self.verdict),
            "reason": str(self.reason),
            "message": clip(self.message),
        }
        if self.score is not None:
            out["score"] = self.score
        return out


def _identity(c: RecipeConfig) -> dict[str, str]:
    return {"hardware": c.hardware, "precision": c.precision, "backend": c.backend}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one selection.

    ``candidates`` holds the chosen candidate first, then the other feasible
    ones in rank order, then the rejected ones in a fixed order. ``chosen``
    is None exactly when ``reason`` is NoRecipe, NoFeasibleCandidate or
    InvalidSpec.
    """

    reason: Reason
    message: str
    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    inputs_hash: str
    optimize_for: str
    replicas: int
    tolerations: tuple[Mapping[str, str], ...] = ()
    abandoned: tuple[Abandoned, ...] = ()
    # Sticky although its pods are unschedulable past the grace (nothing else is
    # feasible): worth recording, unlike a plain sticky decision.
    held_unschedulable: bool = False

    @property
    def args(self) -> list[str]:
        return list(self.chosen.config.args) if self.chosen else []

    @property
    def resources(self) -> dict[str, dict[str, str]]:
        if not self.chosen:
            return {}
        return {k: dict(v) for k, v in self.chosen.config.resources.items()}

    @property
    def env(self) -> dict[str, str]:
        return dict(self.chosen.config.env) if self.chosen else {}

    @property
    def image(self) -> str | None:
        return self.chosen.config.image if self.chosen else None

    @property
    def device_ids(self) -> tuple[str, ...]:
        """PCI device ids of the GPUs that can run the chosen hardware (node affinity)."""
        return gpus.device_ids_for(self.chosen.config.hardware) if self.chosen else ()

    def to_status(self, max_candidates: int = MAX_CANDIDATES) -> dict[str, Any]:
        """The ``status.recipe`` record (the API's RecipeSelection); also the
        ``previous`` input of the next selection.

        Keys with no value (``recipeNamespace`` of a builtin recipe, the
        chosen fields when nothing was chosen) are omitted rather than null.
        """
        out: dict[str, Any] = {}
        ch = self.chosen
        if ch is not None:
            c = ch.config
            record = c.id.to_record()
            out["recipeName"] = record.pop("recipeName")
            if "recipeNamespace" in record:
                out["recipeNamespace"] = record.pop("recipeNamespace")
            if c.index is not None:
                out["configurationIndex"] = c.index
            out["source"] = record.pop("source")
            out |= {k: v for k, v in _identity(c).items() if v}
            out |= record  # gpuCount
            if ch.score is not None:
                out["score"] = ch.score
        out["estimated"] = bool(ch and ch.estimated)
        out |= {
            "optimizeFor": self.optimize_for,
            "inputsHash": self.inputs_hash,
            "reason": str(self.reason),
            "message": clip(self.message),
            "candidates": [c.to_status() for c in self.candidates[:max_candidates]],
        }
        if len(self.candidates) > max_candidates:
            out["candidatesOmitted"] = len(self.candidates) - max_candidates
        if self.abandoned:
            out["abandoned"] = [a.to_record() for a in self.abandoned]
        return out


# --- evaluation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Eval:
    config: RecipeConfig
    rejection: tuple[Reason, str] | None
    static: bool  # rejection is one of STATIC_REJECTIONS
    tps: float | None = None
    latency: float | None = None
    sort_key: SortKey = ()
    score: float | None = None
    # Manual mode: why the chosen configuration's pods may wait (it does not fit now).
    waits: str = ""
    # What a feasible candidate should know (the capacity verdict's note).
    note: str = ""


def _static_rejection(
    c: RecipeConfig, req: EndpointRequest, shadowed_by: str | None, memory_problem: str
) -> tuple[Reason, str] | None:
    if shadowed_by:
        return (
            Reason.SHADOWED,
            f"namespace recipe {shadowed_by} covers {c.hardware}/{c.precision}/{c.backend}",
        )
    if req.gpu_count is not None and c.gpu_count != req.gpu_count:
        return (
            Reason.GPU_COUNT_MISMATCH,
            f"has {c.gpu_count} GPUs; the endpoint asks for {req.gpu_count}",
        )
    if req.precision is not None and c.precision != req.precision:
        return (
            Reason.PRECISION_MISMATCH,
            f"precision {c.precision}; the endpoint asks for {req.precision}",
        )
    if req.backend is not None and c.backend != req.backend:
        return Reason.BACKEND_MISMATCH, f"backend {c.backend}; the endpoint asks for {req.backend}"
    if req.hardware is not None and c.hardware != req.hardware:
        return (
            Reason.HARDWARE_MISMATCH,
            f"hardware {c.hardware}; the endpoint asks for {req.hardware}",
        )
    if not c.enabled:
        return Reason.DISABLED, "configuration is disabled (enabled: false)"
    if c.invalid:
        return Reason.INVALID_RECIPE, c.invalid
    if memory_problem:
        return Reason.INSUFFICIENT_GPU_MEMORY, memory_problem
    return None


def _capacity_rejection(
    c: RecipeConfig, replicas: int, inventory: GpuInventory, quota: GpuQuota | None
) -> tuple[tuple[Reason, str] | None, str]:
    """The capacity or quota rejection, if any, and the capacity verdict's note (e.g.
    that a mixed node does not guarantee the GPU type)."""
    verdict = capacity_verdict(c.hardware, c.gpu_count, replicas, inventory)
    if verdict.rejection is not None:
        return verdict.rejection, ""
    g = c.gpu_count
    if quota is not None and replicas * g > quota.room:
        return (
            Reason.QUOTA_EXCEEDED,
            f"needs {replicas}x{g}={replicas * g} amd.com/gpu; {quota.describe()}",
        ), ""
    return None, verdict.note


def _performance(c: RecipeConfig, size: ModelSize | None) -> tuple[float, float]:
    p = c.performance
    tps, lat = p.tokens_per_second, p.latency_ms
    ref = c.reference_gpu_count or c.gpu_count
    if tps is None or lat is None:
        est = estimate_performance(
            c.hardware,
            size.params if size else DEFAULT_PARAMS,
            c.precision,
            ref,
            size.active_params if size else None,
        )
        tps = tps if tps is not None else est.tokens_per_second
        lat = lat if lat is not None else est.latency_ms
    assert tps is not None and lat is not None
    return scale_tokens_per_second(tps, ref, c.gpu_count), scale_latency(lat, ref, c.gpu_count)


def _sort_key(
    c: RecipeConfig, tps: float, lat: float, req: EndpointRequest
) -> tuple[SortKey, float]:
    g = c.gpu_count
    per_gpu = round(tps / g, 1)
    latency = round(lat, 1)
    rank = gpus.hardware_rank(c.hardware)
    tail: SortKey = (SOURCE_RANK.get(c.source, 9), c.namespace or "", c.name, g)
    if req.optimize_for == "latency":
        return (latency, -g, -per_gpu, -rank, *tail), -latency
    if req.optimize_for == "cost":
        total = g * req.replicas
        return (total, -per_gpu, rank, *tail), -float(total)
    return (-per_gpu, g, -rank, *tail), per_gpu


def _evaluate(
    c: RecipeConfig,
    req: EndpointRequest,
    inventory: GpuInventory,
    quota: GpuQuota | None,
    size: ModelSize | None,
    shadowed_by: str | None,
    memory_problem: str = "",
) -> _Eval:
    rej = _static_rejection(c, req, shadowed_by, memory_problem)
    if rej is not None:
        return _Eval(c, rej, True)
    tps, lat = _performance(c, size)
    key, score = _sort_key(c, tps, lat, req)
    # Precedence before performance: the namespace's own recipes (the platform
    # team's explicit intent) before the catalog, and untainted GPU pools before
    # tainted ones (a taint marks capacity the admin keeps for work that needs it;
    # it is tolerated only when nothing untainted can serve).
    pool = inventory.pool(c.hardware)
    key = (SOURCE_RANK.get(c.source, 9), bool(pool and pool.tolerations), *key)
    rej, note = _capacity_rejection(c, req.replicas, inventory, quota)
    if rej is not None and not req.auto_select and rej[0] in _TRANSIENT:
        # Manual means manual: the configuration asked for is chosen even when the GPUs
        # are busy now; its pods wait for them, and the status says so.
        return _Eval(c, None, False, tps, lat, key, score, waits=f"{rej[0]}: {rej[1]}")
    return _Eval(c, rej, False, tps, lat, key, score, note=note)


def _matches(e: _Eval) -> bool:
    """Whether the configuration is of the hardware, precision and backend asked for."""
    return e.rejection is None or e.rejection[0] not in _OTHER_KIND


_OTHER_KIND = frozenset({Reason.SHADOWED, Reason.PRECISION_MISMATCH, Reason.BACKEND_MISMATCH,
                         Reason.HARDWARE_MISMATCH})
# Capacity rejections that pass with time (GPUs freed, quota released).
_TRANSIENT = frozenset({Reason.INSUFFICIENT_FREE_GPUS, Reason.QUOTA_EXCEEDED})


def _backed_off(e: _Eval, entry: Abandoned) -> _Eval:
    until = entry.until.strftime("%Y-%m-%dT%H:%M:%SZ")
    times = "once" if entry.count == 1 else f"{entry.count} times"
    msg = (f"left {times} because its pods stayed unschedulable; not chosen again "
           f"before {until}")
    return _Eval(e.config, (Reason.UNSCHEDULABLE_BACKOFF, msg), False, e.tps, e.latency,
                 e.sort_key, e.score)


def _rejected_order(e: _Eval) -> tuple[int, str, str, int, str, str]:
    c = e.config
    reason, msg = e.rejection or (Reason.SELECTED, "")
    return (SOURCE_RANK.get(c.source, 9), c.namespace or "", c.name, c.gpu_count, str(reason), msg)


def _metric(e: _Eval, optimize_for: str, replicas: int) -> str:
    g = e.config.gpu_count
    if optimize_for == "latency":
        return f"~{e.latency:.0f} ms expected latency"
    if optimize_for == "cost":
        return f"{replicas * g} GPUs at {plural(replicas, 'replica')}"
    return f"~{(e.tps or 0) / g:.0f} tokens/s per GPU"


# Every scored sort key starts with the precedence terms (source rank, tainted pool);
# the score terms follow (see _evaluate).
_PRECEDENCE_TERMS = 2
_SOURCE_WORDS = {SOURCE_NAMESPACE: "namespace recipe", SOURCE_BUILTIN: "the catalog",
                 SOURCE_ESTIMATED: "an estimate"}


def _lost_on_precedence(loser: _Eval, winner: _Eval) -> bool:
    """``loser`` ranks ahead of ``winner`` on score alone; precedence put it behind."""
    n = _PRECEDENCE_TERMS
    return (loser.sort_key[:n] > winner.sort_key[:n]
            and loser.sort_key[n:] < winner.sort_key[n:])


def _precedence(winner: _Eval, loser: _Eval, inventory: GpuInventory) -> str:
    """Which precedence rule put ``winner`` before ``loser``, in words."""
    w, lo = winner.config, loser.config
    if w.source != lo.source:
        return (f"{_SOURCE_WORDS.get(w.source, w.source)} before "
                f"{_SOURCE_WORDS.get(lo.source, lo.source)}")
    pool = inventory.pool(lo.hardware)
    taints = ", ".join(f"{t.key}:{t.effect}" for t in pool.tolerations) if pool else ""
    return f"untainted GPU pools before tainted ones ({lo.hardware} nodes carry {taints})"


def _preferred_over(
    chosen: _Eval,
    feasible: list[_Eval],
    prev: PreviousChoice | None,
    req: EndpointRequest,
    inventory: GpuInventory,
) -> str:
    """The chosen message's note on the best-scoring feasible candidate it was preferred
    over by precedence ("" when none scores better)."""
    n = _PRECEDENCE_TERMS
    rivals = sorted(
        (e for e in feasible
         if e is not chosen and (prev is None or e.config.id != prev.id)
         and _lost_on_precedence(e, chosen)),
        key=lambda e: e.sort_key[n:],
    )
    if not rivals:
        return ""
    best = rivals[0]
    better = ("better-scoring" if (best.score or 0) > (chosen.score or 0)
              else "equally scoring")
    more = f" and {len(rivals) - 1} more" if len(rivals) > 1 else ""
    return (
        f"; preferred over {better} {best.config.id.ref} "
        f"({plural(best.config.gpu_count, 'GPU')}: "
        f"{_metric(best, req.optimize_for, req.replicas)}){more}: "
        f"{_precedence(chosen, best, inventory)}"
    )


def _describe(e: _Eval, replicas: int) -> str:
    c = e.config
    derived = (f", derived from its {plural(c.derived_from, 'GPU')} configuration"
               if c.derived_from else "")
    return (
        f"{c.id.ref} ({c.hardware}, {c.precision}, {c.backend}, "
        f"{plural(c.gpu_count, 'GPU')} x {plural(replicas, 'replica')}{derived})"
    )


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _available_models(*indexes: RecipeIndex, limit: int = 20) -> str:
    names = sorted({m for ix in indexes for m in ix.model_ids()}, key=str.lower)
    if not names:
        return "no model has a recipe"
    shown = ", ".join(names[:limit])
    return (
        "models with recipes: "
        + shown
        + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
    )


def _index(
    recipes: RecipeIndex | Iterable[Mapping[str, Any]] | None, source: str, namespace: str | None
) -> RecipeIndex:
    if recipes is None:
        return builtin_index() if source == SOURCE_BUILTIN else RecipeIndex.build((), source)
    if isinstance(recipes, RecipeIndex):
        return recipes
    return RecipeIndex.view(recipes, source, namespace)


def select(
    endpoint_spec: AIMEndpointSpec | Mapping[str, Any],
    namespace: str,
    recipes: RecipeIndex | Iterable[Mapping[str, Any]] | None,
    catalog: RecipeIndex | Iterable[Mapping[str, Any]] | None,
    inventory: GpuInventory,
    quota: GpuQuota | Iterable[Mapping[str, Any]] | None = None,
    previous: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
    unschedulable_since: datetime | None = None,
    reselect_after: timedelta = DEFAULT_RESELECT_AFTER,
    owned_quota_gpus: int = 0,
    namespace_quota_gpus: int | None = None,
) -> Decision:
    """Choose the configuration for one endpoint.

    ``recipes`` are the AIMRecipe objects of ``namespace`` (objects of other
    namespaces are ignored) or a prebuilt :class:`RecipeIndex`; ``catalog``
    None means the built-in catalog. ``quota`` is the namespace's
    ResourceQuota objects or a :class:`GpuQuota`. ``previous`` is the last
    :meth:`Decision.to_status` record. ``unschedulable_since`` is when the
    endpoint's pods became unschedulable (None if they are not) and ``now``
    the current time; the two only matter together. ``owned_quota_gpus`` is
    the GPUs the endpoint's own pods currently charge to the quota: they are
    given back when judging other candidates, which would replace them.
    ``namespace_quota_gpus`` is the ``amd.com/gpu`` requests of the namespace's
    live pods: the use of a quota's bare ``amd.com/gpu`` key, which Kubernetes
    does not track (see :func:`.quota.gpu_quota`).
    """
    try:
        spec = (endpoint_spec if isinstance(endpoint_spec, AIMEndpointSpec)
                else AIMEndpointSpec.model_validate(endpoint_spec))
        req = EndpointRequest.from_spec(spec)
    except ValidationError as err:
        problem = f"invalid spec: {validation_message(err, prefix='spec')}"
        return Decision(Reason.INVALID_SPEC, problem, None, (), "", "", 0)
    except ValueError as err:
        return Decision(Reason.INVALID_SPEC, str(err), None, (), "", "", 0)

    ns_index = _index(recipes, SOURCE_NAMESPACE, namespace)
    cat_index = _index(catalog, SOURCE_BUILTIN, None)
    ns_recipes = ns_index.lookup(req.model_id)
    cat_recipes = cat_index.lookup(req.model_id)
    room = gpu_quota(quota, owned=owned_quota_gpus, namespace_used=namespace_quota_gpus)
    size = model_size(req.model_id, req.size_hint)
    prev = PreviousChoice.from_record(previous)

    def decision(
        reason: Reason, message: str, chosen: Candidate | None, cands: list[Candidate]
    ) -> Decision:
        tol: tuple[Mapping[str, str], ...] = ()
        if chosen is not None:
            pool = inventory.pool(chosen.config.hardware)
            tol = tuple(t.toleration() for t in pool.tolerations) if pool else ()
        return Decision(
            reason,
            message,
            chosen,
            tuple(cands),
            req.inputs_hash,
            req.optimize_for,
            req.replicas,
            tol,
            abandoned,
            held,
        )

    evals: list[_Eval] = []
    abandoned = abandon(prev.abandoned, now) if prev is not None and now is not None else ()
    held = False
    estimating = not ns_recipes and not cat_recipes
    if estimating:
        if size is None:
            msg = (
                f"no AIMRecipe for model {req.model_id} in namespace {namespace} or the built-in "
                "catalog, and its size cannot be read from the model id or spec.model.sizeHint; "
                + _available_models(ns_index, cat_index)
            )
            return decision(Reason.NO_RECIPE, msg, None, [])
        keep = (
            (prev.hardware,)
            if prev and prev.id.source == SOURCE_ESTIMATED and prev.inputs_hash == req.inputs_hash
            else ()
        )
        options = estimate_options(
            req.model_id,
            size,
            inventory,
            precision=req.precision,
            gpu_count=req.gpu_count,
            also=keep,
        )
        if isinstance(options, str):
            msg = (
                f"no AIMRecipe for model {req.model_id} and no estimate: {options}; "
                + _available_models(ns_index, cat_index)
            )
            return decision(Reason.NO_RECIPE, msg, None, [])
        for opt in options:
            evals.append(_evaluate(opt.config, req, inventory, room, size, None, opt.problem))
    else:
        shadows = {r.shadow_key: f"{r.namespace}/{r.name}" for r in reversed(ns_recipes)}
        for r in ns_recipes:
            for c in r.configs:
                evals.append(_evaluate(c, req, inventory, room, size, None))
        for r in cat_recipes:
            by = shadows.get(r.shadow_key)
            for c in r.configs:
                evals.append(_evaluate(c, req, inventory, room, size, by))
        if req.gpu_count is not None and not any(
                e.config.gpu_count == req.gpu_count and _matches(e) for e in evals):
            # No recipe of the asked-for kind has the count asked for: scale the recipes'
            # nearest configuration.
            unshadowed = [*ns_recipes, *(r for r in cat_recipes if r.shadow_key not in shadows)]
            for c in derive_configs(unshadowed, req.gpu_count):
                evals.append(_evaluate(c, req, inventory, room, size, None))

    if not req.auto_select:
        unschedulable_since = None  # manual: never moved by the operator
    elif unschedulable_since is not None and prev is not None and prev.selected_at is not None:
        # The grace of a choice counts from when it was made: pods left over from the
        # previous choice cannot make a new one look "already past the grace".
        unschedulable_since = max(unschedulable_since, prev.selected_at)
    backoffs = {a.id: a for a in (prev.abandoned if prev else ()) if now and a.active(now)}
    if backoffs:
        evals = [_backed_off(e, backoffs[e.config.id])
                 if e.rejection is None and e.config.id in backoffs
                 and (prev is None or e.config.id != prev.id) else e for e in evals]

    feasible = sorted((e for e in evals if e.rejection is None), key=lambda e: e.sort_key)
    by_key = {e.config.id: e for e in evals if not e.static}

    chosen: _Eval | None = None
    reason = Reason.SELECTED
    note = ""
    message: str | None = None
    kept_previous = False
    if prev is not None:
        if prev.inputs_hash != req.inputs_hash:
            note = "the endpoint's model/recipe inputs changed; "
        else:
            sticky, why_not = _sticky(prev, by_key, evals, estimating)
            if sticky is not None:
                chosen, reason, message, kept_previous = _keep_or_move(
                    sticky, prev, feasible, now, unschedulable_since, reselect_after, req.replicas
                )
                if reason is Reason.RESELECTED and now is not None:
                    abandoned = abandon(abandoned, now, prev.id)
                held = (kept_previous and now is not None and unschedulable_since is not None
                        and now - unschedulable_since >= reselect_after)
            else:
                reason, note = Reason.RESELECTED, why_not + "; "

    if chosen is None:
        chosen = feasible[0] if feasible else None

    rejected = sorted(
        (e for e in evals if e.rejection is not None and e is not chosen), key=_rejected_order
    )
    if chosen is None:
        msg = note + _nothing_feasible(evals, rejected, req, inventory, estimating)
        cands = [_candidate(e, Verdict.REJECTED) for e in rejected]
        return decision(Reason.NO_FEASIBLE_CANDIDATE, msg, None, cands)

    if message is None:
        metric = _metric(chosen, req.optimize_for, req.replicas)
        if chosen.config.source == SOURCE_ESTIMATED:
            if reason is not Reason.RESELECTED:
                reason = Reason.ESTIMATED
            assert size is not None
            message = (
                f"{note}no AIMRecipe for {req.model_id}; estimated "
                f"{_describe(chosen, req.replicas)} from {size.params / 1e9:.3g}B parameters "
                f"({size.source}) for "
                f"{req.optimize_for}: {metric}"
            )
        else:
            message = (
                f"{note}selected {_describe(chosen, req.replicas)} for {req.optimize_for}: "
                f"{metric}; {len(feasible)} of {plural(len(evals), 'candidate')} feasible"
            )
        if chosen.note:
            message += f"; {chosen.note}"
        if chosen.waits:
            message += (f"; manual selection (autoSelect: false) kept although it does not "
                        f"fit now, its pods wait for GPUs ({chosen.waits})")

    if not kept_previous:
        message += _preferred_over(chosen, feasible, prev, req, inventory)
        if room is not None and not room.enforced:
            message += "; " + room.caveat()

    chosen_c = _candidate(chosen, Verdict.SELECTED, reason, message)
    others_reason = Reason.PREVIOUS_KEPT if kept_previous else Reason.OUTSCORED
    cands = [chosen_c]
    for e in feasible:
        if e is chosen:
            continue
        why_reason = others_reason
        if kept_previous:
            why = f"previous choice {chosen.config.id.ref} is kept"
        elif prev is not None and e.config.id == prev.id:
            why = "previous choice; its pods stayed unschedulable"
        elif _lost_on_precedence(e, chosen):
            why_reason = Reason.OUTRANKED
            why = (
                f"outranked by precedence: {_precedence(chosen, e, inventory)}; "
                f"{_metric(e, req.optimize_for, req.replicas)} against "
                f"{_metric(chosen, req.optimize_for, req.replicas)} of {chosen.config.id.ref}"
            )
        else:
            why = (
                f"ranks below {chosen.config.id.ref} for {req.optimize_for}: "
                f"{_metric(e, req.optimize_for, req.replicas)}"
            )
        cands.append(_candidate(e, Verdict.FEASIBLE, why_reason,
                                f"{why}; {e.note}" if e.note else why))
    cands += [_candidate(e, Verdict.REJECTED) for e in rejected]
    return decision(reason, message, chosen_c, cands)


def _nothing_feasible(
    evals: list[_Eval],
    rejected: list[_Eval],
    req: EndpointRequest,
    inventory: GpuInventory,
    estimating: bool,
) -> str:
    if not evals:
        return f"no usable AMD GPU nodes to estimate {req.model_id} for ({inventory.summary()})"
    counts = Counter(str(e.rejection[0]) for e in rejected if e.rejection)
    summary = ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])))
    closest = min(
        rejected,
        key=lambda e: (CLOSEST.index(e.rejection[0]) if e.rejection else 99, _rejected_order(e)),
    )
    detail = ""
    if closest.rejection:
        c = closest.config
        detail = f"; closest: {c.id.ref} ({plural(c.gpu_count, 'GPU')}): {closest.rejection[1]}"
    what = "estimated configurations" if estimating else "candidates"
    return f"none of {len(evals)} {what} for {req.model_id} is feasible ({summary}){detail}"


def _candidate(
    e: _Eval, verdict: Verdict, reason: Reason | None = None, message: str = ""
) -> Candidate:
    if verdict is Verdict.REJECTED and e.rejection is not None:
        reason, message = e.rejection
    assert reason is not None
    return Candidate(e.config, verdict, reason, message, e.tps, e.latency, e.score)


def _sticky(
    prev: PreviousChoice,
    by_key: Mapping[ConfigId, _Eval],
    evals: list[_Eval],
    estimating: bool,
) -> tuple[_Eval | None, str]:
    """The previous choice if it can be kept, else why not."""
    e = by_key.get(prev.id)
    if e is None:
        if prev.id.source == SOURCE_ESTIMATED and not estimating:
            return None, f"recipes now exist for the model, replacing the estimate {prev.id.name}"
        static = next((x for x in evals if x.config.id == prev.id), None)
        if static is not None and static.rejection is not None:
            reason, msg = static.rejection
            return (
                None,
                f"previous choice {prev.id.ref} ({prev.id.gpu_count} GPUs) is now {reason}: {msg}",
            )
        return None, f"previous choice {prev.id.ref} ({prev.id.gpu_count} GPUs) no longer exists"
    c = e.config
    was = (prev.hardware, prev.precision, prev.backend)
    now_ = (c.hardware, c.precision, c.backend)
    if was != now_:
        return None, f"recipe {c.id.ref} changed from {'/'.join(was)} to {'/'.join(now_)}"
    return e, ""


def _keep_or_move(
    sticky: _Eval,
    prev: PreviousChoice,
    feasible: list[_Eval],
    now: datetime | None,
    since: datetime | None,
    grace: timedelta,
    replicas: int,
) -> tuple[_Eval, Reason, str, bool]:
    capacity = f" (free capacity now: {sticky.rejection[1]})" if sticky.rejection else ""
    if now is not None and since is not None and now - since >= grace:
        waited = _duration(now - since)
        others = [e for e in feasible if e.config.id != prev.id]
        if others:
            best = others[0]
            return (
                best,
                Reason.RESELECTED,
                f"pods of {prev.id.ref} ({prev.id.gpu_count} GPUs) unschedulable for {waited} "
                f"(grace {_duration(grace)}); moved to {_describe(best, replicas)}",
                False,
            )
        # No duration in the words: this message is recorded in the status, and must
        # not change with every reconcile while nothing else does.
        return (
            sticky,
            Reason.STICKY,
            f"kept {_describe(sticky, replicas)}: its pods are unschedulable since "
            f"{since.strftime('%Y-%m-%dT%H:%M:%SZ')}, past the grace of {_duration(grace)}, "
            f"but no other candidate is feasible{capacity}",
            True,
        )
    return (
        sticky,
        Reason.STICKY,
        f"kept previous choice {_describe(sticky, replicas)}{capacity}",
        True,
    )
