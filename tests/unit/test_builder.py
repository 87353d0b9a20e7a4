"""The controller builder on real (unstarted) informers, fed as their reflectors would
feed them: which keys events enqueue, at which priority, what is mapped, what the
controller waits for, and how an optional kind joins once its CRD is served."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest
from support import eventually

from aim_controller.machinery.builder import (
    ControllerBuilder,
    on_generation_change,
    spec_first,
)
from aim_controller.machinery.controller import Result
from aim_controller.machinery.crds import crd_informer, crd_name
from aim_controller.machinery.handlers import ResourceEventHandlerFuncs
from aim_controller.machinery.informer import (
    Informer,
    InformerFactory,
    InformerLike,
    MultiNamespaceInformer,
)
from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.resource import (
    CONFIGMAPS,
    ObjectList,
    Resource,
    WatchEvent,
)
from aim_controller.machinery.workqueue import PRIORITY_DEFAULT, PRIORITY_LOW, WorkQueue
from aim_controller.machinery.writer import RESTMapper

THINGS = Resource("example.com", "v1", "things", "Thing")
PARTS = Resource("apps", "v1", "deployments", "Deployment")
LABELS = Resource("", "v1", "pods", "Pod")
WIDGETS = Resource("extra.example.com", "v1", "widgets", "Widget")


class NeverAnswers:
    """An API client whose requests never complete: a started informer never syncs."""

    async def call_api(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Future()


def factory(**kw: Any) -> InformerFactory:
    return InformerFactory(cast(KubeClient, NeverAnswers()), **kw)


def builder(f: InformerFactory | None = None, mapper: RESTMapper | None = None
            ) -> ControllerBuilder:
    return ControllerBuilder("things", f or factory(), mapper or RESTMapper())


async def listed(inf: InformerLike, *objs: dict[str, Any]) -> None:
    """The informer's initial list arrives (handlers run, then it reports synced)."""
    await cast(Informer, inf).reflector._apply_list(
        ObjectList(items=[copy.deepcopy(o) for o in objs], resource_version="1"))


def event(inf: InformerLike, type_: str, obj: dict[str, Any]) -> None:
    cast(Informer, inf).reflector._handle(WatchEvent(type_, copy.deepcopy(obj)))


def thing(name: str, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}",
                         "generation": generation, "resourceVersion": str(generation)},
            "status": status}


def owned_by(name: str, owner: str, *, kind: str = "Deployment",
             api_version: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"namespace": "ns", "name": name, "resourceVersion": "5",
                         "ownerReferences": [{"apiVersion": "example.com/v1alpha9",
                                              "kind": "Thing", "name": owner,
                                              "uid": f"uid-{owner}", "controller": True}]}}


def crd(resource: Resource, *, established: bool = True, rv: str = "3") -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name(resource), "resourceVersion": rv},
            "spec": {"group": resource.group, "scope": "Namespaced",
                     "names": {"kind": resource.kind, "plural": resource.plural},
                     "versions": [{"name": resource.version, "served": True,
                                   "schema": {"openAPIV3Schema": {"huge": "..."}}}]},
            "status": {"conditions": [{"type": "Established",
                                       "status": "True" if established else "False"}]}}


def drain(q: WorkQueue[str]) -> list[str]:
    """The queued keys in hand-out order; the queue is left empty."""
    out = []
    while len(q):
        key = q.get_nowait()
        out.append(key)
        q.done(key)
    return out


def snapshot(q: WorkQueue[str], *keys: str) -> dict[str, int | None]:
    return {k: q.priority(k) for k in keys}


async def nothing(key: str) -> Result | None:
    return None


# -- For ---------------------------------------------------------------------------
async def test_primary_events_enqueue_the_object_and_its_kind_is_mapped() -> None:
    mapper = RESTMapper()
    b = builder(mapper=mapper)
    things = b.for_(THINGS, indexers={"color": lambda o: [str(o["status"].get("color"))]})
    await listed(things, thing("a", color="red"))
    assert drain(b.queue) == ["ns/a"]
    assert [o["metadata"]["name"] for o in things.store.by_index("color", "red")] == ["a"]
    assert mapper.resource_for("example.com/v1", "Thing") == THINGS
    assert b.sources == [things]


