"""GPU inventory: labeller label parsing, free-GPU accounting, partitions, taints."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recipes_fixtures import (
    LABELLER,
    container,
    gpu_node,
    labeller_labels,
    mixed_labels,
    node,
    pod,
)

from aim_controller.recipes import gpus
from aim_controller.recipes.inventory import (
    GpuInventory,
    InventoryCache,
    NodeGpus,
    Taint,
    build_inventory,
    identify_node,
    pod_device_requests,
)
from aim_controller.recipes.quantity import gpu_count, parse_quantity


def only(inv: GpuInventory) -> NodeGpus:
    assert len(inv.nodes) == 1
    return inv.nodes[0]


# --- identification -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "vram"),
    [
        ("MI210", 64),
        ("MI300A", 128),
        ("MI300X", 192),
        ("MI308X", 192),
        ("MI325X", 256),
        ("MI350X", 288),
        ("MI355X", 288),
    ],
)
def test_single_type_node_from_full_labeller_output(model: str, vram: int) -> None:
    n = only(build_inventory([gpu_node("n1", model)], []))
    assert n.model == model
    assert n.serves == {model}
    assert n.vram_gib == vram
    assert n.identified_by == "amd.com/gpu.device-id"
    assert n.usable and n.allocatable == 8 and n.free == 8
    assert n.reason == ""


def test_device_id_wins_over_a_contradicting_product_name() -> None:
    labels = labeller_labels("MI300X") | {"amd.com/gpu.product-name": "AMD_Instinct_MI325_OAM"}
    assert identify_node(labels).model == "MI300X"


def test_mi325x_product_name_without_device_id() -> None:
    ident = identify_node({"amd.com/gpu.product-name": "AMD_Instinct_MI325_OAM"})
    assert ident.model == "MI325X"
    assert ident.identified_by == "amd.com/gpu.product-name"


def test_missing_product_name_is_fine_with_a_device_id() -> None:
    labels = {k: v for k, v in labeller_labels("MI300X").items() if "product-name" not in k}
    assert identify_node(labels).model == "MI300X"


@pytest.mark.parametrize(
    ("device_id", "model"),
    [
        ("74b5", "MI300X"),
        ("74b6", "MI308X"),
        ("74b9", "MI325X"),
        ("75b0", "MI350X"),
        ("75b3", "MI355X"),
        ("0x74A1", "MI300X"),
    ],
)
def test_virtual_function_and_spelled_device_ids(device_id: str, model: str) -> None:
    ident = identify_node({"amd.com/gpu.device-id": device_id})
    assert ident.model == model


def test_beta_only_labels_from_older_labellers() -> None:
    labels = labeller_labels("MI300X", plain=False)
    ident = identify_node(labels)
    assert ident.model == "MI300X"
    assert ident.identified_by == "beta.amd.com/gpu.device-id"
    assert ident.models == (("MI300X", 8),)


def test_beta_count_encoded_form_alone() -> None:
    ident = identify_node({"beta.amd.com/gpu.product-name.AMD_Instinct_MI355X_OAM": "8"})
    assert ident.model == "MI355X"


# --- mixed-GPU nodes ----------------------------------------------------------------

# What AMD's labeller (ROCm/k8s-device-plugin cmd/k8s-node-labeller, createLabels)
# writes on a node with 4 MI300X and 4 MI325X: count-encoded labels where the GPUs
# differ (device-id, product-name, vram), single values where they agree (family AI,
# 304 CUs).
AMD_MIXED_MI300X_MI325X = {
    "amd.com/gpu.cu-count": "304",
    "amd.com/gpu.device-id.74a1": "4",
    "amd.com/gpu.device-id.74a5": "4",
    "amd.com/gpu.driver-version": "6.8.5",
    "amd.com/gpu.family": "AI",
    "amd.com/gpu.product-name.AMD_Instinct_MI300X_OAM": "4",
    "amd.com/gpu.product-name.AMD_Instinct_MI325_OAM": "4",
    "amd.com/gpu.vram.192G": "4",
    "amd.com/gpu.vram.256G": "4",
    "beta.amd.com/gpu.cu-count": "304",
    "beta.amd.com/gpu.cu-count.304": "8",
    "beta.amd.com/gpu.device-id.74a1": "4",
    "beta.amd.com/gpu.device-id.74a5": "4",
    "beta.amd.com/gpu.family": "AI",
    "beta.amd.com/gpu.family.AI": "8",
    "beta.amd.com/gpu.product-name.AMD_Instinct_MI300X_OAM": "4",
    "beta.amd.com/gpu.product-name.AMD_Instinct_MI325_OAM": "4",
    "beta.amd.com/gpu.vram.192G": "4",
    "beta.amd.com/gpu.vram.256G": "4",
}
# The issue's node: the count-encoded device-id form alone.
ISSUE_MIXED = {"amd.com/gpu.device-id.74a1": "4", "amd.com/gpu.device-id.74a5": "4"}


def test_fixture_writes_what_the_labeller_writes() -> None:
    assert mixed_labels({"MI300X": 4, "MI325X": 4}) == AMD_MIXED_MI300X_MI325X
    assert mixed_labels({"MI300X": 8}) == labeller_labels("MI300X", 8)


@pytest.mark.parametrize("labels", [AMD_MIXED_MI300X_MI325X, ISSUE_MIXED],
                         ids=["labeller", "device-id-only"])
def test_mixed_node_holds_each_type_with_its_count(labels: dict[str, str]) -> None:
    inv = build_inventory([node("mix", labels)], [])
    n = only(inv)
    assert n.mixed and n.usable and n.model is None and n.vram_gib is None
    assert n.identified_by == "amd.com/gpu.device-id"
    assert n.models == (("MI300X", 4), ("MI325X", 4))
    assert n.serves == n.present == {"MI300X", "MI325X"}
    assert n.gpus_by_hardware == (("MI300X", 4), ("MI325X", 4))
    assert "mixed GPU models (MI300Xx4, MI325Xx4)" in n.reason
    assert "GPU type not guaranteed" in n.reason
    for hw in ("MI300X", "MI325X"):
        pool = inv.pool(hw)
        assert pool is not None
        assert pool.free_by_node == () and pool.mixed_free_by_node == (("mix", 4),)
        assert (pool.total_free, pool.total_allocatable, pool.node_count) == (4, 4, 1)
        # Only 1-GPU replicas go there: a tensor-parallel pod could get both models.
        assert pool.replicas_that_fit(1) == 4
        assert [pool.replicas_that_fit(g) for g in (2, 4, 8)] == [0, 0, 0]
        assert (pool.largest_node(1), pool.largest_node(2)) == (4, 0)
        assert pool.nodes_with_room(1) == ("mix",) and pool.nodes_with_room(2) == ()
    assert inv.unusable_with("MI325X") == ()
    assert inv.summary() == ("MI325X: 1 node (1 mixed), 4/4 GPUs free; "
                             "MI300X: 1 node (1 mixed), 4/4 GPUs free")


@pytest.mark.parametrize("labels", [
    {"amd.com/gpu.device-id.74a1": "8"},
    {"beta.amd.com/gpu.device-id.74a1": "8"},
    mixed_labels({"MI300X": 8}),
], ids=["plain-count-only", "beta-count-only", "labeller"])
def test_count_encoded_labels_of_one_type_are_an_ordinary_node(labels: dict[str, str]) -> None:
    inv = build_inventory([node("n", labels)], [pod("p", "n", 2)])
    n = only(inv)
    assert (n.model, n.mixed, n.usable, n.gpus_by_hardware) == ("MI300X", False, True, ())
    pool = inv.pool("MI300X")
    assert pool is not None and pool.free_by_node == (("n", 6),)
    assert pool.mixed_free_by_node == () and pool.replicas_that_fit(6) == 1


def test_mixed_node_free_gpus_are_shared_by_its_types() -> None:
    # 5 of 8 GPUs are taken, of whichever models: 3 are free in all, so neither type may
    # be given more than 3, though each has 4 on the node.
    labels = mixed_labels({"MI300X": 4, "MI325X": 4})
    inv = build_inventory([node("mix", labels)], [pod("a", "mix", 1), pod("b", "mix", 4)])
    n = only(inv)
    assert (n.allocatable, n.free) == (8, 3)
    assert n.free_for("MI300X", 1) == n.free_for("MI325X", 1) == 3
    assert n.free_for("MI300X", 2) == 0 and n.free_for("MI210", 1) == 0
    for hw in ("MI300X", "MI325X"):
        pool = inv.pool(hw)
        assert pool is not None and pool.replicas_that_fit(1) == 3 and pool.total_free == 3
    # With 1 free GPU on the node, the smaller type's count is not the bound any more.
    inv = build_inventory([node("mix", mixed_labels({"MI300X": 6, "MI325X": 2}))],
                          [pod("a", "mix", 7)])
    assert [inv.pools[h].replicas_that_fit(1) for h in ("MI300X", "MI325X")] == [1, 1]
    inv = build_inventory([node("mix", mixed_labels({"MI300X": 6, "MI325X": 2}))], [])
    assert [inv.pools[h].replicas_that_fit(1) for h in ("MI300X", "MI325X")] == [6, 2]


def test_mixed_node_counts_beside_whole_nodes() -> None:
    nodes = [gpu_node("whole", "MI300X", 8),
             node("mix", mixed_labels({"MI300X": 4, "MI325X": 4}))]
    inv = build_inventory(nodes, [pod("p", "whole", 6)])
    pool = inv.pool("MI300X")
    assert pool is not None
    assert pool.free_by_node == (("whole", 2),) and pool.mixed_free_by_node == (("mix", 4),)
    assert pool.max_allocatable == 8 and pool.largest_node(1) == 8
    assert pool.replicas_that_fit(1) == 6 and pool.replicas_that_fit(2) == 1
    assert pool.nodes_with_room(1) == ("mix", "whole") and pool.nodes_with_room(2) == ("whole",)
    assert pool.free_summary() == "whole=2; mixed, 1-GPU replicas only: mix=4"
    assert pool.free_summary(gpus_per_replica=2) == "whole=2"
    assert (pool.total_free, pool.total_allocatable) == (6, 12)
    # An endpoint's own pods on the mixed node are given back like anywhere else.
    back = build_inventory(nodes, [pod("p", "mix", 3)]).give_back([("mix", {"amd.com/gpu": 3})])
    assert back.pools == inv.give_back([("whole", {"amd.com/gpu": 6})]).pools


def test_mixed_node_of_interchangeable_models_is_not_mixed() -> None:
    # MI250X (7408) and MI250-class (740c) GPUs run the same recipes.
    n = only(build_inventory(
        [node("n", {"amd.com/gpu.device-id.7408": "4", "amd.com/gpu.device-id.740c": "4"})], []))
    assert not n.mixed and n.usable and n.serves == {"MI250", "MI250X"}


def test_mixed_labels_without_counts_are_not_used() -> None:
    inv = build_inventory(
        [node("mix", {"amd.com/gpu.device-id.74a1": "four", "amd.com/gpu.device-id.74a5": "4"})],
        [])
    n = only(inv)
    assert not n.usable and not n.mixed and "without per-model counts" in n.reason
    assert inv.pools == {} and inv.unusable_with("MI325X") == (n,)


def test_cordoned_mixed_node_is_listed_under_each_type() -> None:
    inv = build_inventory([node("mix", ISSUE_MIXED, unschedulable=True)], [])
    n = only(inv)
    assert not n.usable and n.reason.startswith("cordoned")
    assert inv.pools == {}
    assert inv.unusable_with("MI300X") == inv.unusable_with("MI325X") == (n,)


# Labels a node may carry: a single model in the labeller's forms, count-encoded only,
# several models (with or without counts), partitioned GPUs, nothing.
_LABELS = st.one_of(
    st.builds(labeller_labels, st.sampled_from(sorted(LABELLER)), st.integers(1, 8)),
    st.builds(lambda m, n: {f"amd.com/gpu.device-id.{LABELLER[m][0]}": str(n)},
              st.sampled_from(sorted(LABELLER)), st.integers(0, 16)),
    st.builds(mixed_labels, st.dictionaries(st.sampled_from(sorted(LABELLER)),
                                            st.integers(0, 16), min_size=2, max_size=3)),
    st.builds(lambda labels, p: {**labels, "amd.com/compute-memory-partition": p},
              st.builds(mixed_labels, st.dictionaries(st.sampled_from(sorted(LABELLER)),
                                                      st.integers(1, 8), min_size=1)),
              st.sampled_from(["spx_nps1", "cpx_nps4"])),
    st.just({}),
)


@given(labels=_LABELS, allocatable=st.integers(0, 16),
       pods=st.lists(st.integers(0, 9), max_size=6), ready=st.booleans())
@settings(max_examples=400, deadline=None)
def test_replicas_never_take_more_gpus_than_a_node_has(
    labels: dict[str, str], allocatable: int, pods: list[int], ready: bool
) -> None:
    """On any node, for any hardware and replica size, the GPUs the inventory lets
    replicas take there are at most the node's free GPUs (so at most its allocatable),
    a mixed node never takes a multi-GPU replica, and each pool's count is the sum."""
    inv = build_inventory([node("n", labels, gpus=allocatable, ready=ready)],
                          [pod(f"p{i}", "n", g) for i, g in enumerate(pods)])
    if not inv.nodes:  # no GPU labels, no GPUs: not a GPU node
        assert not allocatable and inv.pools == {}
        return
    n = only(inv)
    assert 0 <= n.free <= n.allocatable <= allocatable
    assert n.free == max(0, n.allocatable - sum(pods)) or not n.allocatable
    for hw in gpus.MODELS:
        pool = inv.pool(hw)
        for g in range(1, 9):
            taken = g * (n.free_for(hw, g) // g)
            assert taken <= n.free <= n.allocatable
            if n.mixed and g > 1:
                assert taken == 0
            if n.mixed:
                assert n.free_for(hw, 1) <= dict(n.gpus_by_hardware).get(hw, 0)
            fit = pool.replicas_that_fit(g) if pool is not None else 0
            assert fit == n.free_for(hw, g) // g
            assert fit * g <= n.free
        if pool is not None:
            assert pool.total_free <= n.free and pool.total_allocatable <= n.allocatable


def test_mi250_class_device_without_cu_count_serves_both_names() -> None:
    labels = labeller_labels("MI250X", cu_count=False)
    n = only(build_inventory([node("a", labels)], []))
    assert n.model is None  # not guessed
    assert n.serves == {"MI250", "MI250X"}
    assert n.usable and n.vram_gib == 64
    assert "740c" in n.reason


@pytest.mark.parametrize(("cus", "model"), [("110", "MI250X"), ("104", "MI250")])
def test_cu_count_settles_device_740c(cus: str, model: str) -> None:
    ident = identify_node({"amd.com/gpu.device-id": "740c", "amd.com/gpu.cu-count": cus})
    assert ident.model == model
    assert ident.serves == {"MI250", "MI250X"}


def test_device_7408_is_mi250x() -> None:
    assert identify_node({"amd.com/gpu.device-id": "7408"}).model == "MI250X"


def test_family_alone_is_ambiguous() -> None:
    inv = build_inventory([node("f", {"amd.com/gpu.family": "AI"})], [])
    n = only(inv)
    assert n.model is None and not n.usable
    assert "family" in n.reason and "cannot identify" in n.reason
    assert inv.unidentified == (n,)


def test_family_would_be_used_if_it_named_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpus, "FAMILY_MODELS", {"AI": frozenset({"MI300X"})})
    ident = identify_node({"amd.com/gpu.family": "AI"})
    assert ident.model == "MI300X"
    assert ident.identified_by == "amd.com/gpu.family"


