"""Recipe-selection cost, measured with bench/bench_selection.py's synthetic cluster
(500 nodes, 5,000 pods, 1,000 namespace recipes)."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_selection as bs

from aim_controller.recipes import (
    InventoryCache,
    RecipeIndex,
    build_inventory,
    select,
)
from aim_controller.recipes.catalog import builtin_index
from aim_controller.reconcilers.reservations import ReservationBook

PENDING = 200  # endpoints of a burst whose pods are not bound yet


def selection_cost(*, quick: bool = False) -> dict[str, Any]:
    """Microseconds per selection (prebuilt index and raw list) and inventory build ms."""
    rng = random.Random(7)
    nodes = [bs.node(i, rng) for i in range(bs.NODES)]
    pods = [bs.pod(i, rng) for i in range(bs.PODS)]
    recipes = [bs.recipe(i) for i in range(bs.RECIPES)]
    spec = {"model": {"id": "Qwen/Qwen3-32B"}, "scaling": {"minReplicas": 2}}
    scale = 10 if quick else 1

    inventory = build_inventory(nodes, pods)
    build = bs.per_call(lambda: build_inventory(nodes, pods), max(2, 20 // scale))
    cache = InventoryCache()
    cache.build(nodes, pods)
    warm = bs.per_call(lambda: cache.build(nodes, pods), max(2, 20 // scale))
    index = RecipeIndex.build(recipes, "namespace", "aim")
    catalog = builtin_index()
    indexed = bs.per_call(lambda: select(spec, "aim", index, catalog, inventory), 2000 // scale)
    raw = bs.per_call(lambda: select(spec, "aim", recipes, catalog, inventory), 500 // scale)
    decision = select(spec, "aim", index, catalog, inventory)

    # A burst: PENDING endpoints chose configurations whose pods are not bound yet.
    book = ReservationBook()
    hardware = [hw for _, _, hw in bs.HARDWARE]
    for i in range(PENDING):
        book.record(f"aim/ep-{i}", hardware[i % len(hardware)], rng.choice([1, 2, 4]), 1, 0)

    def reserved_select() -> None:
        select(spec, "aim", index, catalog, book.inventory_for("aim/new", inventory))

    reserved = bs.per_call(reserved_select, 2000 // scale)
    flip = [0]

    def recompute() -> None:  # each call changes the book, so the placement is redone
        flip[0] ^= 1
        book.record("aim/ep-0", hardware[0], 1 + flip[0], 1, 0)
        book.inventory_for("aim/new", inventory)

    placement = bs.per_call(recompute, max(5, 100 // scale))
    return {
        "nodes": bs.NODES, "pods": bs.PODS, "recipes": bs.RECIPES,
        "selectionIndexedUs": round(indexed * 1e6, 1),
        "selectionRawListUs": round(raw * 1e6, 1),
        "inventoryBuildMs": round(build * 1e3, 2),
        "inventoryCachedBuildMs": round(warm * 1e3, 2),
        "decision": f"{decision.reason}: {decision.message}",
        "pendingReservations": PENDING,
        "selectionWithReservationsUs": round(reserved * 1e6, 1),
        "reservationPlacementMs": round(placement * 1e3, 2),
    }
