"""Event handlers: priorities (intent before status churn) and the generation filter."""

from __future__ import annotations

import asyncio
from typing import Any

from aim_controller.machinery.handlers import AtPriority, enqueue_object_spec_first, enqueue_owner
from aim_controller.machinery.workqueue import PRIORITY_LOW, WorkQueue


def obj(name: str, generation: int, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": generation, **meta}}


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while len(q):
        key = q.get_nowait()
        q.done(key)
        out.append(key)
    return out


def test_spec_changes_and_adds_go_before_status_echoes() -> None:
    async def main() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        h = enqueue_object_spec_first(q, 0, PRIORITY_LOW)
        h.on_update(obj("echo", 1), obj("echo", 1))  # our own status write coming back
        h.on_add(obj("new", 1))
        h.on_update(obj("edited", 1), obj("edited", 2))
        assert q.priority("ns/echo") == PRIORITY_LOW
        h.on_update(obj("echo", 1), obj("echo", 2))  # then its spec changed: raised
        assert q.priority("ns/echo") == 0
        h.on_update(obj("late", 3), obj("late", 3))
        return drain(q)

    assert asyncio.run(main()) == ["ns/echo", "ns/new", "ns/edited", "ns/late"]


def test_child_events_enqueue_the_owner_at_the_given_priority() -> None:
    async def main() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        h = enqueue_owner(AtPriority(q, PRIORITY_LOW), "example.com/v1", "Parent")
        child = obj("c", 1, ownerReferences=[{"apiVersion": "example.com/v1", "kind": "Parent",
                                              "name": "p1", "controller": True}])
        h.on_update(child, child)
        q.add("ns/p2")
        assert q.priority("ns/p1") == PRIORITY_LOW
        return drain(q)

    assert asyncio.run(main()) == ["ns/p2", "ns/p1"]


def test_generation_predicate_ignores_status_echoes() -> None:
    from aim_controller.machinery.handlers import enqueue_object_on_generation_change

    async def main() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        h = enqueue_object_on_generation_change(q)
        h.on_update(obj("echo", 1), obj("echo", 1))
        h.on_update(obj("spec", 1), obj("spec", 2))
        h.on_add(obj("new", 1))
        h.on_delete(obj("gone", 4))
        return drain(q)

    assert asyncio.run(main()) == ["ns/spec", "ns/new", "ns/gone"]