def test_unknown_device_id_falls_back_to_product_name() -> None:
    labels = {
        "amd.com/gpu.device-id": "7551",
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
    }
    ident = identify_node(labels)
    assert ident.model == "MI300X"
    assert ident.identified_by == "amd.com/gpu.product-name"


def test_unknown_device_id_alone_is_unidentified_with_a_reason() -> None:
    n = only(build_inventory([node("x", {"amd.com/gpu.device-id": "7551"})], []))
    assert n.model is None and not n.usable
    assert "unknown AMD GPU device id '7551'" in n.reason


def test_ambiguous_product_name_is_not_guessed() -> None:
    ident = identify_node({"amd.com/gpu.product-name": "AMD_Instinct_MI300"})
    assert ident.model is None and not ident.serves
    assert "MI300A/MI300X" in ident.reason


def test_gpu_node_without_labels_is_listed_unidentified() -> None:
    n = only(build_inventory([node("bare", {})], []))
    assert n.model is None and not n.usable
    assert "labeller" in n.reason


def test_nodes_without_gpus_are_ignored() -> None:
    assert build_inventory([node("cpu", {"kubernetes.io/os": "linux"}, gpus=None)], []).nodes == ()


@pytest.mark.parametrize(
    ("kw", "why"), [({"ready": False}, "not Ready"), ({"unschedulable": True}, "cordoned")]
)
def test_not_ready_and_cordoned_nodes_are_excluded(kw: dict[str, bool], why: str) -> None:
    inv = build_inventory([gpu_node("n1", "MI300X", **kw)], [])
    n = only(inv)
    assert not n.usable and why in n.reason
    assert inv.pool("MI300X") is None
    assert inv.unusable_with("MI300X") == (n,)


