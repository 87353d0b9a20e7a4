"""AIMRecipe fit status (pure), the change fingerprints, and the status controller's
no-write and coalescing rules, on synthetic clusters."""

from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipes_fixtures import config, gpu_node, node, pod, recipe

from aim_controller.api.v1alpha1 import MAX_STATUS_NODES as MAX_NODES
from aim_controller.api.v1alpha1 import MAX_SUMMARY
from aim_controller.api.v1alpha1.recipe import AIMRecipeStatus
from aim_controller.machinery.workqueue import RateLimitingQueue
from aim_controller.recipes import build_inventory
from aim_controller.reconcilers import conditions
from aim_controller.reconcilers.gpu_fingerprint import node_gpu_fingerprint, pod_gpu_fingerprint
from aim_controller.reconcilers.recipe_fit import recipe_fit_status
from aim_controller.reconcilers.recipe_status import (
    _normalized,
    _Refresher,
    desired_status,
    next_refresh_delay,
)

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T01:00:00Z"


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = conditions.find(status["conditions"], type_)
    assert found is not None, type_
    return dict(found)


def rows(status: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["gpuCount"]: r for r in status["configurations"]}


def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [gpu_node(f"x{i}", "MI300X") for i in range(4)]
    nodes += [gpu_node("m0", "MI250X", 4), node("cpu", {}, gpus=None)]
    pods = [pod("a", "x0", 4), pod("b", "x1", 8), pod("done", "x2", 8, phase="Succeeded")]
    return nodes, pods


# --- examples -------------------------------------------------------------------------


def test_fitting_replicas_nodes_and_models_per_configuration() -> None:
    inv = build_inventory(*cluster())
    status = recipe_fit_status(recipe("r", counts=(1, 4, 8)), inv)
    assert status["valid"] is True
    by = rows(status)
    # x0 has 4 free, x1 none, x2 and x3 all 8 (the Succeeded pod holds nothing).
    assert by[1]["fittingReplicas"] == 20
    assert by[4]["fittingReplicas"] == 5
    assert by[8]["fittingReplicas"] == 2
    assert by[8]["nodes"] == ["x2", "x3"]
    assert by[4]["nodes"] == ["x0", "x2", "x3"]
    assert all(r["gpuModels"] == ["MI300X"] and r["message"] == "" for r in by.values())
    assert status["summary"] == "3/3 configs fit (20x1 GPU, 5x4 GPU, 2x8 GPU)"
    assert [c["type"] for c in status["conditions"]] == ["Valid", "Ready", "Fits"]
    assert cond(status, "Fits")["status"] == "True"
    # The schema accepts it once the caller has merged the conditions.
    AIMRecipeStatus.model_validate(desired_status(recipe("r", counts=(1, 4, 8)), inv, T0))


def test_configuration_order_follows_the_spec() -> None:
    inv = build_inventory(*cluster())
    status = recipe_fit_status(recipe("r", counts=(8, 1, 4)), inv)
    assert [r["gpuCount"] for r in status["configurations"]] == [8, 1, 4]


def test_hardware_not_present_names_the_unusable_nodes() -> None:
    nodes = [gpu_node("big", "MI325X", unschedulable=True), gpu_node("x", "MI300X")]
    status = recipe_fit_status(recipe("r", hardware="MI325X"), build_inventory(nodes, []))
    row = rows(status)[1]
    assert row["fittingReplicas"] == 0 and row["nodes"] == []
    assert row["message"].startswith("HardwareNotPresent: no usable MI325X node")
    assert "big: cordoned" in row["message"]
    fits = cond(status, "Fits")
    assert (fits["status"], fits["reason"]) == ("False", "HardwareNotPresent")
    assert status["summary"] == "0/1 configs fit (HardwareNotPresent)"
    # Still a valid recipe that selection may use once the hardware shows up.
    assert cond(status, "Valid")["status"] == "True"
    assert cond(status, "Ready")["status"] == "True"


def test_replica_larger_than_any_node_does_not_fit_on_one_node() -> None:
    inv = build_inventory([gpu_node("m0", "MI250X", 4), gpu_node("m1", "MI250X", 4)], [])
    status = recipe_fit_status(recipe("r", hardware="MI250X", counts=(8,)), inv)
    row = rows(status)[8]
    assert row["fittingReplicas"] == 0  # 8 GPUs free in total, but never on one node
    assert row["message"].startswith("DoesNotFitOnOneNode:")
    assert cond(status, "Fits")["reason"] == "DoesNotFitOnOneNode"


