"""AMD Instinct GPU models and how the node labeller names them.

The AMD GPU node labeller (ROCm/k8s-device-plugin, ``cmd/k8s-node-labeller``)
publishes one label per property. On a node with a single GPU type it writes
``amd.com/gpu.<kind>=<value>``; on a node with several GPU types it writes
only the count-encoded form ``amd.com/gpu.<kind>.<value>=<count>``. The
``beta.amd.com/gpu.<kind>.<value>=<count>`` form is always written (plus
``beta.amd.com/gpu.<kind>=<value>`` when there is one value).

* ``device-id``: the PCI device id without ``0x`` (``74a1``). Virtual
  functions (SR-IOV guests) have their own ids (``74b5`` for an MI300X VF).
* ``product-name``: sysfs ``product_name`` with spaces replaced by ``_`` and
  parentheses dropped (``AMD_Instinct_MI300X_OAM``, ``AMD_Instinct_MI325_OAM``).
  The string comes from the board FRU, so it varies by board vendor and BIOS;
  we match on the ``MIxxx`` model tokens it contains rather than on whole
  strings.
* ``family``: libdrm's ``AMDGPU_FAMILY_*`` acronym. Every Instinct model from
  MI25 to MI355X is GFX9, family ``AI``: the family alone never tells the
  models apart, so it identifies a node only if it maps to exactly one model
  in :data:`FAMILY_MODELS` (none does today; the rule stays so a future
  family that names a single model works).
* ``cu-count``: compute units per GPU; the only label that separates an
  MI250 (104 CUs per GCD) from an MI250X (110) on device ``740c``.

VRAM is per *schedulable* GPU, i.e. per ``amd.com/gpu`` unit. An MI250/MI250X
is two GCDs of 64 GiB each and the device plugin exposes each GCD as its own
``amd.com/gpu``, so both count as 64 GiB GPUs here (the board's 128 GiB is
never usable by one GPU unit). The MI300A's 128 GiB is unified HBM shared with
its CPU cores.

MI250 and MI250X are the same Aldebaran die with the same 64 GiB per GCD and
the same ISA (gfx90a): a recipe written for either runs on both, only a few
percent slower on the MI250. :data:`INTERCHANGEABLE` records that, which is
how a ``740c`` node without a ``cu-count`` label is still usable without
guessing which of the two it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEVICE_IDS",
    "FAMILY_MODELS",
    "HARDWARE_NAMES",
    "INTERCHANGEABLE",
    "MODELS",
    "GpuModel",
    "Identity",
    "device_ids_for",
    "hardware_rank",
    "identify_cu_count",
    "identify_device_id",
    "identify_family",
    "identify_product_name",
    "normalize_hardware",
    "serves",
]


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One AMD Instinct model as recipes name it (``AIMRecipe.spec.hardware``).

    Invariants: ``vram_gib`` is per schedulable ``amd.com/gpu`` unit;
    ``release_rank`` orders models oldest/lesser first (MI250 < MI250X < MI210
    < MI300A < ... < MI355X); ``hbm_tbps`` is the HBM bandwidth of one
    schedulable unit.
    """

    name: str
    generation: str  # CDNA2 | CDNA3 | CDNA4
    release_rank: int
    vram_gib: int
    hbm_tbps: float
    fp8: bool  # native fp8 matrix support (CDNA3 and newer)
    bf16_tflops: float  # dense peak of one schedulable unit
    device_ids: tuple[str, ...]
    cu_count: int | None = None  # per schedulable unit, when it identifies the model


MODELS: Mapping[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel("MI250", "CDNA2", 1, 64, 1.6, False, 181.0, ("740c",), cu_count=104),
        GpuModel("MI250X", "CDNA2", 2, 64, 1.6, False, 191.5, ("7408", "740c"), cu_count=110),
        GpuModel("MI210", "CDNA2", 3, 64, 1.6, False, 181.0, ("740f",)),
        GpuModel("MI300A", "CDNA3", 4, 128, 5.3, True, 980.6, ("74a0",)),
        # 74a9/74bd ("MI300X HF") and 74a8/74bc ("MI308X HF") are listed as variants of
        # the same models in the labeller's amdgpu.ids.
        GpuModel("MI300X", "CDNA3", 5, 192, 5.3, True, 1307.4, ("74a1", "74b5", "74a9", "74bd")),
        GpuModel("MI308X", "CDNA3", 6, 192, 5.3, True, 344.0, ("74a2", "74b6", "74a8", "74bc")),
        GpuModel("MI325X", "CDNA3", 7, 256, 6.0, True, 1307.4, ("74a5", "74b9")),
        GpuModel("MI350X", "CDNA4", 8, 288, 8.0, True, 2300.0, ("75a0", "75b0")),
        GpuModel("MI355X", "CDNA4", 9, 288, 8.0, True, 2500.0, ("75a3", "75b3")),
    )
}

HARDWARE_NAMES: tuple[str, ...] = tuple(MODELS)


def _device_ids() -> dict[str, frozenset[str]]:
    ids: dict[str, frozenset[str]] = {}
    for m in MODELS.values():
        for d in m.device_ids:
            ids[d] = ids.get(d, frozenset()) | {m.name}
    return ids