# --- free GPUs ----------------------------------------------------------------


def test_free_gpus_exclude_terminated_and_unbound_pods() -> None:
    pods = [
        pod("run", "n1", 2),
        pod("pending-bound", "n1", 1, phase="Pending"),
        pod("done", "n1", 4, phase="Succeeded"),
        pod("failed", "n1", 4, phase="Failed"),
        pod("unbound", None, 4, phase="Pending"),
        pod("elsewhere", "n2", 4),
        pod("no-gpu", "n1", None),
    ]
    inv = build_inventory([gpu_node("n1", "MI300X"), gpu_node("n2", "MI300X")], pods)
    by_name = {n.name: n for n in inv.nodes}
    assert by_name["n1"].free == 5
    assert by_name["n2"].free == 4
    pool = inv.pool("MI300X")
    assert pool is not None
    assert pool.total_free == 9 and pool.total_allocatable == 16


def test_init_container_peak_counts_like_the_scheduler() -> None:
    p = pod("p", "n1", containers=[container(gpus=1)], init_containers=[container("init", 4)])
    assert pod_device_requests(p) == ("n1", {"amd.com/gpu": 4})
    p = pod("p", "n1", containers=[container(gpus=3)], init_containers=[container("init", 2)])
    assert pod_device_requests(p) == ("n1", {"amd.com/gpu": 3})