async def test_spec_first_puts_status_echoes_behind_spec_changes() -> None:
    b = builder()
    things = b.for_(THINGS, enqueue=spec_first(PRIORITY_DEFAULT, PRIORITY_LOW))
    await listed(things, thing("echo"), thing("edited"))
    drain(b.queue)
    event(things, "MODIFIED", thing("echo", 1, phase="Ready"))
    event(things, "MODIFIED", thing("edited", 2))
    assert snapshot(b.queue, "ns/echo", "ns/edited") == {
        "ns/echo": PRIORITY_LOW, "ns/edited": PRIORITY_DEFAULT}


async def test_generation_policy_ignores_status_echoes() -> None:
    b = builder()
    things = b.for_(THINGS, enqueue=on_generation_change)
    await listed(things, thing("a"))
    drain(b.queue)
    event(things, "MODIFIED", thing("a", 1, phase="Ready"))
    assert len(b.queue) == 0
    event(things, "MODIFIED", thing("a", 2))
    assert drain(b.queue) == ["ns/a"]


# -- Owns --------------------------------------------------------------------------
async def test_child_events_enqueue_the_controller_owner_at_low_priority() -> None:
    mapper = RESTMapper()
    b = builder(mapper=mapper)
    b.for_(THINGS)
    parts = b.owns(PARTS, label_selector="app=things")
    assert cast(Informer, parts).label_selector == "app=things"
    await listed(parts, owned_by("a-part", "a"))
    b.queue.add("ns/z")
    # Matched on group and kind: the reference's older version names the same owner.
    assert snapshot(b.queue, "ns/a") == {"ns/a": PRIORITY_LOW}
    assert drain(b.queue) == ["ns/z", "ns/a"]
    assert b.owned == {"Deployment": (PARTS, parts)}
    assert b.served(PARTS) and not b.served(WIDGETS)
    assert [o["metadata"]["name"] for o in parts.store.by_index("owner-uid", "uid-a")] == [
        "a-part"]
    assert mapper.resource_for("apps/v1", "Deployment") == PARTS


def test_declaration_order_is_enforced() -> None:
    b = builder()
    with pytest.raises(RuntimeError):
        b.owns(PARTS)
    b.for_(THINGS)
    with pytest.raises(ValueError):
        b.for_(PARTS)
    b.owns(PARTS)
    with pytest.raises(ValueError):
        b.owns(PARTS)
    b.complete(nothing)
    with pytest.raises(RuntimeError):
        b.reads(CONFIGMAPS)


# -- Watches / Reads / Uses --------------------------------------------------------
async def test_watched_objects_map_to_primary_keys_at_the_given_priority() -> None:
    b = builder()
    b.for_(THINGS)
    pods = b.watches(LABELS, lambda o: [f"ns/{o['metadata']['labels']['thing']}"],
                     priority=PRIORITY_LOW)
    pod = {"metadata": {"namespace": "ns", "name": "p", "resourceVersion": "1",
                        "labels": {"thing": "a"}}}
    await listed(pods, pod)
    assert snapshot(b.queue, "ns/a") == {"ns/a": PRIORITY_LOW}


def test_all_namespaces_overrides_the_factorys_namespaces() -> None:
    b = builder(factory(namespaces=["one", "two"]))
    things = b.for_(THINGS)
    pods = b.watches(LABELS, lambda o: [], all_namespaces=True)
    assert isinstance(things, MultiNamespaceInformer)
    assert isinstance(pods, Informer) and pods.namespace is None