DEVICE_IDS: Mapping[str, frozenset[str]] = _device_ids()

# All Instinct GPUs report AMDGPU_FAMILY_AI (GFX9); see the module docstring.
FAMILY_MODELS: Mapping[str, frozenset[str]] = {"AI": frozenset(MODELS)}

INTERCHANGEABLE: Mapping[str, frozenset[str]] = {
    "MI250": frozenset({"MI250", "MI250X"}),
    "MI250X": frozenset({"MI250", "MI250X"}),
}

# Model-number token in a product name -> models it may denote. "MI300" alone
# could be an MI300A or an MI300X; "MI250" boards report MI250 even when the
# torch/amdgpu.ids name is "MI250X / MI250".
_TOKENS: Mapping[str, frozenset[str]] = {
    "MI210": frozenset({"MI210"}),
    "MI250": frozenset({"MI250", "MI250X"}),
    "MI250X": frozenset({"MI250X"}),
    "MI300": frozenset({"MI300A", "MI300X"}),
    "MI300A": frozenset({"MI300A"}),
    "MI300X": frozenset({"MI300X"}),
    "MI308": frozenset({"MI308X"}),
    "MI308X": frozenset({"MI308X"}),
    "MI325": frozenset({"MI325X"}),
    "MI325X": frozenset({"MI325X"}),
    "MI350": frozenset({"MI350X"}),
    "MI350X": frozenset({"MI350X"}),
    "MI355": frozenset({"MI355X"}),
    "MI355X": frozenset({"MI355X"}),
}
_TOKEN_RE = re.compile(r"MI\d{3}[A-Z]?")
_SPLIT_RE = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class Identity:
    """What a label value says about a GPU.

    ``models`` is the set of models the value is consistent with: one model
    when identified, several when ambiguous, empty when unknown. ``reason``
    explains an empty or ambiguous result.
    """

    models: frozenset[str]
    reason: str = ""

    @property
    def exact(self) -> str | None:
        return next(iter(self.models)) if len(self.models) == 1 else None


def identify_device_id(value: str) -> Identity:
    dev = value.strip().lower().removeprefix("0x")
    models = DEVICE_IDS.get(dev)
    if models is None:
        return Identity(frozenset(), f"unknown AMD GPU device id {dev!r}")
    if len(models) > 1:
        names = "/".join(sorted(models))
        return Identity(models, f"device id {dev} is shared by {names}")
    return Identity(models)


def identify_product_name(value: str) -> Identity:
    tokens = [t for t in _SPLIT_RE.split(value.upper()) if _TOKEN_RE.fullmatch(t)]
    found: set[str] = set()
    for t in tokens:
        models = _TOKENS.get(t)
        if models is None:
            return Identity(frozenset(), f"unknown AMD GPU model {t} in product name {value!r}")
        found |= models
    # "MI250X_MI250" names the MI250-class die; "MI250X" alone is exact.
    if "MI250X" in tokens and "MI250" not in tokens:
        found = {"MI250X"}
    if not found:
        return Identity(frozenset(), f"no Instinct model in product name {value!r}")
    if len(found) > 1:
        return Identity(frozenset(found), f"product name {value!r} fits {'/'.join(sorted(found))}")
    return Identity(frozenset(found))


def identify_family(value: str) -> Identity:
    models = FAMILY_MODELS.get(value.strip().upper())
    if not models:
        return Identity(frozenset(), f"GPU family {value!r} names no known Instinct model")
    if len(models) > 1:
        return Identity(
            frozenset(),
            f"GPU family {value!r} covers {len(models)} Instinct models; it cannot identify one",
        )
    return Identity(models)


def identify_cu_count(candidates: frozenset[str], cu_count: str) -> str | None:
    """Pick the one candidate whose per-GPU compute-unit count is ``cu_count``."""
    try:
        cus = int(cu_count)
    except ValueError:
        return None
    hits = [m for m in candidates if MODELS[m].cu_count == cus]
    return hits[0] if len(hits) == 1 else None


def serves(models: Iterable[str]) -> frozenset[str]:
    """Recipe hardware names a GPU consistent with ``models`` can run.

    Ambiguity is only tolerated inside one interchangeable group: a GPU that
    may be either of two *different* models serves neither.
    """
    ms = frozenset(models)
    if not ms:
        return frozenset()
    groups = {INTERCHANGEABLE.get(m, frozenset({m})) for m in ms}
    return next(iter(groups)) if len(groups) == 1 else frozenset()


def normalize_hardware(value: str) -> str | None:
    """Canonical recipe hardware name (``mi300x`` -> ``MI300X``), None if unknown."""
    v = value.strip().upper().removeprefix("AMD").strip("_ -")
    v = v.removeprefix("INSTINCT").strip("_ -")
    return v if v in MODELS else None


def hardware_rank(name: str) -> int:
    """Newer hardware ranks higher; unknown names rank lowest."""
    m = MODELS.get(name)
    return m.release_rank if m else 0


def device_ids_for(hardware: str) -> tuple[str, ...]:
    """PCI device ids of every GPU that can run ``hardware`` recipes (for node affinity)."""
    group = INTERCHANGEABLE.get(hardware, frozenset({hardware}))
    return tuple(sorted({d for m in group if m in MODELS for d in MODELS[m].device_ids}))
