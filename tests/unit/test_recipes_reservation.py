"""Reservations: GPUs promised to chosen configurations whose pods are not bound yet."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from recipes_fixtures import endpoint, gpu_node, pod, recipe

from aim_controller.recipes import Reason, build_inventory, select
from aim_controller.recipes.reservation import Reservation, place
from aim_controller.reconcilers.reservations import ReservationBook

NS = "aim"


def inventory(frees: list[int], model: str = "MI300X", gpus: int = 8):  # type: ignore[no-untyped-def]
    nodes = [gpu_node(f"n{i}", model, gpus) for i in range(len(frees))]
    pods = [pod(f"busy-{i}", f"n{i}", gpus - f, namespace="other")
            for i, f in enumerate(frees) if f < gpus]
    return build_inventory(nodes, pods)


reservations = st.lists(
    st.builds(Reservation, key=st.sampled_from([f"ns/e{i}" for i in range(8)]),
              hardware=st.sampled_from(["MI300X", "MI325X"]),
              gpu_count=st.sampled_from([1, 2, 4, 8]), replicas=st.integers(1, 4)),
    max_size=8, unique_by=lambda r: r.key)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=6), reservations)
def test_promised_gpus_never_exceed_a_nodes_free_gpus(frees: list[int],
                                                      rs: list[Reservation]) -> None:
    inv = inventory(frees)
    placed = place(inv, rs)
    per_node: Counter[str] = Counter()
    for key, placement in placed.items():
        r = next(r for r in rs if r.key == key)
        assert len(placement) <= r.replicas
        assert all(g == r.gpu_count for _, g in placement)
        for node, g in placement:
            per_node[node] += g
    free = dict(inv.pool("MI300X").free_by_node) if inv.pool("MI300X") else {}
    for node, used in per_node.items():
        assert used <= free[node], (node, used, free)
    # What is left after the promises is what the inventory then reports.
    taken = inv.take([(n, {"amd.com/gpu": g}) for n, g in per_node.items()])
    pool = taken.pool("MI300X")
    left = dict(pool.free_by_node) if pool else {}
    assert all(left[n] == free[n] - per_node[n] for n in free)
    # Greedy is maximal: a reservation left short has no node that could still hold one.
    for r in rs:
        if r.hardware == "MI300X" and len(placed.get(r.key, ())) < r.replicas:
            assert all(f < r.gpu_count for f in left.values())


def test_a_burst_of_endpoints_does_not_herd_onto_the_same_gpus() -> None:
    """Twelve 4-GPU endpoints on room for seven replicas: seven are promised the GPUs,
    five are told at once that nothing is free, with numbers."""
    inv = inventory([8, 8, 8, 4])  # 4 + 2 + 2 ... = 7 four-GPU replicas
    recipes = [recipe("r", hardware="MI300X", counts=(4,), namespace=NS)]
    book = ReservationBook()
    outcomes = []
    for i in range(12):
        key = f"{NS}/e{i:02d}"
        d = select(endpoint(gpu_count=4), NS, recipes, [], book.inventory_for(key, inv))
        if d.chosen is not None:
            book.record(key, "MI300X", 4, desired=1, bound=0)
        outcomes.append(d.reason)
    assert outcomes.count(Reason.SELECTED) == 7
    assert outcomes[7:] == [Reason.NO_FEASIBLE_CANDIDATE] * 5
    # Once their pods are bound (the inventory counts them), the book is empty again.
    for i in range(7):
        book.record(f"{NS}/e{i:02d}", "MI300X", 4, desired=1, bound=1)
    assert book.pending == {}
    assert book.inventory_for("x", inv) is inv


def test_an_endpoints_own_promise_is_free_for_its_own_selection() -> None:
    inv = inventory([4])
    book = ReservationBook()
    book.record("ns/a", "MI300X", 4, desired=1, bound=0)
    assert book.inventory_for("ns/b", inv).pool("MI300X").replicas_that_fit(4) == 0  # type: ignore[union-attr]
    assert book.inventory_for("ns/a", inv).pool("MI300X").replicas_that_fit(4) == 1  # type: ignore[union-attr]
    book.forget("ns/a")
    assert book.inventory_for("ns/b", inv) is inv


def test_whoever_waits_is_told_when_a_promise_shrinks_or_goes() -> None:
    book = ReservationBook()
    told: list[int] = []
    book.on_release(lambda: told.append(1))
    book.record("ns/a", "MI300X", 4, desired=2, bound=0)
    book.record("ns/a", "MI300X", 4, desired=3, bound=0)  # grows: nobody gains room
    assert told == []
    book.record("ns/a", "MI300X", 4, desired=3, bound=2)  # two pods bound
    assert told == [1]
    book.record("ns/a", "MI300X", 4, desired=2, bound=0)
    book.forget("ns/a")
    assert told == [1, 1]
    book.forget("ns/a")  # nothing left to release
    assert told == [1, 1]


def test_pods_bound_since_the_last_reconcile_are_not_promised_twice() -> None:
    """The inventory counts a pod as soon as it is bound; the book asks how many are
    bound when it places its promises, not what the last reconcile saw."""
    inv = inventory([4])
    bound = {"ns/a": 0}
    book = ReservationBook(bound_now=lambda key, template: bound[key])
    book.record("ns/a", "MI300X", 4, desired=1, bound=0, template="t1")
    assert book.inventory_for("ns/b", inv).pool("MI300X").replicas_that_fit(4) == 0  # type: ignore[union-attr]
    # Its pod is bound: the inventory now counts it (a new snapshot)...
    bound["ns/a"] = 1
    taken = inventory([0])
    # ...and the promise is gone at once, before ns/a reconciles: nothing counted twice.
    assert book.inventory_for("ns/b", taken) is not None
    assert book.pending  # the entry stays until ns/a's own reconcile
    free = dict(book.inventory_for("ns/b", inventory([4])).pool("MI300X").free_by_node)  # type: ignore[union-attr]
    assert free == {"n0": 4}
