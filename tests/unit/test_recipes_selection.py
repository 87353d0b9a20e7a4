"""Recipe selection: reason codes, manual mode, shadowing, scoring, stickiness, estimates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from recipes_fixtures import cluster, config, endpoint, gpu_node, pod, quota, recipe

from aim_controller.api.v1alpha1.endpoint import RecipeSelection
from aim_controller.recipes import (
    Decision,
    GpuInventory,
    GpuQuota,
    Reason,
    RecipeIndex,
    Verdict,
    build_inventory,
    select,
)
from aim_controller.recipes.estimate import model_size, parse_size
from aim_controller.recipes.quota import gpu_quota

NS = "aim"
MODEL = "org/Model-7B"
T0 = datetime(2026, 1, 1, tzinfo=UTC)




def run(
    spec: dict[str, Any],
    inv: GpuInventory,
    recipes: list[dict[str, Any]] | None = None,
    catalog: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> Decision:
    return select(spec, NS, recipes or [], catalog if catalog is not None else [], inv, **kw)


def verdicts(d: Decision) -> dict[tuple[str, int], tuple[str, str]]:
    return {(c.config.name, c.config.gpu_count): (c.verdict, c.reason) for c in d.candidates}


def message_of(d: Decision, name: str, gpus: int) -> str:
    return next(
        c.message for c in d.candidates if (c.config.name, c.config.gpu_count) == (name, gpus)
    )


# --- basic choice and every rejection reason ------------------------------------------


def test_selected_picks_best_throughput_per_gpu() -> None:
    recipes = [
        recipe("r300", hardware="MI300X", counts=(1, 2), tps=6000),
        recipe("r325", hardware="MI325X", counts=(1,), tps=7000),
    ]
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), recipes)
    assert d.reason is Reason.SELECTED
    assert d.chosen is not None
    assert (d.chosen.config.name, d.chosen.config.gpu_count) == ("r325", 1)
    assert d.chosen.verdict is Verdict.SELECTED
    v = verdicts(d)
    assert v[("r300", 1)] == (Verdict.FEASIBLE, Reason.OUTSCORED)
    assert v[("r300", 2)] == (Verdict.FEASIBLE, Reason.OUTSCORED)
    assert d.args[:2] == ["--model", MODEL]
    assert d.resources["requests"]["amd.com/gpu"] == "1"


def test_hardware_not_present_names_what_the_cluster_has() -> None:
    d = run(endpoint(), cluster(MI300X=[8]), [recipe("r", hardware="MI355X")])
    assert d.reason is Reason.NO_FEASIBLE_CANDIDATE and d.chosen is None
    assert verdicts(d)[("r", 1)] == (Verdict.REJECTED, Reason.HARDWARE_NOT_PRESENT)
    assert "(MI300X: 1 node, 8/8 GPUs free)" in message_of(d, "r", 1)
    assert "1 HardwareNotPresent" in d.message


def test_hardware_only_on_cordoned_nodes_says_so() -> None:
    inv = build_inventory([gpu_node("n1", "MI300X", unschedulable=True)], [])
    d = run(endpoint(), inv, [recipe("r")])
    assert verdicts(d)[("r", 1)][1] is Reason.HARDWARE_NOT_PRESENT
    assert "n1: cordoned" in message_of(d, "r", 1)


def test_does_not_fit_on_one_node() -> None:
    inv = build_inventory([gpu_node("small", "MI300X", gpus=4)], [])
    d = run(endpoint(), inv, [recipe("r", counts=(8,))])
    assert verdicts(d)[("r", 8)][1] is Reason.DOES_NOT_FIT_ON_ONE_NODE
    assert "largest MI300X node has 4 allocatable" in message_of(d, "r", 8)


def test_insufficient_free_gpus_uses_bin_packing_and_reports_numbers() -> None:
    # 3 + 3 + 2 = 8 free GPUs, but only three 2-GPU replicas fit.
    inv = cluster(MI300X=[3, 3, 2])
    ok = run(endpoint(min_replicas=3), inv, [recipe("r", counts=(2,))])
    assert ok.reason is Reason.SELECTED
    d = run(endpoint(min_replicas=4), inv, [recipe("r", counts=(2,))])
    assert d.reason is Reason.NO_FEASIBLE_CANDIDATE
    msg = message_of(d, "r", 2)
    assert verdicts(d)[("r", 2)][1] is Reason.INSUFFICIENT_FREE_GPUS
    assert "needs 4x2=8 free MI300X GPUs" in msg
    assert "mi300x-0=3, mi300x-1=3, mi300x-2=2" in msg and "3 replicas fit" in msg
    assert "closest: aim/r (2 GPUs)" in d.message


def test_quota_exceeded_from_resource_quota_objects() -> None:
    inv = cluster(MI300X=[8, 8])
    d = run(endpoint(min_replicas=2), inv, [recipe("r", counts=(4,))], quota=[quota(10, used=4)])
    assert verdicts(d)[("r", 4)][1] is Reason.QUOTA_EXCEEDED
    assert "needs 2x4=8 amd.com/gpu; ResourceQuota gpu-quota leaves 6" in message_of(d, "r", 4)
    # The endpoint's own pods give their GPUs back when it would be replaced.
    ok = run(
        endpoint(min_replicas=2),
        inv,
        [recipe("r", counts=(4,))],
        quota=[quota(10, used=4)],
        owned_quota_gpus=4,
    )
    assert ok.reason is Reason.SELECTED


def test_quota_keys_scopes_and_tightest() -> None:
    # Without the namespace's pod count the bare key falls back to status.used.
    assert gpu_quota([quota(8, 2, key="amd.com/gpu")]) == GpuQuota(8, 2, "gpu-quota", False)
    assert gpu_quota([quota(8, 2, scopes=["Terminating"])]) is None
    assert gpu_quota([quota(8, 2, scopes=["NotTerminating"])]) == GpuQuota(8, 2, "gpu-quota")
    tight = gpu_quota([quota(16, 0, name="a"), quota(8, 6, name="b")])
    assert tight is not None and tight.name == "b" and tight.room == 2
    assert gpu_quota(GpuQuota(4, 1)) == GpuQuota(4, 1)
    assert gpu_quota(None) is None


def test_disabled_and_invalid_recipes() -> None:
    bad_tp = config(2, tp=4)
    bad_request = config(2, gpu_request=1)
    bad_dtype = config(1, dtype="float16")
    recipes = [
        recipe("off", configurations=[config(1, enabled=False)]),
        recipe("tp", hardware="MI325X", configurations=[bad_tp]),
        recipe("req", hardware="MI355X", configurations=[bad_request]),
        recipe("dtype", hardware="MI350X", configurations=[bad_dtype]),
        recipe("fp8", hardware="MI250X", precision="fp8", counts=(1,)),
        recipe("dup", hardware="MI308X", configurations=[config(1), config(1)]),
        recipe("hw", hardware="MI999", counts=(1,)),
    ]
    d = run(endpoint(), cluster(MI300X=[8]), recipes)
    v = verdicts(d)
    assert v[("off", 1)] == (Verdict.REJECTED, Reason.DISABLED)
    for key in [("tp", 2), ("req", 2), ("dtype", 1), ("fp8", 1), ("dup", 1), ("hw", 1)]:
        assert v[key] == (Verdict.REJECTED, Reason.INVALID_RECIPE), key
    assert "args use 4 GPUs (--tensor-parallel-size 4) but gpuCount is 2" in message_of(d, "tp", 2)
    assert "resources.requests[amd.com/gpu]=1 but gpuCount is 2" in message_of(d, "req", 2)
    assert "--dtype float16 contradicts precision bfloat16" in message_of(d, "dtype", 1)
    assert "MI250X (CDNA2) has no fp8 support" in message_of(d, "fp8", 1)
    assert "gpuCount 1 appears in 2 configurations" in message_of(d, "dup", 1)
    # The API schema's own words (admission rejects it; a hand-made object shows why).
    assert "spec.hardware: Input should be 'MI210'" in message_of(d, "hw", 1)


def test_recipe_without_hardware_is_invalid_and_status_omits_the_empty_field() -> None:
    d = run(endpoint(), cluster(MI300X=[8]), [recipe("nohw", hardware="")])
    assert verdicts(d)[("nohw", 1)] == (Verdict.REJECTED, Reason.INVALID_RECIPE)
    cand = d.to_status()["candidates"][0]
    assert "hardware" not in cand and cand["message"].startswith("invalid spec: spec.hardware")


def test_missing_tensor_parallel_flag_means_one_gpu() -> None:
    one = config(1)
    one["args"] = ["--model", MODEL, "--dtype", "bfloat16"]
    four = config(4)
    four["args"] = ["--model", MODEL, "--dtype", "bfloat16"]
    d = run(endpoint(), cluster(MI300X=[8]), [recipe("r", configurations=[one, four])])
    v = verdicts(d)
    assert v[("r", 1)][0] is Verdict.SELECTED
    assert v[("r", 4)][1] is Reason.INVALID_RECIPE
    assert "args use 1 GPU (--tensor-parallel-size 1, the engine's default) but gpuCount is 4" in (
        message_of(d, "r", 4)
    )


def test_sglang_parallelism_flags() -> None:
    cfg = config(4)
    cfg["args"] = ["--model-path", MODEL, "--tp-size", "2", "--dp-size", "2"]
    bad = config(2)
    bad["args"] = ["--model-path", MODEL, "--tp-size", "4"]
    recipes = [
        recipe("ok", backend="sglang", configurations=[cfg]),
        recipe("bad", hardware="MI325X", backend="sglang", configurations=[bad]),
    ]
    d = run(endpoint(backend="sglang"), cluster(MI300X=[8], MI325X=[8]), recipes)
    assert verdicts(d)[("ok", 4)][0] is Verdict.SELECTED
    assert verdicts(d)[("bad", 2)][1] is Reason.INVALID_RECIPE


def test_resources_gpu_count_overrides() -> None:
    recipes = [recipe("r", counts=(1, 2, 4))]
    d = run(endpoint(override_gpus=4), cluster(MI300X=[8]), recipes)
    assert d.chosen is not None and d.chosen.config.gpu_count == 4
    v = verdicts(d)
    assert v[("r", 1)] == (Verdict.REJECTED, Reason.GPU_COUNT_MISMATCH)
    assert "the endpoint asks for 4" in message_of(d, "r", 2)


def test_manual_mode_filters_count_precision_and_backend() -> None:
    recipes = [
        recipe("bf16", counts=(1, 4)),
        recipe("fp8", precision="fp8", counts=(4,), tps=9000),
        recipe("sgl", backend="sglang", precision="float16", counts=(4,)),
    ]
    spec = endpoint(auto=False, gpu_count=4, precision="bfloat16", backend="vllm")
    d = run(spec, cluster(MI300X=[8]), recipes)
    assert d.chosen is not None and (d.chosen.config.name, d.chosen.config.gpu_count) == ("bf16", 4)
    v = verdicts(d)
    assert v[("bf16", 1)][1] is Reason.GPU_COUNT_MISMATCH
    assert v[("fp8", 4)][1] is Reason.PRECISION_MISMATCH
    assert v[("sgl", 4)][1] is Reason.PRECISION_MISMATCH
    spec = endpoint(auto=False, gpu_count=1, backend="vllm")
    d = run(spec, cluster(MI300X=[8]), [recipe("sgl", backend="sglang", counts=(1,))])
    assert verdicts(d)[("sgl", 1)][1] is Reason.BACKEND_MISMATCH


def test_auto_mode_is_narrowed_by_set_fields_and_defaults_to_vllm() -> None:
    recipes = [
        recipe("bf16", counts=(1, 2)),
        recipe("fp8", precision="fp8", counts=(1,), tps=9000),
        recipe("sgl", hardware="MI325X", backend="sglang", counts=(1,), tps=99000),
    ]
    inv = cluster(MI300X=[8], MI325X=[8])
    d = run(endpoint(), inv, recipes)
    assert d.chosen is not None and d.chosen.config.name == "fp8"
    assert verdicts(d)[("sgl", 1)][1] is Reason.BACKEND_MISMATCH
    d = run(endpoint(precision="bfloat16", gpu_count=2), inv, recipes)
    assert d.chosen is not None and (d.chosen.config.name, d.chosen.config.gpu_count) == ("bf16", 2)
    d = run(endpoint(backend="sglang"), inv, recipes)
    assert d.chosen is not None and d.chosen.config.name == "sgl"


def test_api_defaults_do_not_change_the_inputs_hash() -> None:
    raw = endpoint()
    dumped = endpoint(auto=True, optimize_for="throughput", backend="vllm")
    dumped["recipe"] |= {"gpuCount": None, "precision": None}
    recipes = [recipe("r")]
    prev = run(raw, cluster(MI300X=[8]), recipes).to_status()
    assert run(dumped, cluster(MI300X=[0]), recipes, previous=prev).reason is Reason.STICKY


def test_invalid_spec() -> None:
    d = select({"model": {}}, NS, [], [], cluster(MI300X=[8]))
    assert d.reason is Reason.INVALID_SPEC and "spec.model.id" in d.message
    d = run(endpoint(optimize_for="speed"), cluster(MI300X=[8]), [recipe("r")])
    assert d.reason is Reason.INVALID_SPEC
    d = run(endpoint(auto=False), cluster(MI300X=[8]), [recipe("r")])
    assert d.reason is Reason.INVALID_SPEC and "gpuCount is required" in d.message
    d = select({"model": "not-an-object"}, NS, [], [], cluster(MI300X=[8]))
    assert d.reason is Reason.INVALID_SPEC


# --- namespace vs catalog -----------------------------------------------------------


def test_namespace_recipe_shadows_catalog_recipe_with_same_key() -> None:
    catalog = [
        recipe("cat-300", namespace=None, counts=(1,), tps=9999),
        recipe("cat-325", namespace=None, hardware="MI325X", counts=(1,), tps=100),
    ]
    mine = [recipe("mine-300", counts=(1,), tps=500)]
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), mine, catalog)
    v = verdicts(d)
    assert v[("cat-300", 1)] == (Verdict.REJECTED, Reason.SHADOWED)
    assert "namespace recipe aim/mine-300 covers MI300X/bfloat16/vllm" in message_of(
        d, "cat-300", 1
    )
    assert d.chosen is not None and d.chosen.config.name == "mine-300"
    assert v[("cat-325", 1)] == (Verdict.FEASIBLE, Reason.OUTSCORED)


def test_namespace_recipe_wins_ties_over_catalog() -> None:
    catalog = [recipe("a-cat", namespace=None, precision="float16", counts=(1,))]
    mine = [recipe("z-mine", counts=(1,))]
    d = run(endpoint(), cluster(MI300X=[8]), mine, catalog)
    assert d.chosen is not None and d.chosen.config.source == "namespace"
    assert d.to_status()["recipeNamespace"] == NS


def test_recipes_from_other_namespaces_and_models_are_ignored() -> None:
    other_ns = recipe("theirs", namespace="elsewhere", tps=99999)
    other_model = recipe("other", model="org/Other-7B", tps=99999)
    upper = recipe("mine", model=MODEL.upper())
    d = run(endpoint(), cluster(MI300X=[8]), [other_ns, other_model, upper])
    assert [c.config.name for c in d.candidates] == ["mine"]


def test_builtin_catalog_is_used_by_default() -> None:
    d = select(endpoint("Qwen/Qwen3-32B"), NS, [], None, cluster(MI300X=[8]))
    assert d.reason is Reason.SELECTED
    assert d.chosen is not None and d.chosen.config.source == "builtin"
    assert d.chosen.config.hardware == "MI300X"


# --- optimizeFor ----------------------------------------------------------------------


def test_latency_prefers_low_latency_then_more_gpus() -> None:
    recipes = [
        recipe("fast", counts=(1, 2), tps=1000, latency=100),
        recipe("slow", hardware="MI325X", counts=(1,), tps=5000, latency=400),
    ]
    d = run(endpoint(optimize_for="latency"), cluster(MI300X=[8], MI325X=[8]), recipes)
    assert d.chosen is not None and (d.chosen.config.name, d.chosen.config.gpu_count) == ("fast", 2)
    assert d.chosen.score == pytest.approx(-70.7, abs=0.05)  # 100 ms scaled by (1/2) ** 0.5


def test_cost_prefers_fewest_gpus() -> None:
    recipes = [
        recipe("big", counts=(4,), tps=40000),
        recipe("small", hardware="MI325X", counts=(2,)),
    ]
    d = run(
        endpoint(optimize_for="cost", min_replicas=2), cluster(MI300X=[8, 8], MI325X=[8]), recipes
    )
    assert d.chosen is not None and d.chosen.config.name == "small"
    assert d.chosen.score == -4.0
    assert "4 GPUs at 2 replicas" in d.message


def test_throughput_ties_prefer_fewer_gpus_then_newer_hardware_then_namespace() -> None:
    # 2000 tokens/s at 2 GPUs is 1000 per GPU, like 1000 at 1 GPU.
    two = recipe("a-two", counts=(2,), tps=2000)
    one = recipe("b-one", hardware="MI325X", counts=(1,), tps=1000)
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), [two, one])
    assert d.chosen is not None and d.chosen.config.name == "b-one"
    old = recipe("a-old", hardware="MI300X", counts=(1,), tps=1000)
    new = recipe("b-new", hardware="MI325X", counts=(1,), tps=1000)
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), [old, new])
    assert d.chosen is not None and d.chosen.config.name == "b-new"
    assert verdicts(d)[("a-old", 1)] == (Verdict.FEASIBLE, Reason.OUTSCORED)


def test_missing_performance_is_estimated_from_hardware() -> None:
    recipes = [
        recipe("old", hardware="MI250X", counts=(1,), tps=None, latency=None),
        recipe("new", hardware="MI325X", counts=(1,), tps=None, latency=None),
    ]
    d = run(endpoint(), cluster(MI250X=[8], MI325X=[8]), recipes)
    assert d.chosen is not None and d.chosen.config.name == "new"


# --- stickiness ------------------------------------------------------------------------


def sticky_setup() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    recipes = [
        recipe("r300", hardware="MI300X", counts=(4,), tps=8000),
        recipe("r325", hardware="MI325X", counts=(4,), tps=4000),
    ]
    return recipes, endpoint()


def test_previous_choice_is_kept_when_other_workloads_take_the_capacity() -> None:
    recipes, spec = sticky_setup()
    first = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes)
    assert first.chosen is not None and first.chosen.config.name == "r300"
    prev = first.to_status()
    # Our pods (and others) now fill the MI300X node.
    busy = cluster(MI300X=[0], MI325X=[8])
    fresh = run(spec, busy, recipes)
    assert fresh.chosen is not None and fresh.chosen.config.name == "r325"
    d = run(spec, busy, recipes, previous=prev)
    assert d.reason is Reason.STICKY
    assert d.chosen is not None and d.chosen.config.name == "r300"
    assert "InsufficientFreeGPUs" not in d.message and "free capacity now" in d.message
    assert verdicts(d)[("r325", 4)] == (Verdict.FEASIBLE, Reason.PREVIOUS_KEPT)
    # A better option appearing does not move it either.
    better = [*recipes, recipe("r355", hardware="MI355X", counts=(4,), tps=20000)]
    d = run(spec, cluster(MI300X=[8], MI325X=[8], MI355X=[8]), better, previous=prev)
    assert d.reason is Reason.STICKY and d.chosen is not None and d.chosen.config.name == "r300"


def test_reselected_after_grace_period_of_unschedulable_pods() -> None:
    recipes, spec = sticky_setup()
    prev = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes).to_status()
    busy = cluster(MI300X=[0], MI325X=[8])
    before = run(
        spec,
        busy,
        recipes,
        previous=prev,
        now=T0 + timedelta(minutes=9),
        unschedulable_since=T0,
        reselect_after=timedelta(minutes=10),
    )
    assert before.reason is Reason.STICKY
    after = run(
        spec,
        busy,
        recipes,
        previous=prev,
        now=T0 + timedelta(minutes=12),
        unschedulable_since=T0,
        reselect_after=timedelta(minutes=10),
    )
    assert after.reason is Reason.RESELECTED
    assert after.chosen is not None and after.chosen.config.name == "r325"
    assert "unschedulable for 12m00s (grace 10m00s)" in after.message, after.message
    assert verdicts(after)[("r300", 4)] == (Verdict.REJECTED, Reason.INSUFFICIENT_FREE_GPUS)


def test_previous_kept_when_unschedulable_but_nothing_else_fits() -> None:
    recipes, spec = sticky_setup()
    prev = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes).to_status()
    d = run(
        spec,
        cluster(MI300X=[0], MI325X=[0]),
        recipes,
        previous=prev,
        now=T0 + timedelta(hours=1),
        unschedulable_since=T0,
    )
    assert d.reason is Reason.STICKY and d.chosen is not None and d.chosen.config.name == "r300"
    assert "no other candidate is feasible" in d.message


def test_previous_that_became_disabled_is_reselected() -> None:
    recipes, spec = sticky_setup()
    prev = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes).to_status()
    recipes[0] = recipe("r300", hardware="MI300X", configurations=[config(4, enabled=False)])
    d = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes, previous=prev)
    assert d.reason is Reason.RESELECTED
    assert d.chosen is not None and d.chosen.config.name == "r325"
    assert "previous choice aim/r300 (4 GPUs) is now Disabled" in d.message


def test_previous_recipe_deleted_or_changed_is_reselected() -> None:
    recipes, spec = sticky_setup()
    inv = cluster(MI300X=[8], MI325X=[8])
    prev = run(spec, inv, recipes).to_status()
    d = run(spec, inv, recipes[1:], previous=prev)
    assert d.reason is Reason.RESELECTED and "no longer exists" in d.message
    changed = [recipe("r300", hardware="MI325X", precision="float16", counts=(4,)), recipes[1]]
    d = run(spec, inv, changed, previous=prev)
    assert d.reason is Reason.RESELECTED and "changed from MI300X/bfloat16/vllm" in d.message


def test_changed_inputs_make_a_fresh_decision() -> None:
    recipes, spec = sticky_setup()
    prev = run(spec, cluster(MI300X=[8], MI325X=[8]), recipes).to_status()
    d = run(
        endpoint(optimize_for="latency"), cluster(MI300X=[0], MI325X=[8]), recipes, previous=prev
    )
    assert d.reason is Reason.SELECTED and d.message.startswith(
        "the endpoint's model/recipe inputs changed"
    )
    # Scaling is not an input: more replicas keep the choice.
    d = run(endpoint(min_replicas=3), cluster(MI300X=[0], MI325X=[8]), recipes, previous=prev)
    assert d.reason is Reason.STICKY


# --- estimates and NoRecipe ---------------------------------------------------------------


def test_estimated_configuration_when_no_recipe_exists() -> None:
    d = run(endpoint("acme/Llama-3.1-70B-Custom"), cluster(MI300X=[8], MI250X=[8]))
    assert d.reason is Reason.ESTIMATED
    assert d.chosen is not None and d.chosen.estimated
    c = d.chosen.config
    assert (c.hardware, c.precision, c.gpu_count) == ("MI300X", "bfloat16", 2)
    assert c.args[c.args.index("--tensor-parallel-size") + 1] == "2"
    assert c.args[c.args.index("--model") + 1] == "acme/Llama-3.1-70B-Custom"
    status = d.to_status()
    assert status["estimated"] is True and status["source"] == "estimated"
    mi250 = [x for x in d.candidates if x.config.hardware == "MI250X"]
    assert mi250 and mi250[0].config.gpu_count == 4  # 141 GB needs four 64 GiB GCDs


def test_estimate_too_large_for_any_node() -> None:
    d = run(endpoint("acme/Giant-405B"), cluster(MI250X=[8]))
    assert d.reason is Reason.NO_FEASIBLE_CANDIDATE
    assert d.candidates[0].reason is Reason.INSUFFICIENT_GPU_MEMORY
    assert "need more than 8 MI250X GPUs" in d.candidates[0].message


def test_estimate_honours_manual_precision_and_size_hint() -> None:
    spec = endpoint("acme/mystery", auto=False, gpu_count=1, precision="fp8", size_hint="14B")
    d = run(spec, cluster(MI300X=[8]))
    assert d.reason is Reason.ESTIMATED and d.chosen is not None
    assert d.chosen.config.precision == "fp8"
    assert "--quantization" in d.chosen.config.args
    assert "14B parameters (sizeHint)" in d.message


def test_fp8_estimate_is_invalid_on_cdna2() -> None:
    spec = endpoint("acme/Thing-8B-FP8")
    d = run(spec, cluster(MI300X=[8], MI250X=[8]))
    assert d.chosen is not None and d.chosen.config.hardware == "MI300X"
    assert "--quantization" not in d.chosen.config.args  # a pre-quantized checkpoint
    mi250 = next(c for c in d.candidates if c.config.hardware == "MI250X")
    assert mi250.reason is Reason.INVALID_RECIPE and "no fp8 support" in mi250.message


def test_estimated_choice_stays_while_its_nodes_are_away() -> None:
    spec = endpoint("acme/Thing-7B")
    prev = run(spec, cluster(MI300X=[8], MI250X=[8])).to_status()
    assert prev["hardware"] == "MI300X"
    away = build_inventory([gpu_node("m", "MI300X", ready=False), gpu_node("o", "MI250X")], [])
    d = run(spec, away, previous=prev)
    assert d.reason is Reason.STICKY and d.chosen is not None
    assert d.chosen.config.hardware == "MI300X"


def test_estimated_choice_is_sticky_until_recipes_exist() -> None:
    spec = endpoint("acme/Thing-7B")
    prev = run(spec, cluster(MI300X=[8])).to_status()
    d = run(spec, cluster(MI300X=[0]), previous=prev)
    assert d.reason is Reason.STICKY and d.chosen is not None and d.chosen.estimated
    d = run(spec, cluster(MI300X=[8]), [recipe("real", model="acme/Thing-7B")], previous=prev)
    assert d.reason is Reason.RESELECTED and "recipes now exist" in d.message
    assert d.chosen is not None and d.chosen.config.name == "real"


def test_no_recipe_message_names_available_models() -> None:
    mine = [recipe("m", model="org/Mine-7B")]
    catalog = [recipe("c", model="org/Catalogued-8B", namespace=None)]
    d = run(endpoint("org/mystery"), cluster(MI300X=[8]), mine, catalog)
    assert d.reason is Reason.NO_RECIPE and d.chosen is None
    assert "models with recipes: org/Catalogued-8B, org/Mine-7B" in d.message
    assert "sizeHint" in d.message


def test_no_recipe_with_builtin_catalog_lists_its_models() -> None:
    d = select(endpoint("org/mystery"), NS, [], None, cluster(MI300X=[8]))
    assert d.reason is Reason.NO_RECIPE
    assert "Qwen/Qwen3-32B" in d.message and "meta-llama/Llama-3.1-8B-Instruct" in d.message


@pytest.mark.parametrize(
    ("model_id", "params", "active"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", 7e9, None),
        ("meta-llama/Llama-3.1-70B-Instruct", 70e9, None),
        ("Qwen/Qwen3-30B-A3B", 30e9, 3e9),
        ("mistralai/Mixtral-8x7B-v0.1", 56e9, None),
        ("Qwen/Qwen2.5-0.5B", 0.5e9, None),
        ("openai/gpt-oss-120b", 120e9, None),
        ("facebook/opt-125m", 125e6, None),
    ],
)
def test_model_size_from_id(model_id: str, params: float, active: float | None) -> None:
    size = model_size(model_id, None)
    assert size is not None
    assert size.params == pytest.approx(params)
    assert size.active_params == (pytest.approx(active) if active else None)


def test_model_size_unknown_and_hints() -> None:
    assert model_size("deepseek-ai/DeepSeek-V3", None) is None
    assert parse_size("1.5B") == 1.5e9 and parse_size("70") == 70e9 and parse_size("7e9") == 7e9
    assert parse_size("huge") is None
    hinted = model_size("org/whatever", "13b")
    assert hinted is not None and hinted.params == 13e9 and hinted.source == "sizeHint"


# --- status shape and indexes ------------------------------------------------------------


def test_to_status_is_json_and_feeds_back_as_previous() -> None:
    taint = {"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}
    inv = build_inventory([gpu_node("n1", "MI300X", taints=[taint])], [])
    d = run(endpoint(), inv, [recipe("r", counts=(1, 2))])
    status = json.loads(json.dumps(d.to_status()))
    assert {
        k: status[k]
        for k in (
            "recipeName",
            "recipeNamespace",
            "source",
            "hardware",
            "precision",
            "backend",
            "gpuCount",
            "estimated",
            "reason",
        )
    } == {
        "recipeName": "r",
        "recipeNamespace": NS,
        "source": "namespace",
        "hardware": "MI300X",
        "precision": "bfloat16",
        "backend": "vllm",
        "gpuCount": 1,
        "estimated": False,
        "reason": "Selected",
    }
    assert status["score"] == 1000.0
    # Only fields of the API's RecipeSelection: the builders' inputs (args, resources,
    # tolerations) come from the decision itself, not from the status record.
    fields = {f.alias or n for n, f in RecipeSelection.model_fields.items()}
    assert set(status) <= fields, set(status) - fields
    assert d.args and d.resources
    assert d.tolerations == ({"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert len(status["inputsHash"]) == 16
    assert status["configurationIndex"] == 0
    assert status["candidates"][0] == {
        "recipe": "r",
        "source": "namespace",
        "hardware": "MI300X",
        "precision": "bfloat16",
        "backend": "vllm",
        "gpuCount": 1,
        "verdict": "Selected",
        "reason": "Selected",
        "message": d.message,
        "score": 1000.0,
    }
    again = run(endpoint(), inv, [recipe("r", counts=(1, 2))], previous=status)
    assert again.reason is Reason.STICKY


def test_status_omits_chosen_fields_without_a_choice_and_caps_candidates() -> None:
    many = [recipe(f"r{i:02d}", hardware="MI355X") for i in range(70)]
    d = run(endpoint(), cluster(MI300X=[8]), many)
    status = d.to_status()
    assert "recipeName" not in status and status["estimated"] is False
    # As many as the API admits (RecipeSelection.candidates max_length: 64).
    assert len(status["candidates"]) == 64 and status["candidatesOmitted"] == 6
    RecipeSelection.model_validate(status)


def test_prebuilt_index_and_raw_list_agree() -> None:
    recipes = [
        recipe(f"r{i}", model=f"org/M{i % 3}-7B", hardware=h, counts=(1, 2))
        for i, h in enumerate(["MI300X", "MI325X", "MI250X"] * 3)
    ]
    inv = cluster(MI300X=[8], MI325X=[2], MI250X=[8])
    index = RecipeIndex.build(recipes, "namespace", NS)
    for m in range(3):
        spec = endpoint(f"org/M{m}-7B")
        assert run(spec, inv, recipes) == select(spec, NS, index, [], inv)
    assert len(index) == 9 and index.model_ids() == ["org/M0-7B", "org/M1-7B", "org/M2-7B"]


def test_decision_carries_what_the_deployment_builder_needs() -> None:
    cfg = config(1) | {"env": [{"name": "HIP_FORCE_DEV_KERNARG", "value": "1"}]}
    r = recipe("r", hardware="MI250X", configurations=[cfg])
    r["spec"]["image"] = "rocm/vllm:v0.9"
    d = run(endpoint(), cluster(MI250X=[8]), [r])
    assert d.env == {"HIP_FORCE_DEV_KERNARG": "1"}
    assert d.image == "rocm/vllm:v0.9"
    assert d.device_ids == ("7408", "740c")  # MI250X and MI250 share nodes
    bad = config(1) | {"env": [{"value": "no name"}]}
    d = run(endpoint(), cluster(MI300X=[8]), [recipe("bad", configurations=[bad])])
    assert verdicts(d)[("bad", 1)][1] is Reason.INVALID_RECIPE


def test_long_messages_are_clipped_in_status() -> None:
    many = [recipe(f"r{i}", model=f"org/{'x' * 60}-{i}") for i in range(40)]
    d = run(endpoint("org/mystery"), cluster(MI300X=[8]), many)
    assert d.reason is Reason.NO_RECIPE and len(d.message) > 1024
    status = d.to_status()
    assert len(status["message"]) == 1024 and status["message"].endswith("...")


# --- precedence before score ------------------------------------------------------


def test_namespace_recipe_wins_over_a_faster_catalog_recipe() -> None:
    mine = [recipe("mine", hardware="MI300X", tps=1000)]
    catalog = [recipe("fast", hardware="MI325X", tps=9000, namespace=None)]
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), mine, catalog)
    assert d.chosen is not None and d.chosen.config.name == "mine"
    assert verdicts(d)[("fast", 1)] == (Verdict.FEASIBLE, Reason.OUTRANKED)
    assert message_of(d, "fast", 1) == (
        "outranked by precedence: namespace recipe before the catalog; "
        "~9000 tokens/s per GPU against ~1000 tokens/s per GPU of aim/mine"
    )
    assert d.chosen.message.endswith(
        "; preferred over better-scoring builtin/fast (1 GPU: ~9000 tokens/s per GPU): "
        "namespace recipe before the catalog"
    )
    assert d.message == d.chosen.message


def test_a_slower_catalog_recipe_just_ranks_below() -> None:
    mine = [recipe("mine", hardware="MI300X", tps=1000)]
    catalog = [recipe("slow", hardware="MI325X", tps=500, namespace=None)]
    d = run(endpoint(), cluster(MI300X=[8], MI325X=[8]), mine, catalog)
    assert verdicts(d)[("slow", 1)] == (Verdict.FEASIBLE, Reason.OUTSCORED)
    assert message_of(d, "slow", 1).startswith("ranks below aim/mine for throughput")
    assert d.chosen is not None and "preferred over" not in d.chosen.message


def test_untainted_pool_wins_and_tainted_pool_serves_when_nothing_else_can() -> None:
    taint = [{"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}]
    recipes = [recipe("r300", hardware="MI300X", tps=1000),
               recipe("r325", hardware="MI325X", tps=9000)]
    nodes = [gpu_node("a", "MI300X"), gpu_node("b", "MI325X", taints=taint)]
    d = select(endpoint(), NS, recipes, [], build_inventory(nodes, []))
    assert d.chosen is not None and d.chosen.config.name == "r300"
    assert verdicts(d)[("r325", 1)] == (Verdict.FEASIBLE, Reason.OUTRANKED)
    assert message_of(d, "r325", 1).startswith(
        "outranked by precedence: untainted GPU pools before tainted ones "
        "(MI325X nodes carry amd.com/gpu:NoSchedule)")
    assert "preferred over better-scoring aim/r325" in d.chosen.message
    # The untainted pool is full: the tainted one is used, with its toleration.
    full = pod("p", "a", gpus=8)
    d = select(endpoint(), NS, recipes, [], build_inventory(nodes, [full]))
    assert d.chosen is not None and d.chosen.config.name == "r325"
    assert d.tolerations and d.tolerations[0]["key"] == "amd.com/gpu"
