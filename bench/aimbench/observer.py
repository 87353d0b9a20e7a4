"""Watches one namespace and records when each endpoint converged and became Ready.

An endpoint is *converged* when its ``status.observedGeneration`` equals its
``metadata.generation`` and every child it should have exists, is controlled
by it, and (for the Service) carries the revision its spec asks for. It is
*ready* when, in addition, its ``Ready`` condition is True. A Deployment is
*available* when it is rolled out (:func:`.workload.deployment_available`); this is
tracked for every Deployment the observer sees, the raw loop's too, so both runs of
the bench can be timed until the control plane has finished acting on their writes.

Times are ``time.monotonic()`` at which the watch event that completed the
condition arrived. The informers survive API server outages (they relist).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from .kube import Kube, KubeError, Obj, collection_path
from .workload import (
    API_VERSION,
    CHILD_KINDS,
    MANAGED_BY,
    REV,
    controller_name,
    controller_uid,
    deployment_available,
    expected_children,
    is_ready,
    observed_current,
    spec_rev,
)

OnChange = Callable[[str, Obj], None]


class Informer:
    """A list+watch mirror of one collection: ``objects`` by name."""

    def __init__(self, kube: Kube, path: str, on_change: OnChange, *,
                 label_selector: str | None = None) -> None:
        self.kube = kube
        self.path = path
        self.on_change = on_change
        self.label_selector = label_selector
        self.objects: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.relists = 0
        self.errors = 0

    async def run(self) -> None:
        while True:
            try:
                rv = await self._relist()
                while True:
                    async for typ, obj in self.kube.watch(self.path, rv,
                                                          label_selector=self.label_selector):
                        rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                        if typ == "BOOKMARK":
                            continue
                        self._apply(typ, obj)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, KubeError, OSError, ValueError) as e:
                self.errors += 1
                if not (isinstance(e, KubeError) and e.status == 410):
                    await asyncio.sleep(1.0)
            except Exception:  # aiohttp's own errors: keep the mirror alive
                self.errors += 1
                await asyncio.sleep(1.0)

    async def _relist(self) -> str:
        items, rv = await self.kube.list(self.path, label_selector=self.label_selector)
        self.relists += 1
        fresh = {o["metadata"]["name"]: o for o in items}
        for name in set(self.objects) - set(fresh):
            self._apply("DELETED", self.objects[name])
        for o in fresh.values():
            self._apply("MODIFIED", o)
        self.synced.set()
        return rv

    def _apply(self, typ: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if typ == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self.on_change(typ, obj)


class Observer:
    """Convergence bookkeeping for the endpoints of one namespace."""

    def __init__(self, kube: Kube, namespace: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.namespace = namespace
        self.clock = clock
        self.endpoints = Informer(kube, collection_path(API_VERSION, "AIMEndpoint", namespace),
                                  self._on_endpoint)
        selector = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
        self.children: dict[str, Informer] = {
            kind: Informer(kube, collection_path(CHILD_KINDS[kind], kind, namespace),
                           self._child_handler(kind), label_selector=selector)
            for kind in ("Deployment", "Service", "ConfigMap")
        }
        self.converged_at: dict[str, float] = {}  # first convergence
        self.ready_at: dict[str, float] = {}  # first readiness
        self.converged: set[str] = set()  # converged now
        self.ready: set[str] = set()  # ready now
        self.available_at: dict[str, float] = {}  # Deployment name -> first rolled out
        self.available: set[str] = set()  # Deployments rolled out now
        self._service_waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        informers = [self.endpoints, *self.children.values()]
        self._tasks = [asyncio.create_task(i.run()) for i in informers]
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), 120)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    @property
    def relists(self) -> int:
        return sum(i.relists for i in (self.endpoints, *self.children.values()))

    # -- events ------------------------------------------------------------------
    def _on_endpoint(self, typ: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if typ == "DELETED":
            self.converged.discard(name)
            self.ready.discard(name)
        else:
            self._evaluate(name)
        self._changed.set()

    def _child_handler(self, kind: str) -> OnChange:
        def on_child(typ: str, obj: Obj) -> None:
            owner = controller_name(obj)
            if kind == "Deployment":
                self._track_available(typ, obj)
            if kind == "Service" and typ != "DELETED":
                rev = ((obj["metadata"].get("annotations") or {}).get(REV))
                fut = self._service_waiters.pop((obj["metadata"]["name"], str(rev)), None)
                if fut is not None and not fut.done():
                    fut.set_result(self.clock())
            if owner:
                self._evaluate(owner)
                self._changed.set()
        return on_child

    def _track_available(self, typ: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if typ != "DELETED" and deployment_available(obj):
            self.available.add(name)
            self.available_at.setdefault(name, self.clock())
        else:
            self.available.discard(name)
        self._changed.set()

    def _evaluate(self, name: str) -> None:
        ep = self.endpoints.objects.get(name)
        now = self.clock()
        if ep is None or not self._children_ok(ep) or not observed_current(ep):
            self.converged.discard(name)
            self.ready.discard(name)
            return
        self.converged.add(name)
        self.converged_at.setdefault(name, now)
        if is_ready(ep):
            self.ready.add(name)
            self.ready_at.setdefault(name, now)
        else:
            self.ready.discard(name)

    def _children_ok(self, ep: Obj) -> bool:
        uid = ep["metadata"].get("uid")
        for kind, child in expected_children(ep):
            inf = self.children.get(kind)
            if inf is None:
                continue  # kinds the bench does not watch
            obj = inf.objects.get(child)
            if obj is None or controller_uid(obj) != uid:
                return False
            if kind == "Service":
                have = (obj["metadata"].get("annotations") or {}).get(REV)
                if have != spec_rev(ep):
                    return False
        return True

    # -- waiting -----------------------------------------------------------------
    async def wait(self, pred: Callable[[], bool], within: float) -> bool:
        """Waits until ``pred()`` holds (re-checked on every change); False after
        ``within`` seconds."""
        deadline = self.clock() + within
        while not pred():
            left = deadline - self.clock()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return True

    def all_converged(self, names: set[str]) -> bool:
        return names <= self.converged

    def all_ready(self, names: set[str]) -> bool:
        return names <= self.ready

    def all_available(self, deployments: set[str]) -> bool:
        return deployments <= self.available

    def deployments_of(self, names: set[str]) -> set[str]:
        """The Deployments the operator must keep for the endpoints ``names``."""
        return {child for name in names if (ep := self.endpoints.objects.get(name))
                for kind, child in expected_children(ep) if kind == "Deployment"}

    def settled_at(self, deployments: Iterable[str], names: Iterable[str] = ()) -> float | None:
        """When the last of ``names`` converged and the last of ``deployments`` was
        first rolled out (None while one has not)."""
        try:
            return max([self.converged_at[n] for n in names]
                       + [self.available_at[d] for d in deployments])
        except (KeyError, ValueError):
            return None

    def expect_service_rev(self, name: str, rev: int) -> asyncio.Future[float]:
        """A future resolved with the time the Service ``name`` is seen at ``rev``.
        Register it before the change is made."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._service_waiters[(name, str(rev))] = fut
        return fut

    def snapshot(self) -> dict[str, Any]:
        return {"endpoints": len(self.endpoints.objects), "converged": len(self.converged),
                "ready": len(self.ready), "deploymentsAvailable": len(self.available),
                "relists": self.relists}