def test_sidecar_init_containers_add_to_the_running_total() -> None:
    sidecar = container("side", 1, restart_policy="Always")
    later_init = container("late", 2)
    p = pod("p", "n1", containers=[container(gpus=2)], init_containers=[sidecar, later_init])
    # Running: 2 + 1 sidecar = 3; during the later init: 1 sidecar + 2 = 3.
    assert pod_device_requests(p) == ("n1", {"amd.com/gpu": 3})


def test_limits_count_when_requests_are_absent_and_requests_win_otherwise() -> None:
    p = pod("p", "n1", containers=[container(gpus=2, limits_only=True), container("b", 1)])
    assert pod_device_requests(p) == ("n1", {"amd.com/gpu": 3})
    c = container(gpus=1)
    c["resources"]["limits"]["amd.com/gpu"] = "5"  # not valid for the API, but the request rules
    assert pod_device_requests(pod("q", "n1", containers=[c])) == ("n1", {"amd.com/gpu": 1})


def test_pod_overhead_is_added() -> None:
    p = pod("p", "n1", 1, overhead={"amd.com/gpu": "1", "cpu": "250m"})
    assert pod_device_requests(p) == ("n1", {"amd.com/gpu": 2})


def test_free_never_goes_negative() -> None:
    inv = build_inventory(
        [gpu_node("n1", "MI300X", gpus=2)], [pod("a", "n1", 2), pod("b", "n1", 2)]
    )
    assert only(inv).free == 0


