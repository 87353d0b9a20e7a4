"""BoundPodCount agrees with counting the cached pods, after any sequence of Pod events."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.builders import LABEL_ENDPOINT, LABEL_MANAGED_BY
from aim_controller.builders.meta import ANNOTATION_CONFIG_CHECKSUM, MANAGED_BY
from aim_controller.reconcilers.bound_count import BoundPodCount
from aim_controller.reconcilers.endpoint_observe import bound_pods, index_pod_by_endpoint

ENDPOINTS = ("a", "b")
TEMPLATES = ("t1", "t2", None)


def pod(name: str, endpoint: str | None, template: str | None, node: str | None,
        phase: str, ours: bool = True) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY if ours else "someone"}
    if endpoint:
        labels[LABEL_ENDPOINT] = endpoint
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": labels}
    if template is not None:
        meta["annotations"] = {ANNOTATION_CONFIG_CHECKSUM: template}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase}}


pods = st.builds(
    pod, name=st.sampled_from(["p0", "p1", "p2", "p3"]),
    endpoint=st.sampled_from([*ENDPOINTS, None]), template=st.sampled_from(TEMPLATES),
    node=st.sampled_from(["n1", "n2", None]),
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
    ours=st.booleans())
events = st.lists(st.tuples(st.sampled_from(["set", "delete", "delete-final"]), pods),
                  max_size=40)


@settings(max_examples=300)
@given(events)
def test_counts_equal_a_count_of_the_cached_pods(seq: list[tuple[str, dict[str, Any]]]) -> None:
    counter = BoundPodCount(index_pod_by_endpoint)
    h = counter.handler()
    store: dict[str, dict[str, Any]] = {}
    for op, p in seq:
        name = p["metadata"]["name"]
        if op == "set":
            old = store.get(name)
            store[name] = p
            h.on_add(p) if old is None else h.on_update(old, p)
        elif name in store:
            cached = store.pop(name)
            # A DELETED event may carry a final state other than the cached one.
            h.on_delete(p if op == "delete-final" else cached)
        for ep in ENDPOINTS:
            mine = [q for q in store.values() if index_pod_by_endpoint(q) == [f"ns/{ep}"]]
            for t in TEMPLATES:
                assert counter.count(f"ns/{ep}", t) == bound_pods(mine, t), (ep, t)


def test_a_pod_that_terminates_stops_counting() -> None:
    counter = BoundPodCount(index_pod_by_endpoint)
    h = counter.handler()
    running = pod("p", "a", "t1", "n1", "Running")
    h.on_add(running)
    assert (counter.count("ns/a", "t1"), counter.count("ns/a", None)) == (1, 1)
    assert counter.count("ns/a", "t2") == 0
    done = pod("p", "a", "t1", "n1", "Succeeded")
    h.on_update(running, done)
    assert counter.count("ns/a", None) == 0
    h.on_delete(done)
    assert counter.count("ns/a", None) == 0
