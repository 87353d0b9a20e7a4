"""Selection that holds: the grace counts from the choice, a move backs off the choice it
left, manual means manual (no moves, busy GPUs wait), hardware pins, derived configs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from recipes_fixtures import cluster, endpoint, recipe

from aim_controller.recipes import Decision, GpuInventory, Reason, Verdict, build_inventory, select
from aim_controller.recipes.backoff import BACKOFF_MAX, abandon, backoff, parse_abandoned
from aim_controller.recipes.identity import ConfigId

NS = "aim"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(minutes=5)
STAMP = "%Y-%m-%dT%H:%M:%SZ"




def run(spec: dict[str, Any], inv: GpuInventory, recipes: list[dict[str, Any]],
        **kw: Any) -> Decision:
    kw.setdefault("reselect_after", GRACE)
    return select(spec, NS, recipes, [], inv, **kw)


def record(d: Decision, at: datetime) -> dict[str, Any]:
    """The status record as the reconciler writes it (with the time of the choice)."""
    return d.to_status() | {"selectedAt": at.strftime(STAMP)}


THREE_POOLS = [
    recipe("r300", hardware="MI300X", counts=(4,), tps=9000),
    recipe("r325", hardware="MI325X", counts=(4,), tps=8000),
    recipe("r355", hardware="MI355X", counts=(4,), tps=7000),
]


def test_the_grace_counts_from_the_choice_not_from_older_pods() -> None:
    spec = endpoint(gpu_count=4)
    first = run(spec, cluster(MI300X=[8], MI325X=[8]), THREE_POOLS[:2], now=T0)
    prev = record(first, T0 + timedelta(minutes=10))  # chosen 10 min after T0
    # Pods (of the previous template) unschedulable since T0; 12 min later the choice is
    # only 2 min old: no move.
    d = run(spec, cluster(MI300X=[0], MI325X=[8]), THREE_POOLS[:2], previous=prev,
            now=T0 + timedelta(minutes=12), unschedulable_since=T0)
    assert d.reason is Reason.STICKY
    d = run(spec, cluster(MI300X=[0], MI325X=[8]), THREE_POOLS[:2], previous=prev,
            now=T0 + timedelta(minutes=15), unschedulable_since=T0)
    assert d.reason is Reason.RESELECTED and d.chosen is not None
    assert d.chosen.config.name == "r325"


def test_a_move_backs_off_the_choice_it_left() -> None:
    spec = endpoint(gpu_count=4)
    inv = cluster(MI300X=[8], MI325X=[8], MI355X=[8])
    first = run(spec, inv, THREE_POOLS, now=T0)
    assert first.chosen is not None and first.chosen.config.name == "r300"
    t1 = T0 + timedelta(minutes=6)
    moved = run(spec, inv, THREE_POOLS, previous=record(first, T0), now=t1,
                unschedulable_since=T0)
    assert moved.reason is Reason.RESELECTED and moved.chosen is not None
    assert moved.chosen.config.name == "r325"
    [entry] = moved.abandoned
    assert (entry.id.name, entry.count, entry.until) == ("r300", 1, t1 + timedelta(minutes=5))
    # Its pods are unschedulable too: the next move skips r300 (backed off), goes on.
    t2 = t1 + timedelta(minutes=6)
    again = run(spec, inv, THREE_POOLS, previous=record(moved, t1), now=t2,
                unschedulable_since=t1)
    assert again.chosen is not None and again.chosen.config.name == "r300"  # backoff over
    t2 = t1 + timedelta(minutes=4, seconds=59)  # the grace alone would not allow it yet
    held = run(spec, inv, THREE_POOLS, previous=record(moved, t1), now=t2,
               unschedulable_since=t1)
    assert held.reason is Reason.STICKY
    # Within the backoff, r300 is rejected with the reason and the time.
    t3 = t1 + timedelta(minutes=1)
    d = run(spec, inv, THREE_POOLS, previous=record(moved, t1), now=t3)
    cand = next(c for c in d.candidates if c.config.name == "r300")
    assert (cand.verdict, cand.reason) == (Verdict.REJECTED, Reason.UNSCHEDULABLE_BACKOFF)
    assert (t1 + timedelta(minutes=5)).strftime(STAMP) in cand.message
    assert parse_abandoned(record(moved, t1)) == moved.abandoned


def test_a_second_abandonment_doubles_the_backoff() -> None:
    cid = ConfigId("namespace", NS, "r300", 4)
    once = abandon((), T0, cid)
    twice = abandon(once, T0 + timedelta(minutes=20), cid)
    assert [(a.count, a.until) for a in twice] == [
        (2, T0 + timedelta(minutes=30))]
    # Forgotten one maximum backoff after it expired.
    assert abandon(twice, T0 + timedelta(minutes=30) + BACKOFF_MAX) == ()


@given(st.integers(1, 30))
def test_backoff_doubles_and_is_capped(count: int) -> None:
    assert backoff(count) == min(timedelta(minutes=5) * 2 ** (count - 1), BACKOFF_MAX)


def test_manual_never_moves_and_waits_for_busy_gpus() -> None:
    spec = endpoint(auto=False, gpu_count=4)
    busy = cluster(MI300X=[0], MI325X=[8])
    d = run(spec, busy, THREE_POOLS[:1], now=T0)
    # Manual: the one matching configuration is chosen although its GPUs are busy.
    assert d.chosen is not None and d.chosen.config.name == "r300"
    assert "its pods wait for GPUs" in d.message and "InsufficientFreeGPUs" in d.message
    later = run(spec, busy, THREE_POOLS[:2], previous=record(d, T0),
                now=T0 + timedelta(hours=2), unschedulable_since=T0)
    assert later.reason is Reason.STICKY and later.chosen is not None
    assert later.chosen.config.name == "r300"


def test_hardware_pins_in_both_modes() -> None:
    inv = cluster(MI300X=[8], MI325X=[8])
    for auto in (True, False):
        spec = endpoint(auto=auto, gpu_count=4)
        spec["recipe"]["hardware"] = "MI325X"
        d = run(spec, inv, THREE_POOLS[:2], now=T0)
        assert d.chosen is not None and d.chosen.config.hardware == "MI325X", auto
        cand = next(c for c in d.candidates if c.config.name == "r300")
        assert cand.reason is Reason.HARDWARE_MISMATCH
        assert "the endpoint asks for MI325X" in cand.message


def test_a_missing_gpu_count_is_derived_from_the_nearest_configuration() -> None:
    recipes = [recipe("r", hardware="MI300X", counts=(1, 8), tps=5000)]
    d = run(endpoint(auto=False, gpu_count=2), cluster(MI300X=[8]), recipes, now=T0)
    assert d.reason is Reason.SELECTED and d.chosen is not None
    c = d.chosen.config
    assert (c.gpu_count, c.derived_from, c.index) == (2, 1, None)
    assert c.args[-2:] == ("--tensor-parallel-size", "2")
    assert d.resources["requests"]["amd.com/gpu"] == "2"
    assert d.resources["limits"]["amd.com/gpu"] == "2"
    assert "derived from its 1 GPU configuration" in d.message
    # Sticky on the next round: the derived configuration is found again by its id.
    again = run(endpoint(auto=False, gpu_count=2), cluster(MI300X=[8]), recipes,
                previous=record(d, T0), now=T0 + timedelta(minutes=1))
    assert again.reason is Reason.STICKY


def test_nothing_is_derived_when_a_recipe_has_the_count() -> None:
    recipes = [recipe("a", hardware="MI300X", counts=(1,)),
               recipe("b", hardware="MI325X", counts=(2,))]
    d = run(endpoint(auto=False, gpu_count=2), cluster(MI300X=[8], MI325X=[8]), recipes,
            now=T0)
    assert d.chosen is not None and d.chosen.config.name == "b"
    assert all(c.config.derived_from is None for c in d.candidates)


def test_a_count_of_another_hardware_does_not_stop_the_derivation() -> None:
    recipes = [recipe("flex", hardware="MI300X", counts=(1, 4)),
               recipe("other", hardware="MI325X", counts=(2,))]
    spec = endpoint(auto=False, gpu_count=2)
    spec["recipe"]["hardware"] = "MI300X"
    d = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes, now=T0)
    assert d.chosen is not None and d.chosen.config.name == "flex"
    assert (d.chosen.config.gpu_count, d.chosen.config.derived_from) == (2, 1)


def test_a_choice_served_by_a_mixed_node_says_the_gpu_type_is_not_guaranteed() -> None:
    from recipes_fixtures import mixed_labels, node

    inv = build_inventory([node("mixed", mixed_labels({"MI300X": 4, "MI325X": 4}), gpus=8)], [])
    d = run(endpoint(gpu_count=1), inv, [recipe("r", hardware="MI300X", counts=(1,))], now=T0)
    assert d.chosen is not None and "GPU type not guaranteed on mixed GPU node mixed" in (
        d.message), d.message


def test_estimates_offer_every_model_of_a_mixed_node() -> None:
    from recipes_fixtures import mixed_labels, node

    from aim_controller.recipes.estimate import estimate_options, model_size

    inv = build_inventory([node("mixed", mixed_labels({"MI300X": 4, "MI325X": 4}), gpus=8)], [])
    size = model_size("acme/Tiny-1B", None)
    assert size is not None
    options = estimate_options("acme/Tiny-1B", size, inv)
    assert not isinstance(options, str)
    assert {o.config.hardware for o in options} == {"MI300X", "MI325X"}
