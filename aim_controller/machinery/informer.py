"""Informers: a reflector, its indexed cache and the handlers it notifies.

client-go ``SharedIndexInformer`` without the threads: the reflector applies
each change to the store and then calls every handler synchronously on the
event loop. Handlers must only enqueue (never block or await); one that raises
is logged and skipped. Readers get the cache through :class:`ReadOnlyStore`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import structlog

from aim_controller.machinery.handlers import EventHandler, KubeObject, split_key
from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.reflector import (
    DEFAULT_STALL_TIMEOUT,
    BackoffManager,
    Reflector,
    ReflectorStats,
    Transform,
    strip_managed_fields,
)
from aim_controller.machinery.resource import Resource
from aim_controller.machinery.store import DEFAULT_INDEXERS, Indexer, IndexFunc, ReadOnlyStore


class InformerLike(Protocol):
    """What controllers and the entry point need from an informer of any shape."""

    @property
    def store(self) -> ReadOnlyStore: ...

    def add_event_handler(self, handler: EventHandler) -> None: ...

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None: ...

    def has_synced(self) -> bool: ...

    async def wait_synced(self) -> None: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Informer:
    """One resource (in one namespace, or all) mirrored into an :class:`Indexer`.

    Invariants:
    - the store is written only by this informer's reflector, on the loop;
    - every handler sees every change exactly once, in store order; a handler
      added after the informer started is first replayed the current store
      as adds (client-go semantics), so it never misses an object;
    - ``has_synced()`` is True once the first full list has been delivered;
    - with ``resync_period``, every ``resync_period`` seconds each handler gets
      ``on_update(obj, obj)`` for every cached object (after sync only);
    - ``start()`` is idempotent; ``stop()`` cancels and awaits everything;
    - the store always has the ``DEFAULT_INDEXERS`` (namespace, controller
      owner UID) besides the ones given.
    """

    def __init__(
        self,
        api_client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        page_size: int = 500,
        watch_timeout: tuple[float, float] = (300.0, 600.0),
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        backoff: BackoffManager | None = None,
        metrics: MachineryMetrics | None = None,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self._indexer = Indexer({**DEFAULT_INDEXERS, **(indexers or {})})
        self._handlers: list[EventHandler] = []
        self.reflector = Reflector(
            api_client, resource, self._indexer, self._handlers,
            namespace=namespace, label_selector=label_selector, field_selector=field_selector,
            transform=transform, page_size=page_size, watch_timeout=watch_timeout,
            stall_timeout=stall_timeout, backoff=backoff,
            metrics=metrics.reflector(self.name) if metrics is not None else None,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._log = structlog.get_logger(__name__).bind(
            resource=str(resource), namespace=namespace or "*"
        )

    def __repr__(self) -> str:
        return f"Informer({self.resource}, namespace={self.namespace!r})"

    @property
    def name(self) -> str:
        """``pods`` or ``<namespace>/configmaps``: its reflector's name in metrics."""
        return f"{self.namespace}/{self.resource}" if self.namespace else str(self.resource)

    @property
    def store(self) -> ReadOnlyStore:
        return self._indexer

    @property
    def stats(self) -> ReflectorStats:
        return self.reflector.stats

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self._indexer.add_indexers(indexers)

    def add_event_handler(self, handler: EventHandler) -> None:
        if self.started:
            for obj in self._indexer.list():
                try:
                    handler.on_add(obj)
                except Exception:
                    self._log.exception("event handler failed on replay")
        self._handlers.append(handler)

    def has_synced(self) -> bool:
        return self.reflector.has_synced()

    async def wait_synced(self) -> None:
        await self.reflector.wait_synced()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await wait_for_cache_sync(self, timeout=timeout)

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> None:
        """Runs until cancelled (``start()`` runs this as a task)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.reflector.run())
            if self.resync_period:
                tg.create_task(self._resync_loop(self.resync_period))

    def start(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self.run(), name=repr(self)))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _resync_loop(self, period: float) -> None:
        await self.wait_synced()
        while True:
            await asyncio.sleep(period)
            for obj in self._indexer.list():
                for h in list(self._handlers):
                    try:
                        h.on_update(obj, obj)
                    except Exception:
                        self._log.exception("event handler failed on resync")


class MultiNamespaceStore:
    """A read-only view over one store per namespace.

    Invariants: namespaces are disjoint, so a key lives in at most one store
    (the one named by its namespace part); results concatenate per-namespace
    results in the order the namespaces were given.
    """

    def __init__(self, stores: Mapping[str, ReadOnlyStore]) -> None:
        self._stores = dict(stores)

    def get(self, key: str) -> KubeObject | None:
        ns, _ = split_key(key)
        store = self._stores.get(ns or "")
        return store.get(key) if store is not None else None

    def list(self) -> builtins.list[KubeObject]:
        return [o for s in self._stores.values() for o in s.list()]

    def list_keys(self) -> builtins.list[str]:
        return [k for s in self._stores.values() for k in s.list_keys()]

    def by_index(self, index_name: str, value: str) -> builtins.list[KubeObject]:
        return [o for s in self._stores.values() for o in s.by_index(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        return [k for s in self._stores.values() for k in s.index_keys(index_name, value)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        return sum(len(s) for s in self._stores.values())


class MultiNamespaceInformer:
    """One namespaced resource watched in several namespaces, behind one facade.

    For an operator restricted to a set of namespaces (``--namespace`` given
    more than once): one :class:`Informer` per namespace (RBAC may allow only
    those), one merged read-only store, handlers and indexers fanned out to
    all. Synced when every member is.
    """

    def __init__(self, informers: Iterable[Informer]) -> None:
        self.informers = list(informers)
        if not self.informers:
            raise ValueError("MultiNamespaceInformer needs at least one informer")
        stores: dict[str, ReadOnlyStore] = {}
        for inf in self.informers:
            if not inf.namespace or inf.namespace in stores:
                raise ValueError("member informers must each watch one distinct namespace")
            stores[inf.namespace] = inf.store
        self._store = MultiNamespaceStore(stores)

    @property
    def store(self) -> ReadOnlyStore:
        return self._store

    def add_event_handler(self, handler: EventHandler) -> None:
        for inf in self.informers:
            inf.add_event_handler(handler)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        for inf in self.informers:
            inf.add_indexers(indexers)

    def has_synced(self) -> bool:
        return all(inf.has_synced() for inf in self.informers)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers))

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await wait_for_cache_sync(self, timeout=timeout)

    def start(self) -> None:
        for inf in self.informers:
            inf.start()

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self.informers))


async def wait_for_cache_sync(
    *informers: InformerLike, timeout: float | None = None  # noqa: ASYNC109 - client-go's shape
) -> bool:
    """True once every informer has synced; False if ``timeout`` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(inf.wait_synced() for inf in informers))
    except TimeoutError:
        return False
    return True


