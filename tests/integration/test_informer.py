"""Informers on the real local control plane: ordering, resumed watches,
stalled watches, API server restarts and 410 Gone relists.

Partitions are made with a plain TCP relay between the informer and the real
kube-apiserver (TLS passes through it untouched): cutting it breaks the
informer's connections while the test keeps talking to the API server
directly, which is how a reflector can miss changes and then find its
resourceVersion compacted away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from prometheus_client import CollectorRegistry
from support import eventually
from support.kube import Relay, RequestLog, api_client

from aim_controller.machinery.handlers import KubeObject, key_of
from aim_controller.machinery.informer import (
    Informer,
    InformerFactory,
    MultiNamespaceInformer,
    wait_for_cache_sync,
)
from aim_controller.machinery.kubeclient import ApiException, KubeClient
from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.reflector import BackoffManager
from aim_controller.machinery.resource import (
    CONFIGMAPS,
    NAMESPACES,
    discover,
    list_objects,
    list_page,
    request_json,
)
from aim_controller.machinery.store import NAMESPACE_INDEX, index_by_label

pytestmark = pytest.mark.cluster

MERGE_PATCH = "application/merge-patch+json"


# -- helpers ---------------------------------------------------------------------
class Recorder:
    """An event handler that records (type, key, resourceVersion) per event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.deleted: dict[str, KubeObject] = {}

    @staticmethod
    def _rv(obj: KubeObject) -> str:
        return str(obj["metadata"]["resourceVersion"])

    def on_add(self, obj: KubeObject) -> None:
        self.events.append(("add", key_of(obj), self._rv(obj)))

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.events.append(("update", key_of(new), self._rv(new)))

    def on_delete(self, obj: KubeObject) -> None:
        self.events.append(("delete", key_of(obj), self._rv(obj)))
        self.deleted[key_of(obj)] = obj

    def of(self, key: str) -> list[str]:
        return [t for t, k, _ in self.events if k == key]

    def count(self, kind: str) -> Counter[str]:
        return Counter(k for t, k, _ in self.events if t == kind)


class Exploding:
    def on_add(self, obj: KubeObject) -> None:
        raise RuntimeError("boom")

    on_delete = on_add

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        raise RuntimeError("boom")


async def create_cm(api: KubeClient, ns: str, name: str, **data: str) -> str:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": data or {"v": "1"}}
    created = await request_json(api, "POST", CONFIGMAPS.collection_path(ns), body=body)
    return str(created["metadata"]["resourceVersion"])


async def patch_cm(api: KubeClient, ns: str, name: str, **data: str) -> str:
    patched = await request_json(api, "PATCH", CONFIGMAPS.object_path(name, ns),
                                 body={"data": data}, content_type=MERGE_PATCH)
    return str(patched["metadata"]["resourceVersion"])


async def delete_cm(api: KubeClient, ns: str, name: str) -> None:
    await request_json(api, "DELETE", CONFIGMAPS.object_path(name, ns))


