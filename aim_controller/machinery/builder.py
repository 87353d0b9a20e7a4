"""Declaring what a controller watches, in one place (controller-runtime's builder).

A controller names its primary kind (:meth:`ControllerBuilder.for_`), the kinds
it controls (:meth:`~ControllerBuilder.owns`, optional ones included), kinds
whose events map to primary keys (:meth:`~ControllerBuilder.watches`), caches it
only reads (:meth:`~ControllerBuilder.reads`) and other sources
(:meth:`~ControllerBuilder.uses`). The builder gets the shared informers, adds
their indexes and event handlers, registers every kind with the REST mapper,
and :meth:`~ControllerBuilder.complete` hands back a :class:`Controller` whose
workers wait for exactly those sources: one controller never waits for
another's informers.

An optional owned kind (a CRD that may be installed later) is owned from the
moment its CRD is seen Established with the wanted version served, and no longer
once its CRD is deleted (or stops serving that version); see
:class:`ControllerBuilder` for what the controller may rely on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, overload

import structlog

from .controller import CacheSyncSource, Controller, ReconcileFunc
from .crds import crd_informer, crd_name, served_resource
from .handlers import (
    AtPriority,
    EventHandler,
    KubeObject,
    ResourceEventHandlerFuncs,
    enqueue_mapped,
    enqueue_object,
    enqueue_object_on_generation_change,
    enqueue_object_spec_first,
    enqueue_owner,
)
from .informer import InformerFactory, InformerLike
from .metrics import MachineryMetrics
from .reflector import Transform
from .resource import Resource
from .store import IndexFunc
from .workqueue import PRIORITY_DEFAULT, PRIORITY_LOW, RateLimitingQueue
from .writer import RESTMapper

log = structlog.get_logger(__name__)

EnqueuePolicy: TypeAlias = Callable[[RateLimitingQueue[str]], EventHandler]
"""How events of the primary kind become keys on the controller's queue."""

MapFunc: TypeAlias = Callable[[KubeObject], Iterable[str]]
"""A watched object -> the keys of the primary objects it concerns."""

OwnedKinds: TypeAlias = Mapping[str, tuple[Resource, InformerLike]]
"""Owned kind -> its resource and (label-selected) informer."""

OnServed: TypeAlias = Callable[[Resource, InformerLike], None]
OnGone: TypeAlias = Callable[[Resource], None]


def on_every_change(queue: RateLimitingQueue[str]) -> EventHandler:
    """Every add, update and delete enqueues the object (``EnqueueRequestForObject``)."""
    return enqueue_object(queue)


def on_generation_change(queue: RateLimitingQueue[str]) -> EventHandler:
    """Updates that keep ``metadata.generation`` are ignored (``GenerationChangedPredicate``):
    for a controller whose output is the object's own status."""
    return enqueue_object_on_generation_change(queue)


def spec_first(default: int = PRIORITY_DEFAULT, churn: int = PRIORITY_LOW) -> EnqueuePolicy:
    """Adds, deletes and spec changes at ``default``; updates that keep the generation
    (status, labels: often our own write echoing back) at ``churn``."""
    return lambda queue: enqueue_object_spec_first(queue, default, churn)


@dataclass(frozen=True)
class _Optional:
    """An owned kind waiting for its CRD."""

    resource: Resource
    label_selector: str | None
    priority: int


