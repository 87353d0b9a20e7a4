"""The cleanup policy: which models go, why, and in what order (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.modelcache.policy import (
    CachedCopy,
    CleanupPlan,
    Reason,
    SpecEntry,
    age_verdict,
    eviction_key,
    plan_cleanup,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
DAY = 86400.0
GB = 10**9


def copy(model_id: str, size: int = GB, days_idle: float = 0.0,
         *, never_used: bool = False) -> CachedCopy:
    t = NOW - timedelta(days=days_idle)
    return CachedCopy(model_id, size, completed_at=t, last_used=None if never_used else t)


def plan(models: list[CachedCopy], entries: list[SpecEntry] = (),  # type: ignore[assignment]
         in_use: set[str] = frozenset(),  # type: ignore[assignment]
         *, max_age: float | None = None, min_free: int | None = None,
         free: int = 0) -> CleanupPlan:
    return plan_cleanup(models, entries, in_use, now=NOW, max_age_seconds=max_age,
                        min_free_bytes=min_free, free_bytes=free)


def removed(p: CleanupPlan) -> list[tuple[str, str]]:
    return [(r.id, str(r.reason)) for r in p.removals]


# --- rules (a)-(c): age --------------------------------------------------------------

def test_retention_removes_a_model_idle_past_it_and_keeps_one_within() -> None:
    entries = [SpecEntry("a", retention_seconds=7 * DAY), SpecEntry("b", retention_seconds=7 * DAY)]
    p = plan([copy("a", days_idle=8), copy("b", days_idle=6)], entries)
    assert removed(p) == [("a", "retention")]


def test_past_means_strictly_past() -> None:
    entries = [SpecEntry("a", retention_seconds=7 * DAY)]
    assert removed(plan([copy("a", days_idle=7)], entries)) == []
    assert removed(plan([copy("a", days_idle=7)], [SpecEntry("a")], max_age=7 * DAY)) == []


def test_own_retention_wins_over_max_age_both_ways() -> None:
    entries = [SpecEntry("long", retention_seconds=30 * DAY),
               SpecEntry("short", retention_seconds=1 * DAY)]
    p = plan([copy("long", days_idle=10), copy("short", days_idle=2)], entries, max_age=7 * DAY)
    assert removed(p) == [("short", "retention")]


def test_max_age_applies_to_entries_without_retention() -> None:
    p = plan([copy("a", days_idle=31), copy("b", days_idle=29)],
             [SpecEntry("a"), SpecEntry("b")], max_age=30 * DAY)
    assert removed(p) == [("a", "maxAge")]


def test_no_max_age_and_no_retention_keeps_everything() -> None:
    p = plan([copy("a", days_idle=3650), copy("u", days_idle=3650)], [SpecEntry("a")])
    assert p.removals == () and p.shortfall_bytes == 0


def test_unlisted_model_goes_past_max_age_only() -> None:
    p = plan([copy("old", days_idle=31), copy("young", days_idle=1)], [], max_age=30 * DAY)
    assert removed(p) == [("old", "unlisted")]
    assert removed(plan([copy("old", days_idle=31)], [])) == []


def test_removed_from_spec_follows_its_last_retention_not_at_once() -> None:
    entries = [SpecEntry("gone", retention_seconds=7 * DAY, in_spec=False)]
    assert removed(plan([copy("gone", days_idle=1)], entries, max_age=DAY / 2)) == []
    assert removed(plan([copy("gone", days_idle=8)], entries)) == [("gone", "retention")]


def test_removed_from_spec_without_retention_follows_max_age() -> None:
    entries = [SpecEntry("gone", in_spec=False)]
    assert removed(plan([copy("gone", days_idle=8)], entries, max_age=7 * DAY)) == [
        ("gone", "maxAge")]
    assert removed(plan([copy("gone", days_idle=8)], entries)) == []


def test_never_used_model_ages_from_its_completion() -> None:
    m = copy("a", days_idle=8, never_used=True)
    assert m.last_used is None
    assert removed(plan([m], [SpecEntry("a", retention_seconds=7 * DAY)])) == [
        ("a", "retention")]


def test_a_model_used_in_the_future_is_not_old() -> None:
    m = copy("a", days_idle=-1)  # clock skew between nodes
    assert age_verdict(m, SpecEntry("a", retention_seconds=0), NOW, 0) is None


def test_in_use_is_never_removed_for_age() -> None:
    entries = [SpecEntry("a", retention_seconds=DAY)]
    p = plan([copy("a", days_idle=100), copy("u", days_idle=100)], entries, {"a", "u"},
             max_age=DAY)
    assert p.removals == ()


def test_age_removals_come_oldest_first() -> None:
    p = plan([copy("b", days_idle=40), copy("a", days_idle=50), copy("c", days_idle=40)],
             [], max_age=30 * DAY)
    assert [r.id for r in p.removals] == ["a", "b", "c"]


# --- rule (d): space -----------------------------------------------------------------

def test_space_evicts_lowest_priority_first_until_enough_is_free() -> None:
    models = [copy("hi", 10 * GB), copy("mid", 10 * GB), copy("lo", 10 * GB)]
    entries = [SpecEntry("hi", "high"), SpecEntry("mid", "medium"), SpecEntry("lo", "low")]
    p = plan(models, entries, min_free=15 * GB, free=1 * GB)
    assert removed(p) == [("lo", "space"), ("mid", "space")]
    assert (p.free_bytes_after, p.shortfall_bytes, p.freed_bytes) == (21 * GB, 0, 20 * GB)


def test_space_within_a_priority_evicts_least_recently_used_then_by_id() -> None:
    models = [copy("b", days_idle=1), copy("a", days_idle=1), copy("old", days_idle=5)]
    entries = [SpecEntry(i, "medium") for i in ("a", "b", "old")]
    p = plan(models, entries, min_free=3 * GB, free=0)
    assert [r.id for r in p.removals] == ["old", "a", "b"]
    p = plan(models, entries, min_free=2 * GB, free=0)
    assert [r.id for r in p.removals] == ["old", "a"]


def test_space_evicts_unlisted_then_removed_from_spec_then_by_priority() -> None:
    models = [copy("low", days_idle=9), copy("gone-high", days_idle=0),
              copy("stray", days_idle=0), copy("high", days_idle=9)]
    entries = [SpecEntry("low", "low"), SpecEntry("high", "high"),
               SpecEntry("gone-high", "high", in_spec=False)]
    p = plan(models, entries, min_free=10 * GB, free=0)
    assert [r.id for r in p.removals] == ["stray", "gone-high", "low", "high"]
    assert p.shortfall_bytes == 6 * GB


def test_space_counts_what_the_age_rules_already_freed() -> None:
    models = [copy("old", 5 * GB, days_idle=40), copy("lo", 5 * GB)]
    entries = [SpecEntry("old"), SpecEntry("lo", "low")]
    p = plan(models, entries, max_age=30 * DAY, min_free=5 * GB, free=1 * GB)
    assert removed(p) == [("old", "maxAge")]
    assert p.free_bytes_after == 6 * GB


def test_space_never_evicts_in_use_and_reports_the_shortfall() -> None:
    models = [copy("used", 50 * GB), copy("lo", 10 * GB)]
    entries = [SpecEntry("used", "low"), SpecEntry("lo", "high")]
    p = plan(models, entries, {"used"}, min_free=100 * GB, free=20 * GB)
    assert removed(p) == [("lo", "space")]
    assert (p.free_bytes_after, p.shortfall_bytes) == (30 * GB, 70 * GB)


def test_space_skips_empty_models_they_free_nothing() -> None:
    p = plan([copy("empty", 0), copy("full", GB)], [SpecEntry("empty", "low"),
                                                    SpecEntry("full", "high")],
             min_free=GB, free=0)
    assert removed(p) == [("full", "space")]


def test_enough_free_space_evicts_nothing() -> None:
    p = plan([copy("a")], [SpecEntry("a", "low")], min_free=GB, free=GB)
    assert p.removals == () and p.shortfall_bytes == 0


def test_duplicate_entries_prefer_the_one_in_the_spec_whatever_the_order() -> None:
    a = [SpecEntry("m", "low", DAY, in_spec=False), SpecEntry("m", "high", None, True)]
    for entries in (a, a[::-1]):
        assert removed(plan([copy("m", days_idle=2)], entries)) == []


def test_a_model_twice_on_disk_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan([copy("a"), copy("a")])


def test_eviction_key_orders_groups_then_priority() -> None:
    m = copy("x")
    keys = [eviction_key(m, None), eviction_key(m, SpecEntry("x", "high", in_spec=False)),
            eviction_key(m, SpecEntry("x", "low")), eviction_key(m, SpecEntry("x", "medium")),
            eviction_key(m, SpecEntry("x", "high"))]
    assert keys == sorted(keys)


# --- properties ----------------------------------------------------------------------

IDS = [f"org/m{i}" for i in range(12)]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=10))
    models = [CachedCopy(i, draw(st.integers(0, 100)),
                         completed_at=NOW - timedelta(days=draw(st.integers(0, 60))),
                         last_used=(NOW - timedelta(days=draw(st.integers(-1, 60)))
                                    if draw(st.booleans()) else None)) for i in ids]
    entry_ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=10))
    entries = [SpecEntry(i, draw(st.sampled_from(["high", "medium", "low"])),
                         draw(st.one_of(st.none(), st.integers(0, 60).map(lambda d: d * DAY))),
                         draw(st.booleans())) for i in entry_ids]
    return {
        "models": models,
        "entries": entries,
        "in_use": set(draw(st.lists(st.sampled_from(IDS), max_size=6))),
        "max_age": draw(st.one_of(st.none(), st.integers(0, 60).map(lambda d: d * DAY))),
        "min_free": draw(st.one_of(st.none(), st.integers(0, 1000))),
        "free": draw(st.integers(0, 500)),
    }


def run(s: dict[str, object]) -> CleanupPlan:
    return plan(s["models"], s["entries"], s["in_use"],  # type: ignore[arg-type]
                max_age=s["max_age"], min_free=s["min_free"], free=s["free"])  # type: ignore[arg-type]


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_in_use_models_are_never_removed(s: dict[str, object]) -> None:
    assert not run(s).removed_ids & s["in_use"]  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_input_order(s: dict[str, object], rnd: object) -> None:
    shuffled = dict(s)
    for key in ("models", "entries"):
        items = list(s[key])  # type: ignore[call-overload]
        rnd.shuffle(items)  # type: ignore[attr-defined]
        shuffled[key] = items
    assert run(s) == run(shuffled)


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_free_space_reaches_the_minimum_whenever_it_can(s: dict[str, object]) -> None:
    p = run(s)
    models: list[CachedCopy] = s["models"]  # type: ignore[assignment]
    evictable = sum(m.size_bytes for m in models if m.id not in s["in_use"])  # type: ignore[operator]
    assert p.free_bytes_after == s["free"] + p.freed_bytes  # type: ignore[operator]
    min_free = s["min_free"]
    if min_free is None:
        assert p.shortfall_bytes == 0
    elif s["free"] + evictable >= min_free:  # type: ignore[operator]
        assert p.free_bytes_after >= min_free and p.shortfall_bytes == 0
    else:  # short: everything that could go went, and the plan says by how much
        assert p.shortfall_bytes == min_free - p.free_bytes_after > 0
        assert {m.id for m in models if m.size_bytes > 0} - s["in_use"] <= p.removed_ids  # type: ignore[operator]


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_every_removal_is_named_by_a_rule(s: dict[str, object]) -> None:
    p = run(s)
    models = {m.id: m for m in s["models"]}  # type: ignore[attr-defined]
    entries = {e.id: e for e in s["entries"]}  # type: ignore[attr-defined]
    max_age, min_free = s["max_age"], s["min_free"]
    assert len(p.removed_ids) == len(p.removals)
    free = s["free"] + sum(r.size_bytes for r in p.removals if r.reason != Reason.SPACE)  # type: ignore[operator]
    space = [r for r in p.removals if r.reason == Reason.SPACE]
    assert p.removals[len(p.removals) - len(space):] == tuple(space), "space comes last"
    for r in p.removals:
        m, e = models[r.id], entries.get(r.id)
        age = (NOW - m.last_activity).total_seconds()
        assert r.size_bytes == m.size_bytes
        if r.reason == Reason.RETENTION:
            assert e is not None and e.retention_seconds is not None
            assert age > e.retention_seconds
        elif r.reason == Reason.MAX_AGE:
            assert e is not None and e.retention_seconds is None
            assert max_age is not None and age > max_age  # type: ignore[operator]
        elif r.reason == Reason.UNLISTED:
            assert e is None and max_age is not None and age > max_age  # type: ignore[operator]
        else:
            assert min_free is not None and free < min_free, "evicted only while short"  # type: ignore[operator]
            assert m.size_bytes > 0
            free += r.size_bytes


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_space_evicts_a_prefix_of_the_eviction_order(s: dict[str, object]) -> None:
    p = run(s)
    entries = {e.id: e for e in s["entries"]}  # type: ignore[attr-defined]
    age_removed = {r.id for r in p.removals if r.reason != Reason.SPACE}
    order = sorted((m for m in s["models"]  # type: ignore[attr-defined]
                    if m.id not in s["in_use"] and m.id not in age_removed  # type: ignore[operator]
                    and m.size_bytes > 0),
                   key=lambda m: eviction_key(m, entries.get(m.id)))
    space = [r.id for r in p.removals if r.reason == Reason.SPACE]
    assert space == [m.id for m in order[: len(space)]]