def test_used_gpus_give_insufficient_free_gpus_with_the_free_counts() -> None:
    nodes = [gpu_node("x0", "MI300X"), gpu_node("x1", "MI300X")]
    pods = [pod("a", "x0", 6), pod("b", "x1", 5)]
    status = recipe_fit_status(recipe("r", counts=(4, 2)), build_inventory(nodes, pods))
    by = rows(status)
    assert by[4]["fittingReplicas"] == 0
    assert (
        by[4]["message"]
        == "InsufficientFreeGPUs: needs 1x4=4 free MI300X GPUs (4 per node); "
        "free per node: x1=3, x0=2; 0 replicas fit"
    )
    assert by[2]["fittingReplicas"] == 2
    assert status["summary"] == "1/2 configs fit (2x2 GPU)"


def test_invalid_configuration_is_reported_and_fits_nowhere() -> None:
    bad = config(2, tp=1)  # --tensor-parallel-size 1 on a 2-GPU configuration
    r = recipe("r", configurations=[bad, config(4)])
    status = recipe_fit_status(r, build_inventory(*cluster()))
    assert status["valid"] is False
    valid = cond(status, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidRecipe")
    assert (
        valid["message"]
        == "gpuCount 2: args use 1 GPU (--tensor-parallel-size 1) but gpuCount is 2"
    )
    by = rows(status)
    assert by[2]["fittingReplicas"] == 0 and by[2]["message"].startswith("InvalidRecipe: args use")
    assert by[4]["fittingReplicas"] == 5
    # The valid configuration keeps the recipe usable.
    assert cond(status, "Ready")["status"] == "True"
    assert "invalid:" in status["summary"]


def test_problem_shared_by_every_configuration_is_said_once() -> None:
    r = recipe("r", precision="fp8", hardware="MI250X", counts=(1, 2))
    status = recipe_fit_status(r, build_inventory(*cluster()))
    assert cond(status, "Valid")["message"] == "MI250X (CDNA2) has no fp8 support"
    ready = cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidRecipe")
    assert cond(status, "Fits")["reason"] == "InvalidRecipe"


def test_empty_model_id_is_invalid_with_a_message() -> None:
    r = recipe("r")
    r["spec"]["modelId"] = "  "
    status = recipe_fit_status(r, build_inventory(*cluster()))
    assert status["valid"] is False and status["configurations"] == []
    assert "modelId" in cond(status, "Valid")["message"]


def test_unparseable_gpu_count_is_reported_not_crashed_on() -> None:
    r = recipe("r", counts=(1,))
    r["spec"]["configurations"].append({"gpuCount": "many", "args": []})
    status = recipe_fit_status(r, build_inventory(*cluster()))
    assert status["valid"] is False
    # The API schema's own words, with the field's path.
    assert "spec.configurations.1.gpuCount: Input should be a valid integer" in cond(
        status, "Valid")["message"]
    assert [row["gpuCount"] for row in status["configurations"]] == [1]


def test_disabled_configurations_are_shown_but_not_counted() -> None:
    r = recipe("r", configurations=[config(1, enabled=False), config(8)])
    status = recipe_fit_status(r, build_inventory(*cluster()))
    by = rows(status)
    assert by[1]["enabled"] is False and by[1]["fittingReplicas"] == 20
    assert status["summary"] == "1/1 configs fit (2x8 GPU)"

    off = recipe("r", configurations=[config(1, enabled=False)])
    status = recipe_fit_status(off, build_inventory(*cluster()))
    assert status["summary"] == "all configurations disabled"
    assert cond(status, "Ready")["reason"] == "Disabled"
    assert cond(status, "Fits")["reason"] == "Disabled"


def test_observed_generation_comes_from_the_object() -> None:
    r = recipe("r")
    r["metadata"]["generation"] = 7
    assert recipe_fit_status(r, build_inventory(*cluster()))["observedGeneration"] == 7
    assert "observedGeneration" not in recipe_fit_status(recipe("r"), build_inventory(*cluster()))


def test_lists_and_texts_stay_within_the_schema_limits() -> None:
    nodes = [gpu_node(f"node-{i:03d}", "MI300X") for i in range(150)]
    long_model = "org/" + "m" * 200
    configs = [config(n, long_model, tp=n + 1) for n in range(1, 9)] + [
        config(n, long_model) for n in range(9, 17)
    ]
    status = recipe_fit_status(recipe("r", long_model, configurations=configs),
                               build_inventory(nodes, []))  # fmt: skip
    assert len(status["summary"]) <= MAX_SUMMARY
    assert all(len(r["nodes"]) <= MAX_NODES for r in status["configurations"])
    assert rows(status)[1]["fittingReplicas"] == 0  # invalid (tp 2 on 1 GPU)
    AIMRecipeStatus.model_validate(desired_status(recipe("r", long_model, configurations=configs),
                                                  build_inventory(nodes, []), T0))  # fmt: skip


# --- the controller's rules, without I/O ----------------------------------------------


def test_recomputing_an_unchanged_recipe_gives_the_stored_status_so_no_write() -> None:
    inv = build_inventory(*cluster())
    obj = recipe("r", counts=(1, 8))
    obj["metadata"]["generation"] = 3
    first = desired_status(obj, inv, T0)
    stored = copy.deepcopy(first)
    # What the API server returns: schema defaults filled in, empty lists may be dropped.
    for row in stored["configurations"]:
        if not row["nodes"]:
            del row["nodes"]
    obj["status"] = stored
    again = desired_status(obj, inv, T1)  # later clock: the transition times are kept
    assert _normalized(again) == _normalized(stored)


def test_a_change_in_fit_changes_the_status_but_keeps_unchanged_transition_times() -> None:
    nodes, pods = cluster()
    obj = recipe("r", counts=(8,))
    obj["status"] = desired_status(obj, build_inventory(nodes, pods), T0)
    busier = build_inventory(nodes, [*pods, pod("c", "x2", 1)])
    after = desired_status(obj, busier, T1)
    assert _normalized(after) != _normalized(obj["status"])
    assert rows(after)[8]["fittingReplicas"] == 1
    assert cond(after, "Fits")["lastTransitionTime"] == T0  # still True
    full = build_inventory(nodes, [*pods, pod("c", "x2", 1), pod("d", "x3", 1)])
    obj["status"] = after
    none_fit = desired_status(obj, full, T1)
    assert cond(none_fit, "Fits")["lastTransitionTime"] == T1
    assert cond(none_fit, "Valid")["lastTransitionTime"] == T0


def test_unparseable_observed_status_is_rewritten() -> None:
    assert _normalized({"configurations": [{"gpuCount": 0}]}) is None
    assert _normalized({}) is not None


def test_node_fingerprint_ignores_heartbeats_and_sees_capacity_changes() -> None:
    n = gpu_node("x", "MI300X", resource_version="1")
    beat = copy.deepcopy(n)
    beat["metadata"]["resourceVersion"] = "2"
    beat["status"]["conditions"][1]["lastHeartbeatTime"] = T1
    beat["metadata"]["labels"]["kubernetes.io/hostname"] = "x"
    assert node_gpu_fingerprint(beat) == node_gpu_fingerprint(n)
    for change in (
        lambda o: o["spec"].__setitem__("unschedulable", True),
        lambda o: o["status"]["allocatable"].__setitem__("amd.com/gpu", "4"),
        lambda o: o["status"]["conditions"][1].__setitem__("status", "False"),
        lambda o: o["spec"].__setitem__("taints", [{"key": "k", "effect": "NoSchedule"}]),
        lambda o: o["metadata"]["labels"].__setitem__("amd.com/gpu.device-id", "74a5"),
    ):
        changed = copy.deepcopy(n)
        change(changed)
        assert node_gpu_fingerprint(changed) != node_gpu_fingerprint(n)
    assert node_gpu_fingerprint(node("cpu", {}, gpus=None)) is None


def test_pod_fingerprint_is_the_gpus_it_holds() -> None:
    p = pod("p", "x0", 4)
    churn = copy.deepcopy(p)
    churn["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert pod_gpu_fingerprint(churn) == pod_gpu_fingerprint(p) == ("x0", (("amd.com/gpu", 4),))
    assert pod_gpu_fingerprint(pod("p", None, 4)) is None  # not bound yet
    assert pod_gpu_fingerprint(pod("p", "x0", 4, phase="Failed")) is None
    assert pod_gpu_fingerprint(pod("p", "x0", None)) is None


class FakeStore:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def list_keys(self) -> list[str]:
        return list(self.keys)


class FakeRecipes:
    def __init__(self, keys: list[str]) -> None:
        self.store = FakeStore(keys)


async def test_refresher_coalesces_a_burst_of_changes_into_one_refresh() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue("t")
    recipes = FakeRecipes(["ns/a"])
    refresh = _Refresher(queue, recipes, 0.01)  # type: ignore[arg-type]
    try:
        for _ in range(1000):
            refresh.poke()
        assert refresh.pending and len(queue) == 0
        recipes.store.keys.append("ns/b")  # added while the refresh waits: included
        async with asyncio.timeout(10):  # a guard against hanging, not a timing assertion
            got = sorted([await queue.get(), await queue.get()])
        assert got == ["ns/a", "ns/b"]
        assert not refresh.pending and len(queue) == 0  # each key once
        refresh.poke()  # a change after the refresh schedules the next one
        assert refresh.pending
    finally:
        queue.shutdown()


async def test_refresher_backs_off_while_changes_keep_coming_and_resets_after_a_quiet_spell(
) -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue("t")
    refresh = _Refresher(queue, FakeRecipes(["ns/a"]), 0.1, cap=0.4)  # type: ignore[arg-type]
    waits = []
    try:
        async with asyncio.timeout(20):  # a guard against hanging, not a timing assertion
            for _ in range(4):  # each poke right after the refresh before it fired
                refresh.poke()
                waits.append(refresh.last_delay)
                assert await queue.get() == "ns/a"
                queue.done("ns/a")
            await asyncio.sleep(0.6)  # longer than the last wait: quiet
            refresh.poke()
            waits.append(refresh.last_delay)
            assert await queue.get() == "ns/a"
        assert waits == [0.1, 0.2, 0.4, 0.4, 0.1]
    finally:
        queue.shutdown()


@given(base=st.floats(0.01, 100), cap_factor=st.floats(1, 64),
       previous_factor=st.one_of(st.none(), st.floats(0.5, 80)),
       since_factor=st.one_of(st.none(), st.floats(0, 2)))
def test_next_refresh_delay_stays_between_base_and_cap_and_only_grows_while_busy(
    base: float, cap_factor: float, previous_factor: float | None, since_factor: float | None
) -> None:
    cap = base * cap_factor
    previous = None if previous_factor is None else base * previous_factor
    since = None if since_factor is None or previous is None else previous * since_factor
    got = next_refresh_delay(previous, since, base, cap)
    assert base <= got <= cap
    if previous is None or since is None or since >= previous:
        assert got == base  # a quiet spell (or the first refresh) starts again
    else:
        assert got == max(base, min(previous * 2, cap))


def test_next_refresh_delay_doubles_up_to_the_cap_through_a_burst() -> None:
    waits, previous = [], None
    for _ in range(6):
        previous = next_refresh_delay(previous, None if previous is None else 0.0, 10.0, 50.0)
        waits.append(previous)
    assert waits == [10.0, 20.0, 40.0, 50.0, 50.0, 50.0]


# --- properties -----------------------------------------------------------------------

MODELS = ("MI300X", "MI325X", "MI250X")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class World:
    nodes: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    free: dict[str, tuple[str, int]]  # usable node -> (model, free GPUs), computed here
    recipe: dict[str, Any]
    hardware: str
    seed: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n_nodes = draw(st.integers(0, 12))
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    free: dict[str, tuple[str, int]] = {}
    for i in range(n_nodes):
        model = draw(st.sampled_from(MODELS))
        gpus = draw(st.sampled_from((4, 8)))
        cordoned = draw(st.booleans()) and draw(st.booleans())
        ready = not (draw(st.booleans()) and draw(st.booleans()))
        name = f"n{i:02d}"
        nodes.append(gpu_node(name, model, gpus, unschedulable=cordoned, ready=ready))
        used = 0
        for j, want in enumerate(draw(st.lists(st.integers(1, 8), max_size=4))):
            phase = draw(st.sampled_from(("Running", "Running", "Pending", "Succeeded")))
            pods.append(pod(f"p{i}-{j}", name, want, phase=phase))
            if phase != "Succeeded":
                used += want
        if ready and not cordoned:
            free[name] = (model, max(0, gpus - used))
    hardware = draw(st.sampled_from(MODELS))
    counts = draw(st.lists(st.integers(1, 16), min_size=1, max_size=5, unique=True))
    rec = recipe("r", hardware=hardware, counts=counts)
    return World(nodes, pods, free, rec, hardware, draw(st.integers(0, 2**32)))


@SETTINGS
@given(worlds())
def test_fitting_replicas_are_exactly_what_single_node_bin_packing_allows(w: World) -> None:
    status = recipe_fit_status(w.recipe, build_inventory(w.nodes, w.pods))
    serving = {"MI250X": {"MI250X"}}.get(w.hardware, {w.hardware})
    pool = {name: f for name, (model, f) in w.free.items() if model in serving}
    for row in status["configurations"]:
        n = row["gpuCount"]
        # Place replicas one by one on the node with the most free GPUs (one node each).
        left = dict(pool)
        placed = 0
        while left and max(left.values()) >= n:
            best = max(left, key=lambda k: left[k])
            left[best] -= n
            placed += 1
        assert row["fittingReplicas"] == placed
        assert row["fittingReplicas"] * n <= sum(pool.values())
        assert row["nodes"] == sorted(k for k, f in pool.items() if f >= n)
        assert (row["message"] == "") == (placed > 0)
        if placed:
            assert row["gpuModels"] == [w.hardware]


@SETTINGS
@given(worlds())
def test_status_is_deterministic_whatever_the_input_order(w: World) -> None:
    want = recipe_fit_status(w.recipe, build_inventory(w.nodes, w.pods))
    rng = random.Random(w.seed)
    nodes, pods = list(w.nodes), list(w.pods)
    rng.shuffle(nodes)
    rng.shuffle(pods)
    assert recipe_fit_status(w.recipe, build_inventory(nodes, pods)) == want
    assert recipe_fit_status(copy.deepcopy(w.recipe), build_inventory(nodes, pods)) == want
