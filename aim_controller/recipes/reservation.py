"""Reservations: GPUs promised to a chosen configuration whose pods are not bound yet.

The scheduler's "assume" idea applied to selection: from the moment an endpoint
chooses a configuration until its pods are bound, the GPUs its pending replicas
will take are not free for anybody else's choice. Without it a burst of endpoints
all see the same free GPUs and all choose them (a herd), and most end up Pending.

:func:`place` puts the pending replicas on nodes the way the scheduler could:
each replica on one node of its hardware with enough free GPUs, best fit first
(the node with the fewest free GPUs that still holds it, which keeps large holes
for large replicas). A replica that fits nowhere is not placed: a promise the
cluster cannot keep reserves nothing. Invariant (property-tested): on every node
the placed GPUs never exceed the node's free GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aim_controller.api.v1alpha1 import GPU_RESOURCE

from .inventory import GpuInventory

__all__ = ["Placement", "Reservation", "place", "placed_usages"]

Placement = tuple[tuple[str, int], ...]  # (node, GPUs) per placed replica


@dataclass(frozen=True, slots=True)
class Reservation:
    """``replicas`` pending replicas of ``gpu_count`` GPUs of ``hardware`` for ``key``."""

    key: str
    hardware: str
    gpu_count: int
    replicas: int


def _best_fit(buckets: dict[int, list[str]], free: dict[str, int], g: int) -> str | None:
    for f in sorted(k for k in buckets if k >= g):
        names = buckets[f]
        while names:
            name = names.pop()
            if free[name] != f:  # moved by a placement through another pool: re-file it
                buckets.setdefault(free[name], []).append(name)
                continue
            free[name] = f - g
            buckets.setdefault(f - g, []).append(name)
            return name
    return None


def _buckets(entries: Iterable[tuple[str, int]], free: dict[str, int]) -> dict[int, list[str]]:
    buckets: dict[int, list[str]] = {}
    for node, f in sorted(entries):
        free.setdefault(node, f)  # a node in two pools shares one budget
        buckets.setdefault(free[node], []).append(node)
    return buckets


def place(inventory: GpuInventory, reservations: Iterable[Reservation]) -> dict[str, Placement]:
    """Where the pending replicas go, by reservation key (deterministic: in key order).

    Nodes whose GPUs are all of the hardware come first; 1-GPU replicas may then go
    to mixed nodes (as the selection allows), within the node's shared free GPUs.
    """
    free: dict[str, int] = {}
    pools: dict[str, tuple[dict[int, list[str]], dict[int, list[str]]]] = {}
    out: dict[str, Placement] = {}
    for r in sorted(reservations, key=lambda r: r.key):
        if r.hardware not in pools:
            pool = inventory.pool(r.hardware)
            pools[r.hardware] = (_buckets(pool.free_by_node if pool else (), free),
                                 _buckets(pool.mixed_free_by_node if pool else (), free))
        whole, mixed = pools[r.hardware]
        placed: list[tuple[str, int]] = []
        for _ in range(r.replicas):
            chosen = _best_fit(whole, free, r.gpu_count)
            if chosen is None and r.gpu_count == 1:
                chosen = _best_fit(mixed, free, 1)
            if chosen is None:
                break
            placed.append((chosen, r.gpu_count))
        if placed:
            out[r.key] = tuple(placed)
    return out


def placed_usages(placement: Placement) -> list[tuple[str, dict[str, int]]]:
    """A placement as (node, device requests), the form the inventory takes and gives."""
    return [(node, {GPU_RESOURCE: n}) for node, n in placement]