async def test_read_caches_trigger_nothing_but_are_waited_for() -> None:
    b = builder()
    b.for_(THINGS)
    cms = b.reads(CONFIGMAPS)
    view = lambda: True  # noqa: E731 - an external source that is always synced
    b.uses(view)
    await listed(cms, {"metadata": {"namespace": "ns", "name": "c", "resourceVersion": "1"}})
    assert len(b.queue) == 0
    assert b.sources[1:] == [cms, view]


# -- the controller's sources ------------------------------------------------------
async def test_the_controller_waits_for_its_own_sources_and_no_others() -> None:
    f = factory()
    unrelated = f.informer(CONFIGMAPS)  # another controller's, never synced here
    b = builder(f)
    things = b.for_(THINGS)
    parts = b.owns(PARTS)
    seen: list[str] = []

    async def reconcile(key: str) -> Result | None:
        seen.append(key)
        return None

    controller = b.complete(reconcile)
    assert set(map(id, controller.sources)) == {id(things), id(parts)}
    task = asyncio.create_task(controller.run())
    await listed(things, thing("a"))
    await asyncio.sleep(0)
    assert seen == []  # the owned kind has not synced yet
    await listed(parts)
    await eventually(lambda: seen == ["ns/a"], what="a reconcile once the own sources synced")
    assert not unrelated.has_synced()
    await controller.stop()
    await task


async def test_an_informer_reports_synced_only_after_its_handlers_saw_the_list() -> None:
    inf = factory().informer(CONFIGMAPS)
    synced_at_add: list[bool] = []
    inf.add_event_handler(ResourceEventHandlerFuncs(lambda _o: synced_at_add.append(
        inf.has_synced())))
    await listed(inf, {"metadata": {"namespace": "ns", "name": "c", "resourceVersion": "1"}})
    assert synced_at_add == [False] and inf.has_synced()


# -- optional kinds ----------------------------------------------------------------
async def test_an_optional_kind_is_owned_once_its_crd_is_established() -> None:
    f, mapper = factory(), RESTMapper()
    b = builder(f, mapper)
    b.for_(THINGS)
    assert b.owns(WIDGETS, label_selector="app=things", optional=True) is None
    served: list[tuple[Resource, InformerLike]] = []
    b.on_optional_served(lambda res, inf: served.append((res, inf)))
    b.complete(nothing)
    crds = crd_informer(f)
    await listed(crds, crd(WIDGETS, established=False), crd(PARTS))
    assert b.owned == {} and served == []
    assert "schema" not in crds.store.list()[0]["spec"]["versions"][0]  # a lean copy
    with pytest.raises(KeyError):
        mapper.resource_for("extra.example.com/v1", "Widget")

    event(crds, "MODIFIED", crd(WIDGETS, rv="4"))
    event(crds, "MODIFIED", crd(WIDGETS, rv="5"))  # once only
    assert [res for res, _ in served] == [WIDGETS]
    widgets = served[0][1]
    assert b.owned == {"Widget": (WIDGETS, widgets)} and b.served(WIDGETS)
    assert cast(Informer, widgets).label_selector == "app=things"
    assert mapper.resource_for("extra.example.com/v1", "Widget") == WIDGETS
    await listed(widgets, owned_by("w", "a", kind="Widget", api_version="extra.example.com/v1"))
    assert snapshot(b.queue, "ns/a") == {"ns/a": PRIORITY_LOW}


async def test_optional_kinds_served_at_start_are_owned_and_synced_before_the_first_reconcile(
) -> None:
    f = factory()
    b = builder(f)
    things = b.for_(THINGS)
    b.owns(WIDGETS, optional=True)
    at_reconcile: list[tuple[set[str], bool]] = []

    async def reconcile(key: str) -> Result | None:
        widgets = b.owned.get("Widget")
        at_reconcile.append((set(b.owned), widgets is not None and widgets[1].has_synced()))
        return None

    controller = b.complete(reconcile)
    task = asyncio.create_task(controller.run())
    await listed(things, thing("a"))
    await listed(crd_informer(f), crd(WIDGETS))
    for _ in range(50):  # room for workers that (wrongly) started to reconcile
        await asyncio.sleep(0)
    await listed(b.owned["Widget"][1])
    await eventually(lambda: bool(at_reconcile), what="the first reconcile")
    assert at_reconcile == [({"Widget"}, True)]
    await controller.stop()
    await task


