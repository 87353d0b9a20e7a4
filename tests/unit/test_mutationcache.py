"""MutationCache: this process's writes served until the informer catches up."""

from __future__ import annotations

from typing import Any

from aim_controller.machinery.handlers import EventHandler, KubeObject, key_of
from aim_controller.machinery.mutationcache import MutationCache
from aim_controller.machinery.store import Indexer


class FakeInformer:
    """A store plus handlers, fed by the test as a reflector would be."""

    def __init__(self) -> None:
        self.store = Indexer()
        self.handlers: list[EventHandler] = []

    def add_event_handler(self, handler: EventHandler) -> None:
        self.handlers.append(handler)

    def deliver(self, obj: KubeObject) -> None:
        old = self.store.add(obj)
        for h in self.handlers:
            h.on_add(obj) if old is None else h.on_update(old, obj)

    def remove(self, obj: KubeObject) -> None:
        self.store.delete(key_of(obj))
        for h in self.handlers:
            h.on_delete(obj)


def obj(rv: str, uid: str = "u1", status: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "a", "uid": uid, "resourceVersion": rv},
            "status": {"s": status}}


def cache() -> tuple[FakeInformer, MutationCache]:
    inf = FakeInformer()
    return inf, MutationCache(inf)  # type: ignore[arg-type]


def test_own_write_is_read_back_until_the_informer_catches_up() -> None:
    inf, mc = cache()
    inf.deliver(obj("10"))
    mc.mutated(obj("12", status="written"))
    assert mc.get("ns/a")["status"]["s"] == "written"  # type: ignore[index]
    inf.deliver(obj("11", status="other"))  # an older event still in flight
    assert mc.get("ns/a")["status"]["s"] == "written"  # type: ignore[index]
    inf.deliver(obj("12", status="written"))
    assert len(mc) == 0
    assert mc.get("ns/a") is inf.store.get("ns/a")


def test_a_newer_informer_object_wins() -> None:
    inf, mc = cache()
    inf.deliver(obj("10"))
    mc.mutated(obj("12", status="written"))
    inf.deliver(obj("15", status="someone else"))
    assert mc.get("ns/a")["status"]["s"] == "someone else"  # type: ignore[index]
    assert len(mc) == 0


def test_writes_older_than_the_cache_are_not_remembered() -> None:
    inf, mc = cache()
    inf.deliver(obj("20"))
    mc.mutated(obj("12"))
    assert len(mc) == 0
    mc.mutated({"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "opaque"}})
    assert len(mc) == 0


def test_deleted_or_replaced_objects_are_never_resurrected() -> None:
    inf, mc = cache()
    inf.deliver(obj("10"))
    mc.mutated(obj("12", status="written"))
    inf.remove(obj("10"))
    assert mc.get("ns/a") is None and len(mc) == 0
    # Recreated under the same name: a write to the old object does not apply.
    inf.deliver(obj("30", uid="u2"))
    mc.mutated(obj("12"))
    inf.store.add(obj("31", uid="u2"))
    assert mc.get("ns/a")["metadata"]["uid"] == "u2"  # type: ignore[index]


def test_unknown_keys_read_through() -> None:
    _inf, mc = cache()
    mc.mutated(obj("5"))
    assert mc.get("ns/a") is None  # not in the informer: not served from memory
    assert mc.get("ns/other") is None


def test_index_hits_are_read_through_own_writes() -> None:
    inf, mc = cache()
    inf.store.add_indexers({"owner-uid": lambda o: ["owner"]})
    inf.deliver(obj("10", status="cached"))
    assert [o["status"]["s"] for o in mc.by_index("owner-uid", "owner")] == ["cached"]
    mc.mutated(obj("12", status="written"))
    assert [o["status"]["s"] for o in mc.by_index("owner-uid", "owner")] == ["written"]
    assert mc.by_index("owner-uid", "nobody") == []
    inf.remove(obj("10"))
    assert mc.by_index("owner-uid", "owner") == []  # deleted stays deleted
