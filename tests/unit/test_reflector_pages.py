"""The reflector's lists are paged, each page transformed before the next is requested
(so only one page of whole objects is alive at once); relists deliver the difference
against the store; an expired continue token falls back to one whole list, as
client-go's pager does.

The API server here is a fake one (``list_page`` replaced): these tests are about the
reflector's paging, not about Kubernetes; tests/integration/test_informer.py lists
pages from the real kube-apiserver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from aim_controller.machinery import reflector as reflector_module
from aim_controller.machinery.handlers import KubeObject, key_of
from aim_controller.machinery.reflector import Reflector
from aim_controller.machinery.resource import CONFIGMAPS, ObjectList
from aim_controller.machinery.store import Indexer

PAGE = 3


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "d", "resourceVersion": rv,
                         "managedFields": [{"manager": "x"}]},
            "data": {"big": "x" * 100}}


@dataclass
class Request:
    limit: int | None
    continue_token: str | None
    resource_version: str | None
    resource_version_match: str | None
    transformed_before: int  # objects the reflector had transformed when this was sent
    previous_page_cleared: bool  # the previous page's whole objects were dropped


@dataclass
class FakePager:
    """Serves ``objects`` (a snapshot at ``rv``) in pages of ``limit``, continue token = offset.

    ``expire_continue``: the continue token of that request number (0-based) answers 410.
    ``expire_first``: the first page at any resourceVersion other than unset answers 410.
    """

    objects: list[dict[str, Any]]
    rv: str
    expire_continue: int | None = None
    expire_first: bool = False
    requests: list[Request] = field(default_factory=list)
    transformed: int = 0
    _last: ObjectList | None = None

    async def list_page(self, api: Any, resource: Any, *, limit: int | None = None,
                        continue_token: str | None = None, resource_version: str | None = None,
                        resource_version_match: str | None = None, **kw: Any) -> ObjectList:
        n = len(self.requests)
        self.requests.append(Request(
            limit, continue_token, resource_version, resource_version_match, self.transformed,
            self._last is None or not self._last.items))
        gone = reflector_module.ApiException(410, "Expired", '{"code": 410}')
        if continue_token and self.expire_continue == n:
            raise gone
        if self.expire_first and resource_version and not continue_token:
            raise gone
        start = int(continue_token or 0)
        end = len(self.objects) if not limit else start + limit
        items = [dict(o, metadata=dict(o["metadata"])) for o in self.objects[start:end]]
        token = str(end) if end < len(self.objects) else ""
        self._last = ObjectList(items, self.rv, token)
        return self._last

    def transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.transformed += 1
        return {"metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"},
                "slim": True}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def on_add(self, obj: KubeObject) -> None:
        self.events.append(("add", key_of(obj), obj["metadata"]["resourceVersion"]))

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.events.append(("update", key_of(new), new["metadata"]["resourceVersion"]))

    def on_delete(self, obj: KubeObject) -> None:
        self.events.append(("delete", key_of(obj), obj["metadata"]["resourceVersion"]))


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(server: FakePager) -> tuple[Reflector, Recorder]:
        monkeypatch.setattr(reflector_module, "list_page", server.list_page)
        rec = Recorder()
        r = Reflector(cast(Any, None), CONFIGMAPS, Indexer(), [rec],
                      transform=server.transform, page_size=PAGE)
        return r, rec
    return install


def objects(n: int, rv: str = "1") -> list[dict[str, Any]]:
    return [cm(f"c{i:02d}", rv) for i in range(n)]


async def test_first_list_is_paged_and_each_page_transformed_before_the_next(serve: Any) -> None:
    server = FakePager(objects(10), "50")
    r, rec = serve(server)
    await r._list()

    # Four pages of three; only the first names a resourceVersion: none (a consistent
    # read: resourceVersion=0 would be answered whole from the watch cache).
    assert [(q.limit, q.continue_token) for q in server.requests] == [
        (PAGE, None), (PAGE, "3"), (PAGE, "6"), (PAGE, "9")]
    assert [(q.resource_version, q.resource_version_match) for q in server.requests] == [
        (None, None)] * 4
    # By each request, every earlier page was transformed and its whole objects dropped.
    assert [q.transformed_before for q in server.requests] == [0, 3, 6, 9]
    assert all(q.previous_page_cleared for q in server.requests)
    assert sorted(r.store.list_keys()) == [f"d/c{i:02d}" for i in range(10)]
    assert all(o.get("slim") and "managedFields" not in o["metadata"] for o in r.store.list())
    assert r.last_resource_version == "50" and r.has_synced()
    assert [t for t, _, _ in rec.events] == ["add"] * 10
    assert r.stats.list_attempts == 1 and r.stats.lists == 1


async def test_relist_pages_from_the_last_list_and_delivers_the_difference(serve: Any) -> None:
    server = FakePager(objects(7), "50")
    r, rec = serve(server)
    await r._list()
    rec.events.clear()
    server.requests.clear()
    # Meanwhile: c00 changed, c06 deleted, c07 created.
    server.objects = [cm("c00", "60"), *objects(7)[1:6], cm("c07", "61")]
    server.rv = "61"
    await r._list()

    assert [(q.resource_version, q.resource_version_match, q.continue_token)
            for q in server.requests] == [("50", "NotOlderThan", None), (None, None, "3"),
                                          (None, None, "6")]
    assert sorted(rec.events) == [("add", "d/c07", "61"), ("delete", "d/c06", "1"),
                                  ("update", "d/c00", "60")]
    assert len(r.store.list_keys()) == 7 and r.last_resource_version == "61"


async def test_expired_continue_token_falls_back_to_one_whole_list(serve: Any) -> None:
    server = FakePager(objects(10), "50")
    r, rec = serve(server)
    await r._list()
    server.requests.clear()
    rec.events.clear()
    server.objects = objects(9)  # c09 deleted
    server.rv = "70"
    server.expire_continue = 2  # the second continue (third request) answers 410
    await r._list()

    # Two pages, the 410, then the whole list at the requested version (no limit).
    assert [(q.limit, q.continue_token, q.resource_version) for q in server.requests] == [
        (PAGE, None, "50"), (PAGE, "3", None), (PAGE, "6", None), (None, None, "50")]
    # The pages already taken were discarded: nothing delivered twice or lost.
    assert rec.events == [("delete", "d/c09", "1")]
    assert len(r.store.list_keys()) == 9 and r.last_resource_version == "70"
    assert r.stats.list_attempts == 3  # the first list, this one, its fallback


async def test_expired_resource_version_restarts_as_a_paged_consistent_read(
    serve: Any,
) -> None:
    server = FakePager(objects(5), "50")
    r, _ = serve(server)
    await r._list()
    server.requests.clear()
    server.expire_first = True
    await r._list()

    assert [(q.resource_version, q.continue_token) for q in server.requests] == [
        ("50", None), (None, None), (None, "3")]
    assert r.stats.expired == 1 and len(r.store.list_keys()) == 5


async def test_cached_objects_share_their_keys_and_short_values(serve: Any) -> None:
    import json

    # As decoded from the wire: every object has its own copy of each string.
    fresh = [json.loads(json.dumps(o)) for o in objects(4)]
    r, _ = serve(FakePager(fresh, "50"))
    await r._list()
    cached = [r.store.get_by_key(f"d/c{i:02d}") for i in range(4)]
    keys = [next(iter(o["metadata"])) for o in cached if o is not None]
    namespaces = [o["metadata"]["namespace"] for o in cached if o is not None]
    assert len(keys) == 4 and all(k is keys[0] for k in keys)
    assert all(ns is namespaces[0] for ns in namespaces)


async def test_a_relisted_object_takes_its_unchanged_parts_from_the_cached_one(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r, rec = serve(FakePager(objects(4), "50"))
    await r._list()
    before = {k: r.store.get_by_key(k) for k in r.store.list_keys()}
    changed = objects(4)
    changed[1] = cm("c01", "60")
    monkeypatch.setattr(reflector_module, "list_page", FakePager(changed, "60").list_page)
    await r._list()
    after = {k: r.store.get_by_key(k) for k in r.store.list_keys()}
    assert after["d/c00"]["metadata"] is before["d/c00"]["metadata"]  # type: ignore[index]
    # the changed one is rebuilt where it changed, and equal to what was listed
    assert after["d/c01"]["metadata"]["resourceVersion"] == "60"  # type: ignore[index]
    assert after["d/c01"]["metadata"] is not before["d/c01"]["metadata"]  # type: ignore[index]
    assert rec.events[-1] == ("update", "d/c01", "60")
