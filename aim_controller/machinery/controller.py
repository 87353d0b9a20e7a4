"""The worker loop: keys from a rate-limited queue into a reconcile function.

Semantics follow controller-runtime ``pkg/internal/controller``: N workers,
one key per worker at a time, errors retried with per-key exponential
backoff, ``Result`` for explicit requeues, the ``controller_runtime_*``
metrics, and a structlog context (controller, key, reconcile_id) on every
line logged during a reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

import structlog
from structlog.contextvars import bound_contextvars

from aim_controller.machinery.handlers import (
    EventHandler,
    ResourceEventHandlerFuncs,
    enqueue_mapped,
    enqueue_object,
    enqueue_owner,
    key_of,
    split_key,
)
from aim_controller.machinery.metrics import ControllerMetricsRecorder, MachineryMetrics
from aim_controller.machinery.workqueue import QueueShutDown, RateLimitingQueue

__all__ = [
    "CacheSyncSource",
    "Controller",
    "EventHandler",
    "HasSynced",
    "ReconcileObserver",
    "ResourceEventHandlerFuncs",
    "Result",
    "TerminalError",
    "WaitsForCacheSync",
    "enqueue_mapped",
    "enqueue_object",
    "enqueue_owner",
    "key_of",
    "split_key",
    "wait_for_cache_sync",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for besides "done".

    ``requeue_after > 0`` wins over ``requeue``: the key's backoff is reset and
    it comes back after that many seconds. ``requeue`` alone re-adds it
    rate-limited (backoff grows). ``None``/zero values mean "no requeue";
    returning ``None`` from reconcile is the same as ``Result()``.
    """

    requeue: bool = False
    requeue_after: float | None = None


class TerminalError(Exception):
    """A reconcile failure that retrying cannot fix: logged and counted, never requeued.

    The object is reconciled again when it (or a watched child) changes.
    """


ReconcileFunc: TypeAlias = Callable[[str], Awaitable[Result | None]]

ReconcileObserver: TypeAlias = Callable[[str, str], None]
"""``observer(key, outcome)`` after a reconcile finished; ``outcome`` is the
``controller_runtime_reconcile_total`` result label: ``success``, ``error``,
``requeue`` or ``requeue_after``."""


@runtime_checkable
class HasSynced(Protocol):
    """An informer-like source whose sync is polled."""

    def has_synced(self) -> bool: ...


@runtime_checkable
class WaitsForCacheSync(Protocol):
    """A source that can be awaited until synced; ``False`` means it failed."""

    def wait_for_cache_sync(self) -> Awaitable[bool | None]: ...


CacheSyncSource: TypeAlias = (
    WaitsForCacheSync
    | HasSynced
    | Callable[[], bool | Awaitable[bool | None]]
    | Awaitable[bool | None]
)
"""Something to wait on before starting workers: an informer-like object
(``wait_for_cache_sync()`` preferred over polling ``has_synced()``), a
callable returning a bool (polled) or an awaitable, or an awaitable. An
awaited ``False`` means the sync failed."""


async def wait_for_cache_sync(
    sources: Iterable[CacheSyncSource], *, poll_interval: float = 0.1
) -> bool:
    """Wait until every source has synced; False as soon as one reports failure.

    Polls boolean sources every ``poll_interval`` seconds, like client-go's
    ``WaitForCacheSync``.
    """

    async def poll(check: Callable[[], object]) -> bool:
        # Polling is the contract of has_synced(): sources need not expose an event.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(poll_interval)
        return True

    async def wait_one(source: CacheSyncSource) -> bool:
        if isinstance(source, WaitsForCacheSync):
            return await source.wait_for_cache_sync() is not False
        if isinstance(source, HasSynced):
            return await poll(source.has_synced)
        if callable(source):
            first = source()
            if inspect.isawaitable(first):
                return await first is not False
            return bool(first) or await poll(source)
        if inspect.isawaitable(source):
            return await source is not False
        raise TypeError(f"cannot wait for cache sync of {source!r}")

    results = await asyncio.gather(*(wait_one(s) for s in sources))
    return all(results)


