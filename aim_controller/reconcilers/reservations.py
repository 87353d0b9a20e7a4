"""The process's book of GPU reservations: what each endpoint's chosen configuration
will take until its pods are bound (see :mod:`aim_controller.recipes.reservation`).

Derived from the caches and kept incrementally: each endpoint reconcile records its
own entry right after it decides (before any await, so a reconcile that runs next
already sees it), from the chosen configuration, the Deployment's desired replicas
and its pods already bound. Only entries with pending replicas are kept, so a
converged cluster has an empty book and selection pays nothing for it. The placed
inventory is computed once per (inventory snapshot, book version) and shared.
"""

from __future__ import annotations

from collections.abc import Callable

from aim_controller.recipes import GpuInventory
from aim_controller.recipes.reservation import Placement, Reservation, place, placed_usages

__all__ = ["ReservationBook"]


BoundNow = Callable[[str, str | None], int]
"""(endpoint key, pod template checksum or None) -> its pods bound to a node now."""


class ReservationBook:
    """Invariant: ``pending`` holds exactly the endpoints whose last reconcile chose a
    configuration with more desired replicas than bound pods. Single event loop.

    What a reservation still promises is counted when the placement is computed, from
    the pods bound *now* (``bound_now``): a pod that was just bound is counted once, by
    the inventory, even before its endpoint's next reconcile lowers the entry. The
    placement is recomputed whenever the inventory snapshot (any GPU pod bound or
    gone) or the book changes. ``on_release`` listeners are called when an entry
    shrinks or goes (an endpoint deleted, scaled in, moved): room for the waiting.
    """

    def __init__(self, bound_now: BoundNow | None = None) -> None:
        self._pending: dict[str, Reservation] = {}
        self._templates: dict[str, str | None] = {}
        self._bound_now = bound_now
        self._listeners: list[Callable[[], None]] = []
        self._version = 0
        self._cached: tuple[GpuInventory, int, GpuInventory, dict[str, Placement]] | None = None

    @property
    def pending(self) -> dict[str, Reservation]:
        return dict(self._pending)

    def on_release(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def record(self, key: str, hardware: str, gpu_count: int, desired: int, bound: int,
               template: str | None = None) -> None:
        """``desired`` replicas of ``gpu_count`` GPUs, ``bound`` of them bound now;
        ``template``: the pod template checksum its pods will carry."""
        pending = max(0, desired - bound)
        # With bound_now, stored as desired replicas: the bound ones are subtracted at
        # placement time, from the pods bound then.
        kept = desired if self._bound_now is not None else pending
        new = Reservation(key, hardware, gpu_count, kept) if pending else None
        old = self._pending.get(key)
        self._templates[key] = template
        if old == new:
            return
        if new is None:
            del self._pending[key]
            self._templates.pop(key, None)
        else:
            self._pending[key] = new
        self._version += 1
        if old is not None and (new is None or new.replicas * new.gpu_count
                                < old.replicas * old.gpu_count or new.hardware != old.hardware):
            self._released()

    def forget(self, key: str) -> None:
        self._templates.pop(key, None)
        if self._pending.pop(key, None) is not None:
            self._version += 1
            self._released()

    def _released(self) -> None:
        for listener in self._listeners:
            listener()

    def has_pending(self, key: str) -> bool:
        return key in self._pending

    def _promised(self) -> list[Reservation]:
        if self._bound_now is None:
            return list(self._pending.values())
        out = []
        for key, r in self._pending.items():
            left = r.replicas - self._bound_now(key, self._templates.get(key))
            if left > 0:
                out.append(Reservation(key, r.hardware, r.gpu_count, left))
        return out

    def inventory_for(self, key: str, base: GpuInventory) -> GpuInventory:
        """``base`` less the GPUs promised to every endpoint but ``key``."""
        if not self._pending:
            return base
        cached = self._cached
        if cached is None or cached[0] is not base or cached[1] != self._version:
            placements = place(base, self._promised())
            taken = [u for p in placements.values() for u in placed_usages(p)]
            cached = self._cached = (base, self._version, base.take(taken), placements)
        reserved, placements = cached[2], cached[3]
        mine = placements.get(key)
        return reserved.give_back(placed_usages(mine)) if mine else reserved