async def create_ns(api: KubeClient, name: str) -> None:
    await request_json(api, "POST", NAMESPACES.collection_path(),
                       body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def delete_ns(api: KubeClient, name: str) -> None:
    await request_json(api, "DELETE", NAMESPACES.object_path(name))


async def server_state(api: KubeClient, ns: str) -> dict[str, str]:
    listed = await list_objects(api, CONFIGMAPS, namespace=ns)
    return {key_of(o): o["metadata"]["resourceVersion"] for o in listed.items
            if o["metadata"]["name"] != "kube-root-ca.crt"}


def store_state(inf: Informer) -> dict[str, str]:
    return {key_of(o): o["metadata"]["resourceVersion"] for o in inf.store.list()
            if o["metadata"]["name"] != "kube-root-ca.crt"}


class RecordingBackoff(BackoffManager):
    """Doubling from 0.2 s without jitter; records (which manager, delay, loop time)
    per backoff taken.

    The reflector's watch backoff is a copy of this one: it records into the same list.
    """

    def __init__(self, taken: list[tuple[int, float, float]]) -> None:
        super().__init__(initial=0.2, factor=2.0, cap=30.0, jitter=0.0)
        self.taken = taken

    def next(self) -> float:
        delay = super().next()
        self.taken.append((id(self), delay, asyncio.get_running_loop().time()))
        return delay


# -- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="module")
async def api(api_cluster: LocalCluster) -> AsyncIterator[KubeClient]:
    client = await api_client(api_cluster)
    yield client
    await client.close()


@pytest.fixture
async def ns(api: KubeClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    await create_ns(api, name)
    yield name
    with contextlib.suppress(ApiException):
        await delete_ns(api, name)


@contextlib.asynccontextmanager
async def running(*informers: Informer | MultiNamespaceInformer) -> AsyncIterator[None]:
    for inf in informers:
        inf.start()
    try:
        assert await wait_for_cache_sync(*informers, timeout=60)
        yield
    finally:
        for inf in informers:
            await inf.stop()


# -- tests -----------------------------------------------------------------------
async def test_discover_finds_core_resources_and_reports_missing_groups(api: KubeClient) -> None:
    core = await discover(api, "", "v1")
    assert {"configmaps", "pods", "namespaces"} <= core
    assert not any("/" in p for p in core)  # subresources excluded
    assert "leases" in await discover(api, "coordination.k8s.io", "v1")
    assert await discover(api, "monitoring.coreos.com", "v1") == set()


async def test_informer_delivers_creates_updates_deletes_in_order(
    api: KubeClient, ns: str
) -> None:
    await create_cm(api, ns, "before")  # exists before the informer starts
    inf = Informer(api, CONFIGMAPS, namespace=ns, indexers={"app": index_by_label("app")})
    rec, late = Recorder(), Recorder()
    inf.add_event_handler(Exploding())  # must not disturb the others
    inf.add_event_handler(rec)
    assert not inf.has_synced()
    async with running(inf):
        assert inf.has_synced()
        assert rec.of(f"{ns}/before") == ["add"]
        a1 = await create_cm(api, ns, "a", v="1")
        await request_json(api, "PATCH", CONFIGMAPS.object_path("a", ns),
                           body={"metadata": {"labels": {"app": "x"}}}, content_type=MERGE_PATCH)
        a3 = await patch_cm(api, ns, "a", v="3")
        await create_cm(api, ns, "b")
        await delete_cm(api, ns, "b")
        await delete_cm(api, ns, "before")
        await eventually(lambda: rec.of(f"{ns}/before")[-1:] == ["delete"])

        assert rec.of(f"{ns}/a") == ["add", "update", "update"]
        assert rec.of(f"{ns}/b") == ["add", "delete"]
        a_rvs = [rv for _, k, rv in rec.events if k == f"{ns}/a"]
        assert a_rvs[0] == a1 and a_rvs[-1] == a3
        assert sorted(int(rv) for _, _, rv in rec.events[1:]) == [
            int(rv) for _, _, rv in rec.events[1:]], "events out of resourceVersion order"

        a = inf.store.get(f"{ns}/a")
        assert a is not None and a["data"] == {"v": "3"} and a["kind"] == "ConfigMap"
        assert "managedFields" not in a["metadata"]  # default transform
        assert inf.store.get(f"{ns}/b") is None and f"{ns}/before" not in inf.store
        assert [key_of(o) for o in inf.store.by_index("app", "x")] == [f"{ns}/a"]
        assert store_state(inf) == await server_state(api, ns)

        inf.add_event_handler(late)  # joins late: replayed the cache as adds
        assert late.events and {t for t, _, _ in late.events} == {"add"}
        assert {k for _, k, _ in late.events} == set(inf.store.list_keys())


async def test_cut_watches_resume_without_losing_or_duplicating_events(
    api_cluster: LocalCluster, api: KubeClient, ns: str
) -> None:
    relay = Relay(api_cluster.ports["apiserver"])
    await relay.start()
    via_relay = await api_client(api_cluster, relay.url)
    # A 1 s server-side timeout closes the watch every second (phase 1); then
    # the relay also resets it mid-stream (phase 2).
    inf = Informer(via_relay, CONFIGMAPS, namespace=ns, watch_timeout=(1, 1))
    rec = Recorder()
    inf.add_event_handler(rec)
    names = [f"cm-{i:02d}" for i in range(40)]
    try:
        async with running(inf):
            for i, name in enumerate(names[:20]):
                await create_cm(api, ns, name)
                if i % 3 == 0:
                    await patch_cm(api, ns, names[i // 2], v=f"u{i}")
                if i % 5 == 4:  # the next changes go to the next watch
                    watches = inf.stats.watch_attempts
                    await eventually(lambda w=watches: inf.stats.watch_attempts > w,
                                     what="the server ended the watch and another began")
            for i, name in enumerate(names[20:], 20):
                await create_cm(api, ns, name)
                if i % 3 == 0:
                    await patch_cm(api, ns, names[i // 2], v=f"u{i}")
                if i % 7 == 0:
                    relay.drop_connections()
                await asyncio.sleep(0.1)
            async with asyncio.timeout(30):
                while inf.stats.errors == 0:  # make sure at least one reset hit a live watch
                    relay.drop_connections()
                    await asyncio.sleep(0.3)
            for name in names[:10]:
                await delete_cm(api, ns, name)
            expected = await server_state(api, ns)
            await eventually(lambda: store_state(inf) == expected, what="store converged")
            await eventually(lambda: len(rec.count("delete")) == 10)
    finally:
        await via_relay.close()
        await relay.cut()

    adds = rec.count("add")
    assert all(adds[f"{ns}/{n}"] == 1 for n in names), adds
    assert sum(rec.count("delete").values()) == 10
    # Resumed, not relisted: one list, many watches, some ended by the server.
    assert inf.stats.lists == 1 and inf.stats.expired == 0
    assert inf.stats.errors >= 1
    # Each change is delivered once: no (key, resourceVersion) twice.
    seen = [(k, rv) for t, k, rv in rec.events]
    assert len(seen) == len(set(seen))


async def test_stalled_watch_is_dropped_and_a_change_made_meanwhile_arrives(
    api_cluster: LocalCluster, api: KubeClient, ns: str
) -> None:
    relay = Relay(api_cluster.ports["apiserver"])
    await relay.start()
    via_relay = await api_client(api_cluster, relay.url)
    metrics = MachineryMetrics(CollectorRegistry())
    # The server would end the silent watch only after 5 to 10 minutes (its timeout):
    # within the test's bounds, only the 3 s stall timeout can bring the change.
    inf = Informer(via_relay, CONFIGMAPS, namespace=ns, stall_timeout=3, metrics=metrics)
    stalls_when_delivered: list[tuple[str, str, int]] = []

    class Stalls(Recorder):
        def on_update(self, old: KubeObject, new: KubeObject) -> None:
            super().on_update(old, new)
            stalls_when_delivered.append((key_of(new), self._rv(new), inf.stats.stalls))

    rec = Stalls()
    inf.add_event_handler(rec)
    key = f"{ns}/a"
    try:
        async with running(inf):
            await create_cm(api, ns, "a", v="1")
            await eventually(lambda: rec.of(key) == ["add"], what="the watch is live")
            stalls = inf.stats.stalls
            assert relay.pause() >= 1  # the watch's connection: open, forwarding nothing
            changed = await patch_cm(api, ns, "a", v="2")
            await eventually(lambda: (inf.store.get(key) or {}).get("data") == {"v": "2"},
                             what="the change made during the stall")
    finally:
        relay.resume()
        await via_relay.close()
        await relay.cut()

    # Delivered once, by a watch that began after the silent one was dropped...
    assert rec.of(key) == ["add", "update"]
    assert stalls_when_delivered == [(key, changed, stalls_when_delivered[0][2])]
    assert stalls_when_delivered[0][2] > stalls
    # ...which resumed from the last resourceVersion: no relist.
    assert inf.stats.lists == 1 and inf.stats.expired == 0
    assert metrics.registry.get_sample_value(
        "reflector_stalled_watches_total", {"name": f"{ns}/configmaps"}) == inf.stats.stalls


async def test_apiserver_restart_recovers_and_converges(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c = make_cluster(full=False)
    api = await api_client(c)
    taken: list[tuple[int, float, float]] = []
    inf = Informer(api, CONFIGMAPS, namespace="default", backoff=RecordingBackoff(taken))
    rec = Recorder()
    inf.add_event_handler(rec)
    try:
        async with running(inf):
            for i in range(5):
                await create_cm(api, "default", f"a{i}")
            await eventually(lambda: len(rec.count("add")) >= 5)

            await asyncio.to_thread(c.stop_component, "apiserver")
            before, waited = inf.stats.list_attempts + inf.stats.watch_attempts, len(taken)
            # Nothing can change while it is down: let it fail and back off a few times.
            await eventually(lambda: len(taken) - waited >= 4, what="four backoffs while down")
            attempts_while_down = inf.stats.list_attempts + inf.stats.watch_attempts - before
            backoffs = taken[waited:]
            await asyncio.to_thread(c.start_apiserver)

            await delete_cm(api, "default", "a0")
            await patch_cm(api, "default", "a1", v="2")
            for i in range(3):
                await create_cm(api, "default", f"b{i}")
            expected = await server_state(api, "default")
            await eventually(lambda: store_state(inf) == expected, 90,
                             what="store converged after restart")
    finally:
        await api.close()

    # Backoff, not a hot loop: every retry while it was down came after a backoff (but
    # one: a watch the server ended cleanly is resumed at once), each backoff (the
    # list's and the watch's) doubled the one before, and the next failure came only
    # after it was waited out (a lower bound, which no slowness can break).
    assert 1 <= attempts_while_down <= len(backoffs) + 1, (attempts_while_down, backoffs)
    for manager in {m for m, _, _ in backoffs}:
        delays = [d for m, d, _ in backoffs if m == manager]
        assert all(b == 2 * a for a, b in itertools.pairwise(delays)), backoffs
    assert all(t2 - t1 >= d1 for (_, d1, t1), (_, _, t2) in itertools.pairwise(backoffs)), \
        backoffs
    assert inf.stats.errors >= 1
    adds = rec.count("add")
    assert all(adds[f"default/{n}"] == 1 for n in ("a0", "a1", "b0", "b1", "b2"))
    assert rec.count("delete") == Counter({"default/a0": 1})
    assert rec.of("default/a1")[-1] == "update"


async def test_expired_resource_version_relists_and_delivers_missed_changes(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    # Without the watch cache, watches go to etcd, so compaction makes an old
    # resourceVersion unusable: the reflector must get 410 and relist.
    c = make_cluster(full=False, watch_cache=False)
    relay = Relay(c.ports["apiserver"])
    await relay.start()
    api = await api_client(c)
    via_relay = await api_client(c, relay.url)
    # page_size=2: the quorum relist after 410 spans pages (continue tokens).
    inf = Informer(via_relay, CONFIGMAPS, namespace="default", page_size=2,
                   backoff=BackoffManager(initial=0.5, cap=2))
    rec = Recorder()
    inf.add_event_handler(rec)
    try:
        async with running(inf):
            last_known: dict[str, str] = {}
            for name in ("keep", "change", "gone-1", "gone-2"):
                last_known[name] = await create_cm(api, "default", name)
            await eventually(lambda: len(rec.count("add")) >= 4)

            await relay.cut()  # the informer stops hearing anything
            await delete_cm(api, "default", "gone-1")
            await delete_cm(api, "default", "gone-2")
            changed = await patch_cm(api, "default", "change", v="2")
            await create_cm(api, "default", "new")
            await asyncio.to_thread(c.compact_etcd)
            await relay.restore()

            expected = await server_state(api, "default")
            await eventually(lambda: store_state(inf) == expected, what="relisted")
    finally:
        await via_relay.close()
        await api.close()
        with contextlib.suppress(AssertionError):
            await relay.cut()

    assert inf.stats.expired >= 1 and inf.stats.lists >= 2
    for name in ("gone-1", "gone-2"):
        key = f"default/{name}"
        assert rec.of(key) == ["add", "delete"]
        # The delete carries the last state the informer knew.
        assert rec.deleted[key]["metadata"]["resourceVersion"] == last_known[name]
    assert rec.of("default/change") == ["add", "update"]
    assert ("update", "default/change", changed) in rec.events
    assert rec.of("default/new") == ["add"]
    assert rec.of("default/keep") == ["add"]  # unchanged RV: no update on relist


async def test_paginated_lists_follow_continue_tokens(api: KubeClient, ns: str) -> None:
    for i in range(7):
        await create_cm(api, ns, f"p{i}")
    # A quorum list (no resourceVersion) is served from etcd in pages...
    first = await list_page(api, CONFIGMAPS, namespace=ns, limit=2)
    assert len(first.items) == 2 and first.continue_token
    quorum = await list_objects(api, CONFIGMAPS, namespace=ns, limit=2)
    assert len(quorum.items) == 7 and quorum.resource_version
    # ...while resourceVersion=0 is answered whole from the watch cache.
    cached = await list_page(api, CONFIGMAPS, namespace=ns, limit=2, resource_version="0",
                             resource_version_match="NotOlderThan")
    assert len(cached.items) == 7 and not cached.continue_token


async def test_informer_lists_in_pages_and_transforms_every_page(
    api_cluster: LocalCluster, api: KubeClient, ns: str,
) -> None:
    # More objects than one page: the first list (no resourceVersion: "0" would be
    # answered whole) and a relist (at the last list's resourceVersion) come in pages.
    for i in range(7):
        await create_cm(api, ns, f"q{i}")
    client = await api_client(api_cluster)
    log = RequestLog(client)

    def slim(obj: KubeObject) -> KubeObject:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "slim": True,
                "metadata": {k: obj["metadata"][k]
                             for k in ("name", "namespace", "resourceVersion")}}

    inf = Informer(client, CONFIGMAPS, namespace=ns, page_size=3, transform=slim)
    try:
        async with running(inf):
            first = [u for m, u in log.since(0, "GET") if "watch=true" not in u]
        assert len(first) == 3, first
        assert "limit=3" in first[0] and "resourceVersion" not in first[0]
        assert all("continue=" in u for u in first[1:])
        expected = await server_state(api, ns)
        assert store_state(inf) == expected and len(expected) == 7
        assert all(o["slim"] and "uid" not in o["metadata"] for o in inf.store.list())

        await create_cm(api, ns, "q7")
        mark = len(log)
        await inf.reflector._list()  # a relist, as after a 410 watch
        relist = [u for _, u in log.since(mark, "GET")]
        assert len(relist) == 3, relist
        assert "limit=3" in relist[0] and "resourceVersion=" in relist[0]
        assert "resourceVersionMatch=NotOlderThan" in relist[0]
        assert all("continue=" in u for u in relist[1:])
        assert store_state(inf) == await server_state(api, ns)
        assert inf.store.get(f"{ns}/q7") is not None
    finally:
        await client.close()


async def test_factory_shares_informers_and_spans_namespaces(api: KubeClient) -> None:
    namespaces = [f"m-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for n in namespaces:
        await create_ns(api, n)
        await create_cm(api, n, "x", v=n)
    factory = InformerFactory(api, namespaces=namespaces)
    multi = factory.for_resource(CONFIGMAPS)
    assert isinstance(multi, MultiNamespaceInformer)
    assert factory.informer(CONFIGMAPS, namespaces[0]) is multi.informers[0]
    cluster_wide = factory.for_resource(NAMESPACES)  # cluster-scoped: never split
    assert isinstance(cluster_wide, Informer) and cluster_wide.namespace is None
    with pytest.raises(ValueError):
        factory.informer(CONFIGMAPS, namespaces[0], label_selector="a=b")
    rec = Recorder()
    multi.add_event_handler(rec)
    factory.start()
    try:
        assert await factory.wait_for_cache_sync(timeout=60)
        keys = {f"{n}/x" for n in namespaces}
        assert keys <= set(multi.store.list_keys())
        assert all(multi.store.get(k) is not None for k in keys)
        assert [key_of(o) for o in multi.store.by_index(NAMESPACE_INDEX, namespaces[1])
                if o["metadata"]["name"] == "x"] == [f"{namespaces[1]}/x"]
        assert set(namespaces) <= set(cluster_wide.store.list_keys())
        await create_cm(api, namespaces[1], "y")
        await eventually(lambda: f"{namespaces[1]}/y" in multi.store)
        assert rec.count("add")[f"{namespaces[1]}/y"] == 1
    finally:
        await factory.stop()
        for n in namespaces:
            await delete_ns(api, n)


async def test_resync_redelivers_cached_objects(api: KubeClient, ns: str) -> None:
    await create_cm(api, ns, "r")
    inf = Informer(api, CONFIGMAPS, namespace=ns, resync_period=0.2)
    updates: list[tuple[KubeObject, KubeObject]] = []

    class OnUpdate(Recorder):
        def on_update(self, old: KubeObject, new: KubeObject) -> None:
            updates.append((old, new))

    inf.add_event_handler(OnUpdate())
    async with running(inf):
        await eventually(lambda: sum(key_of(n) == f"{ns}/r" for _, n in updates) >= 2)
    assert all(o is n for o, n in updates)