class Controller:
    """Runs ``reconcile(key)`` for keys popped from ``queue`` on N worker tasks.

    Invariants:
    - at most ``max_concurrent_reconciles`` reconciles run at once, and never
      two for the same key (the queue guarantees it; each worker calls
      ``done`` exactly once per key it got);
    - after each reconcile exactly one of: error -> ``add_rate_limited``
      (unless :class:`TerminalError`); ``requeue_after`` -> ``forget`` +
      ``add_after``; ``requeue`` -> ``add_rate_limited``; otherwise ``forget``;
    - every log line emitted during a reconcile carries ``controller``,
      ``key``, ``namespace``, ``name`` and a fresh ``reconcile_id`` (structlog
      contextvars);
    - workers start only after every cache-sync source has synced: its own
      ``sources`` (what it watches and reads) plus any given to ``run``; ``stop``
      lets in-flight reconciles finish, starts no new ones, and returns when
      all workers have exited. A controller runs at most once.
    """

    def __init__(
        self,
        name: str,
        reconcile: ReconcileFunc,
        queue: RateLimitingQueue[str],
        *,
        max_concurrent_reconciles: int = 1,
        logger: Any = None,
        metrics: MachineryMetrics | None = None,
        cache_sync_timeout: float | None = 120.0,
        clock: Clock = time.monotonic,
        sources: Iterable[CacheSyncSource] = (),
    ) -> None:
        if max_concurrent_reconciles < 1:
            raise ValueError("max_concurrent_reconciles must be >= 1")
        self.name = name
        self.queue = queue
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self._reconcile = reconcile
        base_logger = structlog.get_logger(__name__) if logger is None else logger
        self._log: Any = base_logger.bind(controller=name)
        self._metrics: ControllerMetricsRecorder = (
            metrics.controller(name) if metrics is not None else ControllerMetricsRecorder()
        )
        self._cache_sync_timeout = cache_sync_timeout
        self.sources: tuple[CacheSyncSource, ...] = tuple(sources)
        self._clock = clock
        self._observers: list[ReconcileObserver] = []
        self._started = False
        self._stop_requested = asyncio.Event()
        self._finished = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def add_reconcile_observer(self, observer: ReconcileObserver) -> Callable[[], None]:
        """Call ``observer(key, outcome)`` after each reconcile; returns its removal.

        Called on the loop once the requeue decision is made and the metrics are
        recorded, before the key is marked done in the queue; never for a
        reconcile cut short by cancellation. An observer must not block; its
        exception is logged and changes nothing else.
        """
        self._observers.append(observer)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(observer)

        return remove

    async def run(self, wait_for: Iterable[CacheSyncSource] = ()) -> None:
        """Wait for caches (``sources`` and ``wait_for``), then run workers until
        :meth:`stop` (or cancellation).

        Raises ``TimeoutError`` if the caches do not sync within
        ``cache_sync_timeout`` and ``RuntimeError`` if a source reports failure.
        """
        if self._started:
            raise RuntimeError(f"controller {self.name} was already started")
        self._started = True
        workers: list[asyncio.Task[None]] = []
        try:
            self._log.info("starting controller")
            if not await self._wait_for_sync([*self.sources, *wait_for]):
                return
            self._log.info("starting workers", worker_count=self.max_concurrent_reconciles)
            self._metrics.set_max_concurrent_reconciles(self.max_concurrent_reconciles)
            workers = [
                asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                for i in range(self.max_concurrent_reconciles)
            ]
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._finished.set()
            self._log.info("all workers finished")

    async def stop(self) -> None:
        """Stop taking keys, let in-flight reconciles finish, wait for the workers to exit.

        Must not be awaited from inside a reconcile of this controller (it
        would wait for itself).
        """
        if not self._stop_requested.is_set():
            self._log.info("shutdown signal received, waiting for all workers to finish")
        self._stop_requested.set()
        await self.queue.shutdown_with_drain()
        if self._started:
            await self._finished.wait()

    async def _wait_for_sync(self, sources: list[CacheSyncSource]) -> bool:
        """True once synced, False if stopped first."""
        if not sources:
            return not self.stopping
        sync = asyncio.ensure_future(wait_for_cache_sync(sources))
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        try:
            done, _ = await asyncio.wait(
                {sync, stopped},
                timeout=self._cache_sync_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for fut in (sync, stopped):
                fut.cancel()
            await asyncio.gather(sync, stopped, return_exceptions=True)
        if sync in done:
            if not sync.result():
                raise RuntimeError(f"cache sync failed for controller {self.name}")
            return not self.stopping
        if stopped in done:
            return False
        raise TimeoutError(f"timed out waiting for cache to be synced for controller {self.name}")

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                # Keys still queued after stop are dropped: the controller is
                # level-triggered, so whoever runs next resyncs them anyway.
                if not self.stopping:
                    await self._reconcile_handler(key)
            finally:
                self.queue.done(key)

    async def _reconcile_handler(self, key: str) -> None:
        self._metrics.worker_active(1)
        start = self._clock()
        try:
            namespace, _, name = key.rpartition("/")
            with bound_contextvars(controller=self.name, key=key, namespace=namespace or None,
                                   name=name, reconcile_id=str(uuid.uuid4())):
                outcome = await self._reconcile_once(key)
            self._metrics.reconcile_finished(outcome, self._clock() - start)
            self._notify(key, outcome)
        finally:
            self._metrics.worker_active(-1)

    def _notify(self, key: str, outcome: str) -> None:
        for observer in list(self._observers):
            try:
                observer(key, outcome)
            except Exception:
                self._log.exception("reconcile observer failed", key=key)

    async def _reconcile_once(self, key: str) -> str:
        """Run reconcile and requeue as it asks; return the reconcile_total result label."""
        try:
            result = await self._reconcile(key)
        except Exception as err:
            terminal = isinstance(err, TerminalError)
            if not terminal:
                self.queue.add_rate_limited(key)
            self._metrics.reconcile_error(terminal=terminal)
            self._log.error(
                "reconciler error",
                exc_info=True,
                terminal=terminal,
                requeues=self.queue.num_requeues(key),
            )
            return "error"
        result = result or Result()
        if result.requeue_after is not None and result.requeue_after > 0:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
            return "requeue_after"
        if result.requeue:
            self.queue.add_rate_limited(key)
            return "requeue"
        self.queue.forget(key)
        return "success"
