"""GpuView on real (unstarted) Node and Pod informers fed as their reflectors would
feed them: the inventory is rebuilt from the GPU-holding objects only, and always
equals a full rebuild over the same caches; only fingerprint changes bump its version."""

from __future__ import annotations

import copy
import itertools
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from recipes_fixtures import gpu_node, node, pod

from aim_controller.machinery.informer import Informer
from aim_controller.machinery.resource import NODES, PODS, ObjectList, WatchEvent
from aim_controller.recipes.inventory import build_inventory, pod_device_requests
from aim_controller.reconcilers.gpu_view import GpuView

_rv = itertools.count(100)


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a fresh resourceVersion, as the API server returns each write."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = str(next(_rv))
    return obj


def informer(resource: Any) -> Informer:
    return Informer(cast(Any, None), resource, transform=None)


async def listed(inf: Informer, *objs: dict[str, Any]) -> None:
    await inf.reflector._apply_list(ObjectList([served(o) for o in objs], "99"))


def event(inf: Informer, type_: str, obj: dict[str, Any]) -> None:
    inf.reflector._handle(WatchEvent(type_, served(obj)))


def held_pods(view: GpuView) -> set[str]:
    return set(view._pod_use)


def full_rebuild(nodes: Informer, pods: Informer) -> Any:
    return build_inventory(nodes.store.list(), pods.store.list())


async def view_over(*pods_listed: dict[str, Any]) -> tuple[GpuView, Informer, Informer]:
    nodes, pods = informer(NODES), informer(PODS)
    view = GpuView(nodes, pods)
    await listed(nodes, gpu_node("g0", "MI300X"), gpu_node("g1", "MI300X"),
                 node("cpu0", gpus=None))
    await listed(pods, *pods_listed)
    return view, nodes, pods


async def test_cpu_only_and_unbound_pods_never_enter_and_never_bump_the_version() -> None:
    view, nodes, pods = await view_over(pod("gpu", "g0", 2), pod("cpu", "cpu0"),
                                        pod("pending", None, 1))
    assert held_pods(view) == {"default/gpu"}
    version = view.version
    event(pods, "MODIFIED", pod("cpu", "cpu0", phase="Succeeded"))
    event(pods, "ADDED", pod("cpu2", "g1"))  # on a GPU node, but holds no GPU
    event(pods, "DELETED", pod("cpu", "cpu0"))
    assert held_pods(view) == {"default/gpu"} and view.version == version
    inv = view.inventory()
    assert {n.name: dict(n.used) for n in inv.nodes}["g0"] == {"amd.com/gpu": 2}
    assert inv == full_rebuild(nodes, pods)


async def test_a_pod_that_stops_holding_gpus_leaves_and_its_gpus_are_free_again() -> None:
    view, nodes, pods = await view_over(pod("a", "g0", 2), pod("b", "g1", 1))
    version = view.version
    event(pods, "MODIFIED", pod("a", "g0", 2, phase="Succeeded"))  # terminated
    assert held_pods(view) == {"default/b"} and view.version == version + 1
    event(pods, "DELETED", pod("b", "g1", 1))
    assert held_pods(view) == set() and view.version == version + 2
    inv = view.inventory()
    assert all(not n.used for n in inv.nodes)
    assert inv == full_rebuild(nodes, pods)
    # A pod deleted in a final state that holds nothing still leaves (and counts).
    event(pods, "ADDED", pod("c", "g1", 1))
    event(pods, "DELETED", pod("c", "g1", 1, phase="Failed"))
    assert held_pods(view) == set() and view.version == version + 4


async def test_a_pod_bound_later_enters_and_a_node_losing_its_gpus_leaves() -> None:
    view, nodes, pods = await view_over(pod("p", None, 1))
    assert held_pods(view) == set()
    event(pods, "MODIFIED", pod("p", "g1", 1))  # scheduled
    assert held_pods(view) == {"default/p"}
    event(nodes, "MODIFIED", node("g0", gpus=None))  # relabelled, no GPU left
    assert set(view._gpu_nodes) == {"g1"}
    assert [n.name for n in view.inventory().nodes] == ["g1"]
    assert view.inventory() == full_rebuild(nodes, pods)


NODE_NAMES = ("g0", "g1", "cpu0")
POD_NAMES = tuple(f"p{i}" for i in range(5))
pod_states = st.builds(
    lambda name, node_name, gpus, phase: pod(name, node_name, gpus, phase=phase),
    st.sampled_from(POD_NAMES), st.sampled_from(("g0", "g1", "cpu0", None)),
    st.sampled_from((None, 0, 1, 3)), st.sampled_from(("Pending", "Running", "Succeeded")))
node_states = st.builds(
    lambda name, gpus, ready: (gpu_node(name, "MI300X", gpus, ready=ready) if gpus
                               else node(name, gpus=None, ready=ready)),
    st.sampled_from(NODE_NAMES), st.sampled_from((0, 4, 8)), st.booleans())
steps = st.lists(st.tuples(st.sampled_from(("pod", "node")), st.booleans(), pod_states,
                           node_states, st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None)
@given(initial=st.lists(pod_states, max_size=5), script=steps)
async def test_inventory_equals_a_full_rebuild_after_any_events(
    initial: list[dict[str, Any]], script: list[tuple[str, bool, Any, Any, bool]],
) -> None:
    view, nodes, pods = await view_over(*{p["metadata"]["name"]: p for p in initial}.values())
    for kind, delete, p, n, look in script:
        inf, obj = (pods, p) if kind == "pod" else (nodes, n)
        key = (f"default/{obj['metadata']['name']}" if kind == "pod"
               else obj["metadata"]["name"])
        if delete:
            if key in inf.store:
                event(inf, "DELETED", obj)
        else:
            event(inf, "MODIFIED" if key in inf.store else "ADDED", obj)
        if look:  # builds between events reuse the cache's parses
            assert view.inventory() == full_rebuild(nodes, pods)
    assert view.inventory() == full_rebuild(nodes, pods)
    assert held_pods(view) == {
        k for k, p in zip(pods.store.list_keys(), map(pods.store.get, pods.store.list_keys()),
                          strict=True)
        if p is not None and pod_device_requests(p) is not None}