async def test_a_started_crd_informer_replays_served_kinds_at_complete() -> None:
    f = factory()
    crds = crd_informer(f)
    f.start()
    try:
        await listed(crds, crd(WIDGETS))  # another controller's CRD informer, synced
        b = builder(f)
        b.for_(THINGS)
        b.owns(WIDGETS, optional=True)
        served: list[Resource] = []
        b.on_optional_served(lambda res, _inf: served.append(res))
        assert served == []
        b.complete(nothing)
        assert served == [WIDGETS] and "Widget" in b.owned
    finally:
        await f.stop()


async def test_an_optional_kind_whose_crd_goes_is_forgotten_and_followed_again() -> None:
    f = factory()
    f.start()
    try:
        b = builder(f)
        b.for_(THINGS)
        b.owns(WIDGETS, optional=True)
        served: list[Resource] = []
        gone: list[tuple[Resource, set[str]]] = []
        b.on_optional_served(lambda res, _inf: served.append(res))
        b.on_optional_gone(lambda res: gone.append((res, set(b.owned))))
        b.complete(nothing)
        crds = crd_informer(f)
        await listed(crds, crd(WIDGETS))
        first = b.owned["Widget"][1]
        assert served == [WIDGETS] and first.started

        event(crds, "DELETED", crd(WIDGETS, rv="4"))
        event(crds, "DELETED", crd(WIDGETS, rv="4"))  # once only
        assert gone == [(WIDGETS, set())] and not b.served(WIDGETS)
        assert all(inf is not first for inf in f.informers())  # the factory forgot it
        await eventually(lambda: not cast(Informer, first).started, what="informer stopped")

        event(crds, "ADDED", crd(WIDGETS, rv="6"))  # installed again
        second = b.owned["Widget"][1]
        assert served == [WIDGETS, WIDGETS] and second is not first and second.started
    finally:
        await f.stop()


async def test_an_optional_kind_is_gone_once_its_crd_is_terminating_or_stops_serving() -> None:
    f = factory()
    b = builder(f)
    b.for_(THINGS)
    b.owns(WIDGETS, optional=True)
    gone: list[Resource] = []
    b.on_optional_gone(gone.append)
    b.complete(nothing)
    crds = crd_informer(f)
    await listed(crds, crd(WIDGETS))
    terminating = crd(WIDGETS, rv="4")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    event(crds, "MODIFIED", terminating)
    assert gone == [WIDGETS] and "Widget" not in b.owned

    event(crds, "MODIFIED", crd(WIDGETS, rv="5"))  # served again (a new CRD of the name)
    assert "Widget" in b.owned
    unserved = crd(WIDGETS, rv="6")
    unserved["spec"]["versions"][0]["served"] = False
    event(crds, "MODIFIED", unserved)
    assert gone == [WIDGETS, WIDGETS] and "Widget" not in b.owned


async def test_a_controller_does_not_wait_for_an_optional_kind_whose_crd_went_unsynced() -> None:
    f = factory()
    b = builder(f)
    things = b.for_(THINGS)
    b.owns(WIDGETS, optional=True)
    seen: list[str] = []

    async def reconcile(key: str) -> Result | None:
        seen.append(key)
        return None

    controller = b.complete(reconcile)
    task = asyncio.create_task(controller.run())
    crds = crd_informer(f)
    await listed(things, thing("a"))
    await listed(crds, crd(WIDGETS))  # served at start; its informer never lists
    for _ in range(50):
        await asyncio.sleep(0)
    assert seen == []
    event(crds, "DELETED", crd(WIDGETS, rv="4"))
    await eventually(lambda: seen == ["ns/a"], what="a reconcile once the kind went")
    await controller.stop()
    await task