class ControllerBuilder:
    """One controller's watches, its queue, and the controller itself.

    Declare ``for_`` first, then any of ``owns``/``watches``/``reads``/``uses``,
    then ``complete`` once; nothing can be declared after ``complete``.

    Invariants:
    - every informer made here, the optional kinds' CRD informer and every
      ``uses`` source is a cache-sync source of the controller, and nothing
      else is: its workers start once its own caches have synced;
    - every resource declared here is in the REST mapper (an optional kind from
      the moment it is owned), so the controller can write what it watches;
    - a child event enqueues the key of its controller owner of the primary
      kind (group and kind matched, not version); the informers' stores all
      have the ``owner-uid`` index (the controller owner's UID);
    - an optional kind is owned (in :attr:`owned`, watched, mapped), and then
      the ``on_optional_served`` callbacks are called, exactly once, when its
      CRD (``<plural>.<group>``) is first seen Established with the wanted
      version served (and not being deleted);
    - such a kind stops being owned when its CRD is deleted, starts terminating or
      stops serving the version: it leaves :attr:`owned`, its informers are stopped
      and forgotten by the factory (the API they watched is gone: every user of them
      is done with them), then the ``on_optional_gone`` callbacks are called, once;
      the kind waits for its CRD again, so a re-installed CRD is followed as the
      first was;
    - optional kinds whose CRD is served when the controller starts are owned
      and synced before its first reconcile. Why that holds without a
      discovery request: the CRD handler is added in ``complete`` (after the
      callbacks are registered), an informer's handlers see its initial list
      before it reports synced, and a handler added to a started informer is
      replayed its store first; so once the CRD informer has synced, every CRD
      it listed has been seen, and the controller waits for those kinds'
      informers too. A kind installed later is owned at once, while its
      informer may still be listing.
    """

    def __init__(
        self,
        name: str,
        informers: InformerFactory,
        mapper: RESTMapper,
        *,
        metrics: MachineryMetrics | None = None,
        max_concurrent_reconciles: int = 1,
    ) -> None:
        self.name = name
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(name, metrics=metrics)
        self._informers = informers
        self._mapper = mapper
        self._metrics = metrics
        self._max_concurrent_reconciles = max_concurrent_reconciles
        self._primary: Resource | None = None
        self._sources: list[CacheSyncSource] = []
        self._owned: dict[str, tuple[Resource, InformerLike]] = {}
        self._pending: dict[str, _Optional] = {}  # CRD name -> optional kind not served yet
        self._late: list[InformerLike] = []  # informers of optional kinds, once served
        self._crds: InformerLike | None = None
        self._on_served: list[OnServed] = []
        self._on_gone: list[OnGone] = []
        self._served_optional: dict[str, _Optional] = {}  # CRD name -> optional kind owned
        self._stopping: set[asyncio.Task[None]] = set()
        self._late_gone = asyncio.Event()  # an informer left _late: stop waiting for it
        self._completed = False

    # -- declarations ----------------------------------------------------------
    def for_(
        self,
        resource: Resource,
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        enqueue: EnqueuePolicy = on_every_change,
    ) -> InformerLike:
        """The primary kind: the one whose keys the reconcile gets."""
        self._check_open()
        if self._primary is not None:
            raise ValueError(f"controller {self.name} already reconciles {self._primary.kind}")
        self._primary = resource
        inf = self._informer(resource, indexers=indexers)
        self._sources.append(inf)
        inf.add_event_handler(enqueue(self.queue))
        return inf

    @overload
    def owns(self, resource: Resource, *, label_selector: str | None = ...,
             priority: int = ..., optional: Literal[False] = ...) -> InformerLike: ...

    @overload
    def owns(self, resource: Resource, *, label_selector: str | None = ...,
             priority: int = ..., optional: bool) -> InformerLike | None: ...

    def owns(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        priority: int = PRIORITY_LOW,
        optional: bool = False,
    ) -> InformerLike | None:
        """A kind this controller creates and controls: its events enqueue the owner at
        ``priority`` (low by default: child status churn waits behind changes of intent).

        ``optional``: served only where its CRD is installed, maybe later; returns None
        and the kind joins :attr:`owned` once served (see the class invariants).
        """
        self._check_open()
        if resource.kind in self._owned or crd_name(resource) in self._pending:
            raise ValueError(f"controller {self.name} already owns {resource.kind}")
        if optional:
            self._primary_or_raise()
            if self._crds is None:
                self._crds = crd_informer(self._informers)
                self._sources.append(self._optional_kinds_synced)
            self._pending[crd_name(resource)] = _Optional(resource, label_selector, priority)
            return None
        inf = self._own(resource, label_selector, priority)
        self._sources.append(inf)
        return inf

    def watches(
        self,
        resource: Resource,
        map_fn: MapFunc,
        *,
        priority: int = PRIORITY_DEFAULT,
        indexers: Mapping[str, IndexFunc] | None = None,
        label_selector: str | None = None,
        all_namespaces: bool = False,
        transform: Transform | None = None,
    ) -> InformerLike:
        """Another kind whose events enqueue the primary keys ``map_fn`` returns (old and
        new object on update), at ``priority``.

        ``all_namespaces``: one informer across all namespaces even when the factory is
        restricted to some (e.g. Pods for a cluster-wide inventory).
        """
        inf = self.reads(resource, indexers=indexers, label_selector=label_selector,
                         all_namespaces=all_namespaces, transform=transform)
        inf.add_event_handler(enqueue_mapped(AtPriority(self.queue, priority), map_fn))
        return inf

    def reads(
        self,
        resource: Resource,
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        label_selector: str | None = None,
        all_namespaces: bool = False,
        transform: Transform | None = None,
    ) -> InformerLike:
        """A cache the reconcile reads but whose events trigger nothing."""
        self._check_open()
        inf = self._informer(resource, indexers=indexers, label_selector=label_selector,
                             all_namespaces=all_namespaces, transform=transform)
        self._sources.append(inf)
        return inf

    def uses(self, source: CacheSyncSource) -> None:
        """A source not made here (a view over shared informers, say) that the reconcile
        reads: the workers wait for it too. Its change notifications are its own."""
        self._check_open()
        self._sources.append(source)

    def on_optional_served(self, callback: OnServed) -> None:
        """Calls ``callback(resource, informer)`` when an optional kind becomes owned
        (after it is in :attr:`owned` and the mapper). Register before ``complete``."""
        self._check_open()
        self._on_served.append(callback)

    def on_optional_gone(self, callback: OnGone) -> None:
        """Calls ``callback(resource)`` when an optional kind stops being served (after
        it left :attr:`owned`). Register before ``complete``."""
        self._check_open()
        self._on_gone.append(callback)

    def complete(self, reconcile: ReconcileFunc) -> Controller:
        """The controller, waiting for this builder's sources only."""
        self._check_open()
        self._primary_or_raise()
        self._completed = True
        if self._crds is not None:
            # Added last, so the callbacks are all registered when a replay reports kinds.
            self._crds.add_event_handler(ResourceEventHandlerFuncs(
                self._crd_seen, lambda _old, new: self._crd_seen(new), self._crd_gone))
        return Controller(
            self.name, reconcile, self.queue,
            max_concurrent_reconciles=self._max_concurrent_reconciles,
            metrics=self._metrics, sources=list(self._sources),
        )

    # -- what the reconcile reads ---------------------------------------------
    @property
    def owned(self) -> OwnedKinds:
        """Owned kind -> (resource, informer): a live read-only view, growing when an
        optional kind becomes served."""
        return MappingProxyType(self._owned)

    def served(self, resource: Resource) -> bool:
        """Whether ``resource``'s kind is owned here (for an optional kind: served)."""
        owned = self._owned.get(resource.kind)
        return owned is not None and owned[0].api_version == resource.api_version

    @property
    def sources(self) -> list[CacheSyncSource]:
        """What the controller waits for before its workers start."""
        return list(self._sources)

    # -- internals -------------------------------------------------------------
    def _check_open(self) -> None:
        if self._completed:
            raise RuntimeError(f"controller {self.name} is complete; declare watches before")

    def _primary_or_raise(self) -> Resource:
        if self._primary is None:
            raise RuntimeError(f"controller {self.name}: declare for_() first")
        return self._primary

    def _informer(
        self,
        resource: Resource,
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        label_selector: str | None = None,
        all_namespaces: bool = False,
        transform: Transform | None = None,
    ) -> InformerLike:
        self._mapper.add(resource)
        if all_namespaces:
            return self._informers.informer(resource, None, indexers=indexers,
                                            label_selector=label_selector, transform=transform)
        return self._informers.for_resource(resource, indexers=indexers,
                                            label_selector=label_selector, transform=transform)

    def _own(self, resource: Resource, label_selector: str | None, priority: int) -> InformerLike:
        owner = self._primary_or_raise()
        inf = self._informer(resource, label_selector=label_selector)
        self._owned[resource.kind] = (resource, inf)
        inf.add_event_handler(enqueue_owner(
            AtPriority(self.queue, priority), owner.api_version, owner.kind,
            cluster_scoped_owner=not owner.namespaced))
        return inf

    def _crd_seen(self, crd: KubeObject) -> None:
        name = str((crd.get("metadata") or {}).get("name"))
        owned = self._served_optional.get(name)
        if owned is not None:
            if served_resource(crd, owned.resource) is None:
                self._crd_gone(crd)
            return
        want = self._pending.get(name)
        if want is None:
            return
        res = served_resource(crd, want.resource)
        if res is None:
            return
        del self._pending[name]
        self._served_optional[name] = want
        inf = self._own(res, want.label_selector, want.priority)
        self._late.append(inf)
        log.info("optional kind now served", controller=self.name, kind=res.kind,
                 api_version=res.api_version)
        for callback in self._on_served:
            callback(res, inf)

    def _crd_gone(self, crd: KubeObject) -> None:
        name = str((crd.get("metadata") or {}).get("name"))
        want = self._served_optional.pop(name, None)
        if want is None:
            return
        self._pending[name] = want
        res, inf = self._owned.pop(want.resource.kind)
        if inf in self._late:
            self._late.remove(inf)
            self._late_gone.set()
        # Its watch can only fail from now on: stop it (a handler must not await).
        gone = self._informers.forget(res)
        task = asyncio.get_running_loop().create_task(_stop_all(gone))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        log.info("optional kind no longer served", controller=self.name, kind=res.kind,
                 api_version=res.api_version)
        for callback in self._on_gone:
            callback(res)

    async def _optional_kinds_synced(self) -> bool:
        assert self._crds is not None
        await self._crds.wait_synced()
        # The CRD handler saw the whole initial list before the informer reported synced:
        # every optional kind served at start has its informer by now. One whose CRD goes
        # meanwhile is stopped and will never sync: it is waited for no longer.
        while waiting := [inf for inf in self._late if not inf.has_synced()]:
            self._late_gone.clear()
            tasks: list[asyncio.Task[Any]] = [asyncio.create_task(inf.wait_synced())
                                              for inf in waiting]
            tasks.append(asyncio.create_task(self._late_gone.wait()))
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
        return True


async def _stop_all(informers: Iterable[InformerLike]) -> None:
    await asyncio.gather(*(inf.stop() for inf in informers))


__all__ = [
    "ControllerBuilder",
    "EnqueuePolicy",
    "MapFunc",
    "OnGone",
    "OnServed",
    "OwnedKinds",
    "on_every_change",
    "on_generation_change",
    "spec_first",
]
