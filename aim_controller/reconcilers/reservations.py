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


class ReservationBook:
    """Invariant: ``pending`` holds exactly the endpoints whose last reconcile chose a
    configuration with more desired replicas than bound pods. Single event loop.

    A pod is bound (and counted by the inventory) before its endpoint's next reconcile
    lowers its reservation, so for a moment both count: whoever was told "no room"
    then must look again once the reservation goes. ``on_release`` listeners are
    called whenever a reservation shrinks or goes.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Reservation] = {}
        self._listeners: list[Callable[[], None]] = []
        self._version = 0
        self._cached: tuple[GpuInventory, int, GpuInventory, dict[str, Placement]] | None = None

    @property
    def pending(self) -> dict[str, Reservation]:
        return dict(self._pending)

    def on_release(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def record(self, key: str, hardware: str, gpu_count: int, desired: int, bound: int) -> None:
        pending = max(0, desired - bound)
        new = Reservation(key, hardware, gpu_count, pending) if pending else None
        old = self._pending.get(key)
        if old == new:
            return
        if new is None:
            del self._pending[key]
        else:
            self._pending[key] = new
        self._version += 1
        if old is not None and (new is None or new.replicas * new.gpu_count
                                < old.replicas * old.gpu_count or new.hardware != old.hardware):
            self._released()

    def forget(self, key: str) -> None:
        if self._pending.pop(key, None) is not None:
            self._version += 1
            self._released()

    def _released(self) -> None:
        for listener in self._listeners:
            listener()

    def has_pending(self, key: str) -> bool:
        return key in self._pending

    def inventory_for(self, key: str, base: GpuInventory) -> GpuInventory:
        """``base`` less the GPUs promised to every endpoint but ``key``."""
        if not self._pending:
            return base
        cached = self._cached
        if cached is None or cached[0] is not base or cached[1] != self._version:
            placements = place(base, self._pending.values())
            taken = [u for p in placements.values() for u in placed_usages(p)]
            cached = self._cached = (base, self._version, base.take(taken), placements)
        reserved, placements = cached[2], cached[3]
        mine = placements.get(key)
        return reserved.give_back(placed_usages(mine)) if mine else reserved
