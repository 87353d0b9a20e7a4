"""GPU inventory of a cluster snapshot: which AMD GPUs exist where, and how many are free.

Built from Node and Pod objects as plain dicts (informer-cache JSON). The
result is immutable; build it once per snapshot and cache it by the
snapshot's version (:class:`InventoryCache` also reuses per-object parses
across snapshots, keyed by ``resourceVersion``).

Rules (client-go/scheduler semantics where they exist):

* Only Ready nodes without ``spec.unschedulable`` are usable. Excluded GPU
  nodes stay listed with the reason, so messages can say "the MI300X nodes
  are cordoned" instead of "no MI300X".
* The GPU model comes from labeller labels, in this order: ``amd.com/gpu.
  device-id``, ``amd.com/gpu.product-name``, ``amd.com/gpu.family``, then the
  ``beta.amd.com/gpu.*`` forms of each. A source is used only if every value
  on the node maps to a known model; otherwise the next one is tried. Nodes
  that no source identifies are listed with ``model=None`` and a reason;
  nothing is guessed (see :mod:`.gpus`).
* Count-encoded labels (``amd.com/gpu.device-id.<id>=<count>``) give the
  node's GPUs per model. A node whose labels name one model (or one
  interchangeable group) is an ordinary node of that model, whichever form
  the labels take. A *mixed* node (several models, as AMD's labeller writes
  them) holds several types: it is listed under each with that type's count
  (:attr:`NodeGpus.gpus_by_hardware`), and it takes **1-GPU replicas only**.
  The pod asks for ``amd.com/gpu``, which does not say which GPUs it gets:
  the AMD device plugin has no per-model resource names (its ``mixed``
  naming strategy names partition styles, ``amd.com/cpx_nps4``) and its
  allocator picks GPUs by topology, not model. So a multi-GPU (tensor-
  parallel) replica could get GPUs of two models and never goes there, and
  a 1-GPU replica may get a GPU of another model of the node: its GPU type
  is not guaranteed, and the verdicts say so (:mod:`.capacity`). A mixed
  node's free GPUs are shared by its types: a pod bound there uses the
  node's total, and a type is never given more free GPUs than
  ``min(its count, the node's free)``. Mixed labels without counts are not
  usable.
* ``free = allocatable - requests`` of pods bound to the node
  (``spec.nodeName``) that have not terminated (phase not Succeeded/Failed).
  A pod's request is the scheduler's: the sum over containers (plus
  restartable init "sidecar" containers), at least the peak of any init
  container, plus ``spec.overhead``. For extended resources a missing request
  defaults to the limit, as API defaulting does.
* Partitioned GPUs (``amd.com/cpx_nps4`` and the like, or ``amd.com/gpu``
  when the node's ``amd.com/compute-memory-partition`` label says the GPUs
  are split) are kept apart from whole GPUs and never used for placement.
* Taints are reported. A node whose NoSchedule/NoExecute taints are not all
  tolerated (by default: keys under ``amd.com/``, the GPU-dedication taints
  the endpoint Deployment tolerates) is not usable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from aim_controller.api.v1alpha1 import GPU_RESOURCE

from . import gpus
from .quantity import gpu_count

__all__ = [
    "DEFAULT_TOLERATED_TAINT_PREFIXES",
    "GPU_RESOURCE",
    "PARTITION_RESOURCE_RE",
    "GpuInventory",
    "HardwarePool",
    "InventoryCache",
    "NodeGpus",
    "PartitionResource",
    "Taint",
    "build_inventory",
    "identify_node",
    "pod_device_requests",
]

PARTITION_RESOURCE_RE = re.compile(r"^amd\.com/(spx|dpx|tpx|qpx|cpx)_nps[0-9]+$")
PARTITION_LABEL = "amd.com/compute-memory-partition"
DEFAULT_TOLERATED_TAINT_PREFIXES: tuple[str, ...] = ("amd.com/",)

_LABEL_PREFIXES = (("amd.com/gpu.", False), ("beta.amd.com/gpu.", True))
_KINDS = ("device-id", "product-name", "family", "cu-count")
_IDENTIFIERS: Mapping[str, Callable[[str], gpus.Identity]] = {
    "device-id": gpus.identify_device_id,
    "product-name": gpus.identify_product_name,
    "family": gpus.identify_family,
}
_TERMINATED = frozenset({"Succeeded", "Failed"})
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True, order=True)
class Taint:
    key: str
    value: str
    effect: str

    def toleration(self) -> dict[str, str]:
        """A toleration for this taint's key and effect, whatever its value.

        Value-agnostic on purpose: tolerations end up in the pod template, and a
        node joining with another value of the same key must not roll the pods.
        """
        return {"key": self.key, "operator": "Exists", "effect": self.effect}


@dataclass(frozen=True, slots=True)
class PartitionResource:
    """A partitioned-GPU resource on a node (``profile`` is e.g. ``cpx_nps4``)."""

    resource: str
    profile: str
    allocatable: int
    free: int


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """GPU model(s) of a node as read from its labels.

    ``serves`` is the set of recipe hardware names the node's whole GPUs can
    run (empty when unidentified; on a mixed node every type's names).
    ``model`` is set only when one exact model is known. ``models`` lists
    (model or ``A|B`` when ambiguous, count or None when the labels carry no
    count). ``mixed`` is true exactly when the GPUs are of several
    interchangeable groups and every count is known; then
    ``gpus_by_hardware`` gives (hardware, GPUs of that type) for each name in
    ``serves`` (empty otherwise: all the node's GPUs serve each name).
    """

    model: str | None
    serves: frozenset[str]
    present: frozenset[str]
    models: tuple[tuple[str, int | None], ...]
    vram_gib: int | None
    identified_by: str
    reason: str
    mixed: bool = False
    gpus_by_hardware: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """One GPU node of the snapshot.

    Invariants: ``0 <= free <= allocatable`` (whole GPUs only); ``usable``
    implies ``serves`` is non-empty, the node is Ready and schedulable, and
    ``reason`` is empty or an informational note. ``mixed`` nodes hold
    several GPU types (``gpus_by_hardware``, from the labels' counts) and
    take 1-GPU replicas only (see the module docstring).
    """

    name: str
    model: str | None
    serves: frozenset[str]
    present: frozenset[str]
    models: tuple[tuple[str, int | None], ...]
    vram_gib: int | None
    allocatable: int
    free: int
    partitions: tuple[PartitionResource, ...]
    taints: tuple[Taint, ...]
    identified_by: str
    usable: bool
    reason: str
    # Device requests of the pods bound here, unclamped: free is derived from them.
    used: tuple[tuple[str, int], ...] = ()
    mixed: bool = False
    gpus_by_hardware: tuple[tuple[str, int], ...] = ()

    def gpus_of(self, hardware: str) -> int:
        """Allocatable GPUs of the node that can run ``hardware`` recipes."""
        if hardware not in self.serves:
            return 0
        if not self.mixed:
            return self.allocatable
        return min(dict(self.gpus_by_hardware).get(hardware, 0), self.allocatable)

    def free_for(self, hardware: str, gpus_per_replica: int) -> int:
        """Free GPUs that replicas of ``gpus_per_replica`` ``hardware`` GPUs may take
        here: 0 unless usable; on a mixed node 0 for multi-GPU replicas and at
        most ``min(the type's count, free)`` for 1-GPU ones (the free GPUs are
        shared by the node's types)."""
        if not self.usable or gpus_per_replica <= 0 or hardware not in self.serves:
            return 0
        if not self.mixed:
            return self.free
        return min(self.gpus_of(hardware), self.free) if gpus_per_replica == 1 else 0


@dataclass(frozen=True, slots=True)
class HardwarePool:
    """Usable nodes that serve one recipe hardware name, with free capacity precomputed.

    ``free_by_node``, ``free_histogram`` and ``max_allocatable`` cover the nodes
    whose GPUs all serve this hardware (replicas of any size). ``free_histogram``
    is the multiset of their free GPUs as (free, nodes) pairs, largest first, so
    fit checks cost O(distinct free values). ``mixed_free_by_node`` lists the
    usable mixed nodes holding this hardware with the free GPUs 1-GPU replicas
    of it may take there (``min(type count, node free)``), and
    ``mixed_max_allocatable`` is the largest such type count (at most the node's
    allocatable). The totals cover both kinds of node, each mixed node with its
    count of this type only.
    """

    hardware: str
    free_by_node: tuple[tuple[str, int], ...]  # (node, free) sorted by (-free, name)
    free_histogram: tuple[tuple[int, int], ...]
    max_allocatable: int
    total_allocatable: int
    total_free: int
    tolerations: tuple[Taint, ...]  # (key, effect) of tolerated taints on these nodes; value ""
    mixed_free_by_node: tuple[tuple[str, int], ...] = ()  # sorted by (-free, name)
    mixed_max_allocatable: int = 0

    @property
    def node_count(self) -> int:
        return len(self.free_by_node) + len(self.mixed_free_by_node)

    @property
    def mixed_nodes(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, _ in self.mixed_free_by_node))

    def largest_node(self, gpus_per_replica: int) -> int:
        """The most GPUs of this hardware one node offers a replica of this size."""
        if gpus_per_replica == 1:
            return max(self.max_allocatable, self.mixed_max_allocatable)
        return self.max_allocatable

    def replicas_that_fit(self, gpus_per_replica: int) -> int:
        """Replicas of ``gpus_per_replica`` GPUs (each on one node) that fit in free capacity.

        With equal-sized replicas first-fit decreasing is optimal and reduces
        to the sum of ``free // size`` over nodes; mixed nodes add their free
        GPUs of this type to 1-GPU replicas only.
        """
        if gpus_per_replica <= 0:
            return 0
        fit = sum(n * (f // gpus_per_replica) for f, n in self.free_histogram)
        if gpus_per_replica == 1:
            fit += sum(f for _, f in self.mixed_free_by_node)
        return fit

    def nodes_with_room(self, gpus_per_replica: int) -> tuple[str, ...]:
        """Names of the nodes where one replica of ``gpus_per_replica`` GPUs fits now, sorted."""
        if gpus_per_replica <= 0:
            return ()
        mixed = self.mixed_free_by_node if gpus_per_replica == 1 else ()
        return tuple(sorted(n for n, f in (*self.free_by_node, *mixed) if f >= gpus_per_replica))

    def free_summary(self, limit: int = 8, gpus_per_replica: int = 1) -> str:
        """Free GPUs per node, largest first; for 1-GPU replicas the mixed nodes
        follow a ``mixed, 1-GPU replicas only:`` tag, with their free GPUs of this type."""
        shown = ", ".join(f"{n}={f}" for n, f in self.free_by_node[:limit])
        more = len(self.free_by_node) - limit
        out = shown + (f", ... {more} more nodes" if more > 0 else "")
        if self.mixed_free_by_node and gpus_per_replica == 1:
            mixed = ", ".join(f"{n}={f}" for n, f in self.mixed_free_by_node[:limit])
            more = len(self.mixed_free_by_node) - limit
            mixed += f", ... {more} more mixed nodes" if more > 0 else ""
            out += ("; " if out else "") + f"mixed, 1-GPU replicas only: {mixed}"
        return out


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """Immutable GPU view of one cluster snapshot."""

    nodes: tuple[NodeGpus, ...]  # GPU nodes only, sorted by name
    pools: Mapping[str, HardwarePool] = field(default_factory=lambda: MappingProxyType({}))
    # hardware -> nodes that carry it but cannot be used; precomputed for messages
    unusable: Mapping[str, tuple[NodeGpus, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    tolerated_prefixes: tuple[str, ...] = DEFAULT_TOLERATED_TAINT_PREFIXES

    def pool(self, hardware: str) -> HardwarePool | None:
        return self.pools.get(hardware)

    def give_back(self, usages: Iterable[tuple[str, Mapping[str, int]]]) -> GpuInventory:
        """This snapshot with the devices of ``usages`` ((node, requests) as from
        :func:`pod_device_requests`) free again.

        An endpoint's own pods are not competition for its own selection: without
        this, an endpoint re-evaluated after its pods were placed would find its
        GPUs taken by itself. Returns ``self`` when nothing changes.
        """
        return self._adjusted(usages, _returned)

    def take(self, usages: Iterable[tuple[str, Mapping[str, int]]]) -> GpuInventory:
        """This snapshot with the devices of ``usages`` ((node, requests)) in use as
        well: GPUs promised to pods that are not bound yet (reservations). Returns
        ``self`` when nothing changes."""
        return self._adjusted(usages, _taken)

    def _adjusted(
        self,
        usages: Iterable[tuple[str, Mapping[str, int]]],
        adjust: Callable[[NodeGpus, Mapping[str, int]], NodeGpus],
    ) -> GpuInventory:
        per_node: dict[str, dict[str, int]] = {}
        for node, req in usages:
            acc = per_node.setdefault(node, {})
            for k, v in req.items():
                acc[k] = acc.get(k, 0) + v
        if not per_node:
            return self
        nodes = tuple(adjust(n, per_node[n.name]) if n.name in per_node else n
                      for n in self.nodes)
        return GpuInventory(
            nodes=nodes,
            pools=MappingProxyType(_pools(nodes, self.tolerated_prefixes)),
            unusable=self.unusable,
            tolerated_prefixes=self.tolerated_prefixes,
        )

    @property
    def hardware(self) -> tuple[str, ...]:
        """Hardware names with at least one usable node, newest first."""
        return tuple(sorted(self.pools, key=lambda h: (-gpus.hardware_rank(h), h)))

    @property
    def unidentified(self) -> tuple[NodeGpus, ...]:
        return tuple(n for n in self.nodes if not n.present)

    def unusable_with(self, hardware: str) -> tuple[NodeGpus, ...]:
        """Nodes that carry ``hardware`` GPUs but cannot be used (cordoned, tainted, ...)."""
        return self.unusable.get(hardware, ())

    def summary(self) -> str:
        if not self.pools:
            return "no usable AMD GPU nodes"
        return "; ".join(
            f"{h}: {p.node_count} node{'' if p.node_count == 1 else 's'}"
            f"{f' ({len(p.mixed_free_by_node)} mixed)' if p.mixed_free_by_node else ''}, "
            f"{p.total_free}/{p.total_allocatable} GPUs free"
            for h, p in ((h, self.pools[h]) for h in self.hardware)
        )


# --- labels -----------------------------------------------------------------


def _label_sources(labels: Mapping[str, str]) -> dict[tuple[bool, str], dict[str, int | None]]:
    """(beta, kind) -> {value: count or None}; count-encoded entries win over the single form."""
    single: dict[tuple[bool, str], str] = {}
    counted: dict[tuple[bool, str], dict[str, int | None]] = {}
    for key, val in labels.items():
        for prefix, beta in _LABEL_PREFIXES:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            for kind in _KINDS:
                if rest == kind:
                    single[(beta, kind)] = val
                elif rest.startswith(kind) and rest[len(kind) : len(kind) + 1] == ".":
                    try:
                        n: int | None = int(val)
                    except ValueError:
                        n = None
                    counted.setdefault((beta, kind), {})[rest[len(kind) + 1 :]] = n
            break
    out = dict(counted)
    for k, v in single.items():
        if k not in out:
            out[k] = {v: None}
    return out


def identify_node(labels: Mapping[str, str]) -> NodeIdentity:
    """Identify the GPU model(s) of a node from its labeller labels (pure)."""
    sources = _label_sources(labels)
    failures: list[str] = []
    for beta in (False, True):
        for kind in ("device-id", "product-name", "family"):
            entries = sources.get((beta, kind))
            if not entries:
                continue
            key = f"{'beta.' if beta else ''}amd.com/gpu.{kind}"
            cu = sources.get((beta, "cu-count")) or sources.get((not beta, "cu-count"))
            ident = _identify_entries(kind, entries, cu)
            if isinstance(ident, str):
                failures.append(f"{key}: {ident}")
                continue
            return replace(ident, identified_by=key)
    reason = (
        "; ".join(failures)
        if failures
        else "no amd.com/gpu.* labels (is the AMD node labeller running?)"
    )
    return NodeIdentity(None, frozenset(), frozenset(), (), None, "", reason)


def _identify_entries(
    kind: str, entries: Mapping[str, int | None], cu_counts: Mapping[str, int | None] | None
) -> NodeIdentity | str:
    """The identity the label values of one source give, or why they give none."""
    identify = _IDENTIFIERS[kind]
    resolved: list[tuple[frozenset[str], int | None, str]] = []
    for value, count in sorted(entries.items()):
        ident = identify(value)
        if not gpus.serves(ident.models):
            return ident.reason or f"unrecognised value {value!r}"
        resolved.append((ident.models, count, ident.reason))
    reasons = sorted({r for _, _, r in resolved if r})
    # A single ambiguous model (device 740c) may be settled by the cu-count label.
    if len(resolved) == 1 and len(resolved[0][0]) > 1 and cu_counts and len(cu_counts) == 1:
        pick = gpus.identify_cu_count(resolved[0][0], next(iter(cu_counts)))
        if pick is not None:
            resolved = [(frozenset({pick}), resolved[0][1], "")]
            reasons = []
    groups = {gpus.serves(models) for models, _, _ in resolved}
    present = frozenset().union(*groups)
    exact = {next(iter(m)) for m, _, _ in resolved if len(m) == 1}
    per_model: Counter[str] = Counter()
    uncounted: set[str] = set()
    for models, count, _ in resolved:
        name = "|".join(sorted(models))
        if count is None:
            uncounted.add(name)
        else:
            per_model[name] += count
    rows: list[tuple[str, int | None]] = list(per_model.items())
    rows += [(n, None) for n in sorted(uncounted - set(per_model))]
    models_t = tuple(sorted(rows, key=lambda r: r[0]))
    if len(groups) > 1:
        listing = ", ".join(f"{n}x{c}" if c is not None else n for n, c in models_t)
        if uncounted:
            why = (f"mixed GPU models ({listing}) without per-model counts in the labels: "
                   "not used")
            return NodeIdentity(None, frozenset(), present, models_t, None, "", why)
        by_hardware: Counter[str] = Counter()
        for models, count, _ in resolved:
            for hw in gpus.serves(models):
                by_hardware[hw] += count or 0
        why = (f"mixed GPU models ({listing}): 1-GPU replicas only, GPU type not guaranteed "
               "(amd.com/gpu does not say which GPUs a pod gets)")
        return NodeIdentity(None, present, present, models_t, None, "", why, mixed=True,
                            gpus_by_hardware=tuple(sorted(by_hardware.items())))
    serves = next(iter(groups))
    all_exact = len(exact) == 1 and all(len(m) == 1 for m, _, _ in resolved)
    model = next(iter(exact)) if all_exact else None
    reason = "" if model else "; ".join(reasons) + f" (serves {'/'.join(sorted(serves))} recipes)"
    vram = {gpus.MODELS[m].vram_gib for m in serves}
    return NodeIdentity(
        model, serves, present, models_t, vram.pop() if len(vram) == 1 else None, "", reason
    )


# --- pods -------------------------------------------------------------------


def _is_device_resource(name: str) -> bool:
    return name == GPU_RESOURCE or PARTITION_RESOURCE_RE.match(name) is not None


def _container_requests(container: Mapping[str, Any]) -> dict[str, int] | None:
    res = container.get("resources")
    if not res:
        return None
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    out: dict[str, int] | None = None
    for source in (req, lim):
        for name, qty in source.items():
            if not name.startswith("amd.com/") or not _is_device_resource(name):
                continue
            if source is lim and name in req:
                continue  # the request is authoritative when present
            if out is None:
                out = {}
            try:
                out[name] = gpu_count(qty)
            except ValueError:
                continue
    return out


def pod_device_requests(
    pod: Mapping[str, Any], *, bound_only: bool = True
) -> tuple[str, Mapping[str, int]] | None:
    """(node name, AMD device requests) of a bound, non-terminated pod; None if it holds none.

    With ``bound_only=False`` a pending pod counts too, with node name ``""`` (what it
    charges to a ResourceQuota, which does not wait for scheduling).
    """
    spec = pod.get("spec") or {}
    node = spec.get("nodeName") or ""
    if not node and bound_only:
        return None
    if (pod.get("status") or {}).get("phase") in _TERMINATED:
        return None
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        r = _container_requests(c)
        if r:
            for k, v in r.items():
                total[k] = total.get(k, 0) + v
    inits = spec.get("initContainers")
    if inits:
        sidecars: dict[str, int] = {}
        peak: dict[str, int] = {}
        for c in inits:
            r = _container_requests(c) or {}
            if c.get("restartPolicy") == "Always":
                for k, v in r.items():
                    total[k] = total.get(k, 0) + v
                    sidecars[k] = sidecars.get(k, 0) + v
                during = dict(sidecars)
            else:
                during = dict(sidecars)
                for k, v in r.items():
                    during[k] = during.get(k, 0) + v
            for k, v in during.items():
                if v > peak.get(k, 0):
                    peak[k] = v
        for k, v in peak.items():
            if v > total.get(k, 0):
                total[k] = v
    overhead = spec.get("overhead")
    if overhead:
        for name, qty in overhead.items():
            if name.startswith("amd.com/") and _is_device_resource(name):
                try:
                    total[name] = total.get(name, 0) + gpu_count(qty)
                except ValueError:
                    continue
    total = {k: v for k, v in total.items() if v > 0}
    return (node, total) if total else None


# --- nodes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NodeStatic:
    """Everything about a node that does not depend on pods."""

    name: str
    identity: NodeIdentity
    allocatable: Mapping[str, int]  # device resources only
    partition_profile: str
    taints: tuple[Taint, ...]
    excluded: str  # why the node cannot take pods at all, "" when Ready and schedulable


def _parse_node(node: Mapping[str, Any]) -> _NodeStatic | None:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    alloc_src = status.get("allocatable") or status.get("capacity") or {}
    allocatable: dict[str, int] = {}
    for name, qty in alloc_src.items():
        if name.startswith("amd.com/") and _is_device_resource(name):
            try:
                allocatable[name] = gpu_count(qty)
            except ValueError:
                continue
    has_labels = any(k.startswith(("amd.com/gpu.", "beta.amd.com/gpu.")) for k in labels)
    if not has_labels and not any(allocatable.values()):
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    excluded = ""
    if spec.get("unschedulable"):
        excluded = "cordoned (spec.unschedulable)"
    elif not ready:
        excluded = "not Ready"
    taints = tuple(
        sorted(
            Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
            for t in spec.get("taints") or ()
        )
    )
    return _NodeStatic(
        name=str(meta.get("name", "")),
        identity=identify_node(labels),
        allocatable=allocatable,
        partition_profile=str(labels.get(PARTITION_LABEL, "")),
        taints=taints,
        excluded=excluded,
    )


def _tolerated(taint: Taint, prefixes: tuple[str, ...]) -> bool:
    return taint.effect not in _BLOCKING_EFFECTS or taint.key.startswith(prefixes)


def _finish_node(
    st: _NodeStatic, used: Mapping[str, int] | None, tolerated_prefixes: tuple[str, ...]
) -> NodeGpus:
    used = used or {}
    ident = st.identity
    whole_alloc = st.allocatable.get(GPU_RESOURCE, 0)
    partitions: list[PartitionResource] = []
    notes: list[str] = []
    if st.partition_profile and not st.partition_profile.lower().startswith("spx"):
        if whole_alloc:
            partitions.append(
                PartitionResource(
                    GPU_RESOURCE,
                    st.partition_profile,
                    whole_alloc,
                    max(0, whole_alloc - used.get(GPU_RESOURCE, 0)),
                )
            )
        notes.append(
            f"GPUs are partitioned ({st.partition_profile}); amd.com/gpu units are partitions"
        )
        whole_alloc = 0
    for name in sorted(st.allocatable):
        m = PARTITION_RESOURCE_RE.match(name)
        if m:
            a = st.allocatable[name]
            partitions.append(
                PartitionResource(name, name.split("/", 1)[1], a, max(0, a - used.get(name, 0)))
            )
    free = max(0, whole_alloc - used.get(GPU_RESOURCE, 0)) if whole_alloc else 0
    blocking = [t for t in st.taints if not _tolerated(t, tolerated_prefixes)]
    if st.excluded:
        notes.insert(0, st.excluded)
    if ident.reason:
        notes.append(ident.reason)
    if blocking:
        notes.append(
            "untolerated taints " + ", ".join(f"{t.key}={t.value}:{t.effect}" for t in blocking)
        )
    if whole_alloc == 0 and not partitions:
        notes.append("no allocatable amd.com/gpu")
    usable = bool(ident.serves) and not st.excluded and not blocking and whole_alloc > 0
    return NodeGpus(
        name=st.name,
        model=ident.model,
        serves=ident.serves,
        present=ident.present,
        models=ident.models,
        vram_gib=ident.vram_gib,
        allocatable=whole_alloc,
        free=min(free, whole_alloc),
        partitions=tuple(partitions),
        taints=st.taints,
        identified_by=ident.identified_by,
        usable=usable,
        reason="; ".join(notes),
        used=tuple(sorted((k, v) for k, v in used.items() if v)),
        mixed=ident.mixed,
        gpus_by_hardware=ident.gpus_by_hardware,
    )


def _returned(node: NodeGpus, back: Mapping[str, int]) -> NodeGpus:
    """``node`` as if the pods holding ``back`` were not bound to it (same formulas
    as :func:`_finish_node`, on the unclamped requests)."""
    return _with_used(node, {k: max(0, v - back.get(k, 0)) for k, v in node.used})


def _taken(node: NodeGpus, more: Mapping[str, int]) -> NodeGpus:
    """``node`` with the devices of ``more`` in use as well."""
    used = dict(node.used)
    for k, v in more.items():
        used[k] = used.get(k, 0) + v
    return _with_used(node, used)


def _with_used(node: NodeGpus, used: Mapping[str, int]) -> NodeGpus:
    parts = tuple(
        replace(p, free=max(0, p.allocatable - used.get(p.resource, 0))) for p in node.partitions
    )
    free = max(0, node.allocatable - used.get(GPU_RESOURCE, 0)) if node.allocatable else 0
    return replace(node, free=free, partitions=parts,
                   used=tuple((k, v) for k, v in sorted(used.items()) if v))


def _pools(
    nodes: Sequence[NodeGpus], tolerated_prefixes: tuple[str, ...]
) -> dict[str, HardwarePool]:
    whole: dict[str, list[NodeGpus]] = {}
    mixed: dict[str, list[NodeGpus]] = {}
    for n in nodes:
        if n.usable:
            for hw in n.serves:
                (mixed if n.mixed else whole).setdefault(hw, []).append(n)
    pools: dict[str, HardwarePool] = {}
    for hw in sorted(whole.keys() | mixed.keys()):
        ws, ms = whole.get(hw, []), mixed.get(hw, [])
        hist = Counter(n.free for n in ws)
        mixed_free = [(n.name, n.free_for(hw, 1)) for n in ms]
        tol = sorted(
            {
                Taint(t.key, "", t.effect)
                for n in (*ws, *ms)
                for t in n.taints
                if t.key.startswith(tolerated_prefixes)
            }
        )
        pools[hw] = HardwarePool(
            hardware=hw,
            free_by_node=tuple(sorted(((n.name, n.free) for n in ws), key=lambda x: (-x[1], x[0]))),
            free_histogram=tuple(sorted(hist.items(), reverse=True)),
            max_allocatable=max((n.allocatable for n in ws), default=0),
            total_allocatable=sum(n.allocatable for n in ws) + sum(n.gpus_of(hw) for n in ms),
            total_free=sum(n.free for n in ws) + sum(f for _, f in mixed_free),
            tolerations=tuple(tol),
            mixed_free_by_node=tuple(sorted(mixed_free, key=lambda x: (-x[1], x[0]))),
            mixed_max_allocatable=max((n.gpus_of(hw) for n in ms), default=0),
        )
    return pools


def _assemble(
    statics: Iterable[_NodeStatic],
    usages: Iterable[tuple[str, Mapping[str, int]]],
    tolerated_prefixes: tuple[str, ...],
) -> GpuInventory:
    statics = list(statics)
    names = {st.name for st in statics}
    used: dict[str, dict[str, int]] = {}
    for node, req in usages:
        if node not in names:
            continue
        acc = used.setdefault(node, {})
        for k, v in req.items():
            acc[k] = acc.get(k, 0) + v
    return _assemble_used(statics, used, tolerated_prefixes)


_Finished = dict[str, tuple[_NodeStatic, tuple[tuple[str, int], ...], NodeGpus]]


def _assemble_used(
    statics: Iterable[_NodeStatic],
    used: Mapping[str, Mapping[str, int]],
    tolerated_prefixes: tuple[str, ...],
    finished: _Finished | None = None,
) -> GpuInventory:
    """The inventory from parsed nodes and the devices used per node. ``finished``
    (node name -> the static, usage and result of its last finish) is reused where
    both are unchanged and rewritten to hold exactly this snapshot's nodes."""
    by_name = {st.name: st for st in statics}
    memo: _Finished = {}
    nodes_list = []
    for n in sorted(by_name):
        st = by_name[n]
        use = tuple(sorted((used.get(n) or {}).items()))
        prev = finished.get(n) if finished is not None else None
        if prev is not None and prev[0] is st and prev[1] == use:
            node = prev[2]
        else:
            node = _finish_node(st, dict(use), tolerated_prefixes)
        memo[n] = (st, use, node)
        nodes_list.append(node)
    if finished is not None:
        finished.clear()
        finished.update(memo)
    nodes = tuple(nodes_list)
    unusable: dict[str, list[NodeGpus]] = {}
    for node in nodes:
        if not node.usable:
            for hw in node.present:
                unusable.setdefault(hw, []).append(node)
    return GpuInventory(
        nodes=nodes,
        pools=MappingProxyType(_pools(nodes, tolerated_prefixes)),
        unusable=MappingProxyType({hw: tuple(ns) for hw, ns in sorted(unusable.items())}),
        tolerated_prefixes=tolerated_prefixes,
    )


def build_inventory(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    tolerated_taint_prefixes: tuple[str, ...] = DEFAULT_TOLERATED_TAINT_PREFIXES,
) -> GpuInventory:
    """Build the inventory of one snapshot (pure; independent of input order)."""
    statics = [st for st in map(_parse_node, nodes) if st is not None]
    usages = [u for u in map(pod_device_requests, pods) if u is not None]
    return _assemble(statics, usages, tolerated_taint_prefixes)


def _version_key(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    if not rv:
        return None
    return (str(meta.get("uid") or meta.get("namespace", "")), str(meta.get("name", "")), str(rv))


class InventoryCache:
    """Reuses node and pod parses across snapshots (keyed by uid/name/resourceVersion).

    Not thread-safe; meant to live in a single reconcile loop. Objects without
    a resourceVersion are parsed every time. Entries for objects absent from
    the latest snapshot are dropped.
    """

    def __init__(
        self, *, tolerated_taint_prefixes: tuple[str, ...] = DEFAULT_TOLERATED_TAINT_PREFIXES
    ) -> None:
        self._tolerated = tolerated_taint_prefixes
        self._nodes: dict[tuple[str, str, str], _NodeStatic | None] = {}
        self._pods: dict[tuple[str, str, str], tuple[str, Mapping[str, int]] | None] = {}
        self._finished: _Finished = {}

    def build(
        self, nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
    ) -> GpuInventory:
        statics = self._statics(nodes)
        self._pods, usages = _reuse_parses(pods, self._pods, pod_device_requests)
        return _assemble(statics, usages, self._tolerated)

    def build_from_usage(
        self, nodes: Iterable[Mapping[str, Any]], used: Mapping[str, Mapping[str, int]]
    ) -> GpuInventory:
        """Like :meth:`build`, from the devices pods use per node (kept by the caller
        from pod events), so a snapshot costs O(nodes), not O(pods). Nodes whose
        object and usage did not change are not finished again."""
        return _assemble_used(self._statics(nodes), used, self._tolerated, self._finished)

    def _statics(self, nodes: Iterable[Mapping[str, Any]]) -> list[_NodeStatic]:
        self._nodes, statics = _reuse_parses(nodes, self._nodes, _parse_node)
        return statics


_P = TypeVar("_P")


def _reuse_parses(
    objs: Iterable[Mapping[str, Any]],
    cache: Mapping[tuple[str, str, str], _P | None],
    parse: Callable[[Mapping[str, Any]], _P | None],
) -> tuple[dict[tuple[str, str, str], _P | None], list[_P]]:
    """Each object's parse (the cached one while its version is unchanged), and the
    cache of this snapshot's objects only."""
    new: dict[tuple[str, str, str], _P | None] = {}
    out: list[_P] = []
    for obj in objs:
        key = _version_key(obj)
        if key is None:
            v = parse(obj)
        else:
            v = cache[key] if key in cache else parse(obj)
            new[key] = v
        if v is not None:
            out.append(v)
    return new, out
