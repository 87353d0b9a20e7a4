"""The capacity verdict on mixed-GPU nodes: what fits there and what the verdict says."""

from __future__ import annotations

from recipes_fixtures import gpu_node, mixed_labels, node, pod

from aim_controller.recipes.capacity import capacity_verdict
from aim_controller.recipes.inventory import build_inventory
from aim_controller.recipes.reasons import Reason

MIXED = mixed_labels({"MI300X": 4, "MI325X": 4})


def test_one_gpu_replicas_fit_on_a_mixed_node_and_the_verdict_says_the_type_is_not_sure() -> None:
    inv = build_inventory([node("mix", MIXED)], [pod("other", "mix", 5)])
    v = capacity_verdict("MI325X", 1, 3, inv)
    assert (v.fitting_replicas, v.rejection) == (3, None)
    assert v.note.startswith("GPU type not guaranteed on mixed GPU node mix: ")
    assert "amd.com/gpu does not say which" in v.note
    # The node's 3 free GPUs bound each type, though each has 4 there.
    v = capacity_verdict("MI325X", 1, 4, inv)
    assert v.rejection == (
        Reason.INSUFFICIENT_FREE_GPUS,
        "needs 4x1=4 free MI325X GPUs (1 per node); "
        "free per node: mixed, 1-GPU replicas only: mix=3; 3 replicas fit",
    )


def test_multi_gpu_replicas_never_go_on_a_mixed_node_and_the_verdict_says_why() -> None:
    inv = build_inventory([node("mix", MIXED)], [])
    v = capacity_verdict("MI325X", 4, 1, inv)
    assert v.rejection is not None and v.pool is not None
    reason, msg = v.rejection
    assert reason is Reason.DOES_NOT_FIT_ON_ONE_NODE
    assert msg == (
        "a replica needs 4 MI325X GPUs on one node; no node has only MI325X GPUs; "
        "mixed GPU node mix takes 1-GPU replicas only: amd.com/gpu does not say which GPUs "
        "a pod gets and the AMD device plugin has no per-model resource names, so a 4-GPU "
        "replica goes only on a node whose GPUs are all MI325X"
    )
    assert v.note == ""


def test_multi_gpu_replicas_use_the_whole_nodes_beside_mixed_ones() -> None:
    nodes = [gpu_node("a", "MI300X", 4), gpu_node("b", "MI300X", 4),
             node("mix", MIXED), node("mix2", MIXED)]
    inv = build_inventory(nodes, [pod("p", "a", 2)])
    v = capacity_verdict("MI300X", 2, 3, inv)
    assert (v.fitting_replicas, v.rejection, v.note) == (3, None, "")
    v = capacity_verdict("MI300X", 2, 4, inv)
    assert v.rejection is not None
    assert v.rejection[0] is Reason.INSUFFICIENT_FREE_GPUS
    assert v.rejection[1].startswith(
        "needs 4x2=8 free MI300X GPUs (2 per node); free per node: b=4, a=2; 3 replicas fit; "
        "mixed GPU nodes mix, mix2 take 1-GPU replicas only:")
    v = capacity_verdict("MI300X", 8, 1, inv)
    assert v.rejection is not None and v.rejection[1].startswith(
        "a replica needs 8 MI300X GPUs on one node; the largest MI300X node has 4 allocatable; "
        "mixed GPU nodes mix, mix2 take 1-GPU replicas only")
    # 1-GPU replicas count both kinds of node: 6 free on the whole nodes, 4 + 4 on the mixed.
    v = capacity_verdict("MI300X", 1, 14, inv)
    assert (v.fitting_replicas, v.rejection) == (14, None)
    assert v.note.startswith("GPU type not guaranteed on mixed GPU nodes mix, mix2: ")


def test_no_note_without_free_gpus_on_mixed_nodes() -> None:
    inv = build_inventory([gpu_node("a", "MI300X", 8), node("mix", MIXED)],
                          [pod("p", "mix", 8)])
    v = capacity_verdict("MI300X", 1, 8, inv)
    assert (v.fitting_replicas, v.rejection, v.note) == (8, None, "")
    assert capacity_verdict("MI325X", 1, 1, inv).rejection == (
        Reason.INSUFFICIENT_FREE_GPUS,
        "needs 1x1=1 free MI325X GPUs (1 per node); "
        "free per node: mixed, 1-GPU replicas only: mix=0; 0 replicas fit",
    )


def test_a_count_encoded_node_of_one_type_takes_any_replica() -> None:
    inv = build_inventory([node("n", {"amd.com/gpu.device-id.74a1": "8"})], [])
    v = capacity_verdict("MI300X", 8, 1, inv)
    assert (v.fitting_replicas, v.rejection, v.note) == (1, None, "")