# --- partitions and taints ----------------------------------------------------------


def test_partition_resources_are_kept_apart_from_whole_gpus() -> None:
    labels = labeller_labels("MI300X")
    n1 = node("part", labels, gpus=0, allocatable={"amd.com/cpx_nps4": "64"})
    pods = [pod("p", "part", containers=[container(gpus=3, resource="amd.com/cpx_nps4")])]
    inv = build_inventory([n1], pods)
    n = only(inv)
    assert n.allocatable == 0 and not n.usable
    assert [(p.resource, p.profile, p.allocatable, p.free) for p in n.partitions] == [
        ("amd.com/cpx_nps4", "cpx_nps4", 64, 61)
    ]
    assert n.model == "MI300X"  # still identified, just not placeable
    assert inv.pool("MI300X") is None


def test_partitioned_gpus_under_the_single_resource_name() -> None:
    labels = labeller_labels("MI300X") | {"amd.com/compute-memory-partition": "cpx_nps4"}
    inv = build_inventory([node("p", labels, gpus=64)], [pod("x", "p", 8)])
    n = only(inv)
    assert n.allocatable == 0 and not n.usable
    assert [(p.resource, p.profile, p.allocatable, p.free) for p in n.partitions] == [
        ("amd.com/gpu", "cpx_nps4", 64, 56)
    ]
    assert "partitioned" in n.reason