class InformerFactory:
    """Shared informers: at most one :class:`Informer` per (resource, namespace).

    Several controllers asking for the same resource share one watch and one
    cache (client-go ``SharedInformerFactory``). ``namespaces`` restricts
    namespaced resources for :meth:`for_resource`: ``None`` means all
    namespaces. Informers made after ``start()`` are started at once.

    Invariants: a (resource, namespace) pair maps to one informer for the
    factory's life; asking again with different selectors or another
    transform (``None``: the factory's) is an error (they would silently share
    a cache filtered or cut down for someone else). Every informer's watches
    are dropped and resumed after ``stall_timeout`` seconds without an event
    or bookmark (see :class:`Reflector`), counted in ``metrics``.
    """

    def __init__(
        self,
        api_client: KubeClient,
        *,
        namespaces: Sequence[str] | None = None,
        transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        watch_timeout: tuple[float, float] = (300.0, 600.0),
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        metrics: MachineryMetrics | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespaces = list(dict.fromkeys(namespaces)) if namespaces else None
        self.transform = transform
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.stall_timeout = stall_timeout
        self.metrics = metrics
        self._informers: dict[tuple[Resource, str | None], Informer] = {}
        self._started = False

    def informer(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Transform | None = None,
    ) -> Informer:
        """The shared informer of ``resource`` in ``namespace`` (``None``: all namespaces).

        ``transform`` replaces the factory's for this informer, e.g. to keep a sliver of
        large objects; every ask must name the same one.
        """
        if not resource.namespaced:
            namespace = None
        key = (resource, namespace)
        transform = transform or self.transform
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(
                self.api_client, resource, namespace=namespace,
                label_selector=label_selector, field_selector=field_selector,
                transform=transform, resync_period=self.resync_period,
                indexers=indexers, watch_timeout=self.watch_timeout,
                stall_timeout=self.stall_timeout, metrics=self.metrics,
            )
            self._informers[key] = inf
            if self._started:
                inf.start()
            return inf
        if (inf.label_selector, inf.field_selector) != (label_selector, field_selector):
            raise ValueError(f"{inf!r} already exists with other selectors")
        if inf.reflector.transform is not transform:
            raise ValueError(f"{inf!r} already exists with another transform")
        if indexers:
            inf.add_indexers(indexers)
        return inf

    def for_resource(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Transform | None = None,
    ) -> Informer | MultiNamespaceInformer:
        """The informer for ``resource`` across the factory's namespaces."""

        def one(namespace: str | None) -> Informer:
            return self.informer(
                resource, namespace, label_selector=label_selector,
                field_selector=field_selector, indexers=indexers, transform=transform,
            )

        if not resource.namespaced or self.namespaces is None:
            return one(None)
        if len(self.namespaces) == 1:
            return one(self.namespaces[0])
        return MultiNamespaceInformer(one(ns) for ns in self.namespaces)

    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def forget(self, resource: Resource) -> list[Informer]:
        """Drops every informer of ``resource`` (any namespace), e.g. when its API is no
        longer served; the caller stops them. A later ask makes a new one."""
        gone = [k for k in self._informers if k[0] == resource]
        return [self._informers.pop(k) for k in gone]

    def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await wait_for_cache_sync(*self._informers.values(), timeout=timeout)