def test_spx_nodes_expose_whole_gpus() -> None:
    labels = labeller_labels("MI300X") | {"amd.com/compute-memory-partition": "spx_nps1"}
    n = only(build_inventory([node("s", labels)], []))
    assert n.usable and n.allocatable == 8 and n.partitions == ()


def test_gpu_taints_are_reported_and_tolerated_others_block() -> None:
    gpu_taint = {"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}
    team_taint = {"key": "team", "value": "a", "effect": "NoSchedule"}
    soft = {"key": "spot", "value": "", "effect": "PreferNoSchedule"}
    inv = build_inventory(
        [
            gpu_node("ok", "MI300X", taints=[gpu_taint, soft]),
            gpu_node("team", "MI300X", taints=[team_taint]),
        ],
        [],
    )
    by_name = {n.name: n for n in inv.nodes}
    assert by_name["ok"].usable
    assert Taint("amd.com/gpu", "present", "NoSchedule") in by_name["ok"].taints
    assert not by_name["team"].usable and "team=a:NoSchedule" in by_name["team"].reason
    pool = inv.pool("MI300X")
    assert pool is not None
    # Value-agnostic, so another value of the same key on a new node changes nothing.
    assert pool.tolerations == (Taint("amd.com/gpu", "", "NoSchedule"),)
    assert pool.tolerations[0].toleration() == {
        "key": "amd.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }


def test_tolerated_taint_prefixes_are_configurable() -> None:
    team_taint = {"key": "team", "value": "a", "effect": "NoExecute"}
    inv = build_inventory(
        [gpu_node("t", "MI300X", taints=[team_taint])], [], tolerated_taint_prefixes=("team",)
    )
    assert only(inv).usable


# --- pools ----------------------------------------------------------------------


def test_pool_histogram_and_bin_packing() -> None:
    nodes = [gpu_node(f"n{i}", "MI300X") for i in range(3)]
    pods = [pod("a", "n0", 5), pod("b", "n1", 5), pod("c", "n2", 6)]
    pool = build_inventory(nodes, pods).pool("MI300X")
    assert pool is not None
    assert pool.free_histogram == ((3, 2), (2, 1))
    assert pool.replicas_that_fit(2) == 3  # 1 + 1 + 1, though 8 GPUs are free in total
    assert pool.replicas_that_fit(3) == 2
    assert pool.replicas_that_fit(4) == 0
    assert pool.free_summary() == "n0=3, n1=3, n2=2"
    assert pool.free_summary(limit=1) == "n0=3, ... 2 more nodes"


def test_inventory_does_not_depend_on_input_order() -> None:
    nodes = [gpu_node(f"n{i}", m) for i, m in enumerate(["MI300X", "MI325X", "MI250X"] * 4)]
    pods = [pod(f"p{i}", f"n{i % 12}", i % 3) for i in range(40)]
    reference = build_inventory(nodes, pods)
    rng = random.Random(3)
    for _ in range(5):
        shuffled_nodes = [
            n
            | {
                "metadata": {
                    **n["metadata"],
                    "labels": dict(
                        rng.sample(
                            list(n["metadata"]["labels"].items()), len(n["metadata"]["labels"])
                        )
                    ),
                }
            }
            for n in rng.sample(nodes, len(nodes))
        ]
        assert build_inventory(shuffled_nodes, rng.sample(pods, len(pods))) == reference


def test_inventory_cache_reuses_parses_and_sees_changes() -> None:
    nodes = [gpu_node("n1", "MI300X", resource_version="1")]
    pods = [pod("a", "n1", 2, resource_version="10"), pod("b", "n1", 1, resource_version="11")]
    cache = InventoryCache()
    assert cache.build(nodes, pods) == build_inventory(nodes, pods)
    # b finished (new resourceVersion), a was deleted, c arrived.
    pods2 = [
        pod("b", "n1", 1, phase="Succeeded", resource_version="12"),
        pod("c", "n1", 4, resource_version="13"),
    ]
    inv = cache.build(nodes, pods2)
    assert inv == build_inventory(nodes, pods2)
    assert only(inv).free == 4


def test_quantities() -> None:
    assert parse_quantity("64Gi") == 64 * 2**30
    assert parse_quantity("500m") * 2 == 1
    assert parse_quantity("1e3") == 1000
    assert gpu_count("2") == 2 and gpu_count(4) == 4 and gpu_count("1500m") == 2
    with pytest.raises(ValueError):
        parse_quantity("lots")


# --- an endpoint's own pods ---------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 8), st.booleans()), max_size=12))
@settings(max_examples=200, deadline=None)
def test_giving_back_pods_equals_building_without_them(
        placed: list[tuple[int, int, bool]]) -> None:
    nodes = [gpu_node(f"n{i}", "MI300X" if i < 3 else "MI325X") for i in range(4)]
    pods = [pod(f"p{k}", f"n{i}", g) for k, (i, g, _) in enumerate(placed)]
    own = [p for p, (_, _, mine) in zip(pods, placed, strict=True) if mine]
    others = [p for p, (_, _, mine) in zip(pods, placed, strict=True) if not mine]
    given_back = build_inventory(nodes, pods).give_back(
        u for u in map(pod_device_requests, own) if u is not None)
    assert given_back.pools == build_inventory(nodes, others).pools
    assert [n.free for n in given_back.nodes] == [n.free for n in
                                                   build_inventory(nodes, others).nodes]


def test_giving_back_nothing_is_the_same_snapshot() -> None:
    inv = build_inventory([gpu_node("n1", "MI300X")], [pod("a", "n1", 8)])
    assert inv.give_back([]) is inv
    assert only(inv.give_back([("n1", {"amd.com/gpu": 8})])).free == 8
    # Pods on nodes the snapshot does not have change nothing there.
    assert only(inv.give_back([("gone", {"amd.com/gpu": 8})])).free == 0


def test_pending_pods_hold_no_node_capacity_but_count_for_quota() -> None:
    pending = pod("pending", None, 4, phase="Pending")
    assert pod_device_requests(pending) is None
    assert pod_device_requests(pending, bound_only=False) == ("", {"amd.com/gpu": 4})
    done = pod("done", None, 4, phase="Succeeded")
    assert pod_device_requests(done, bound_only=False) is None
