"""The reflector: keeps a :class:`Store` in step with the API server by list + watch.

Semantics follow client-go ``tools/cache`` ``Reflector`` (with the
``DeltaFIFO``/shared-informer delivery folded in, since everything runs on one
event loop): list, then watch from the list's resourceVersion; resume a watch
that closed cleanly from the last resourceVersion seen (events and bookmarks);
on ``410 Gone`` relist and deliver the difference against the store. Beyond
client-go: a watch that delivers nothing, not even a bookmark, for
``stall_timeout`` is dropped and resumed the same way (a connection a proxy or
a dead peer left open but silent would otherwise hide every change until the
watch's own timeout, minutes later).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from aim_controller.machinery.compact import share_strings
from aim_controller.machinery.handlers import EventHandler, KubeObject, key_of
from aim_controller.machinery.kubeclient import ApiException, KubeClient
from aim_controller.machinery.metrics import ReflectorMetricsRecorder
from aim_controller.machinery.resource import (
    Obj,
    ObjectList,
    Resource,
    WatchEvent,
    list_page,
    watch_objects,
)
from aim_controller.machinery.store import Store

Transform = Callable[[Obj], Obj]
"""Applied to every object before it enters the store; may mutate and return its argument."""

LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
YIELD_EVERY: Final = 500  # deliveries between yields to the loop during a big relist
# kube-apiserver's watch cache sends each watcher that allows them a bookmark about
# once a minute, so a healthy watch is never silent longer than that.
APISERVER_BOOKMARK_INTERVAL: Final = 60.0
# Two missed bookmarks, plus slack for jitter and a busy server.
DEFAULT_STALL_TIMEOUT: Final = 2.5 * APISERVER_BOOKMARK_INTERVAL


def strip_managed_fields(obj: Obj) -> Obj:
    """Drops ``metadata.managedFields`` and kubectl's last-applied annotation.

    Both are bookkeeping for writers, often the bulk of an object's size, and
    never read by a level-triggered reconciler.
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    return obj


def resource_version_of(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass(frozen=True)
class Delta:
    """One change to deliver: ``add`` (new only), ``update`` (old and new), ``delete`` (old only:
    the last state the store knew)."""

    type: Literal["add", "update", "delete"]
    old: KubeObject | None
    new: KubeObject | None


def diff_relist(current: Mapping[str, KubeObject], listed: Mapping[str, KubeObject]) -> list[Delta]:
    """What a relist changed, store content ``current`` against list ``listed`` (both by key).

    Adds for new keys, updates for keys whose resourceVersion differs, deletes
    (carrying the last known state, since the real final state was missed)
    for keys no longer listed. Adds and updates come in ``listed`` order,
    then deletes in ``current`` order. A name deleted and recreated while we
    were not watching is an update, as in client-go (compare UIDs if it matters).
    """
    deltas: list[Delta] = []
    for key, new in listed.items():
        old = current.get(key)
        if old is None:
            deltas.append(Delta("add", None, new))
        elif resource_version_of(old) != resource_version_of(new):
            deltas.append(Delta("update", old, new))
    deltas.extend(Delta("delete", old, None) for key, old in current.items() if key not in listed)
    return deltas


class BackoffManager:
    """Exponential backoff with jitter that forgets after a healthy period.

    client-go's ``exponentialBackoffManagerImpl``: each ``next()`` returns the
    current base delay stretched by up to ``jitter`` (so in
    ``[base, base * (1 + jitter))``), capped at ``cap``, then multiplies the base
    by ``factor``. If ``reset_after`` seconds passed since the previous
    ``next()``, the base starts over at ``initial`` first.
    """

    def __init__(
        self,
        initial: float = 0.8,
        factor: float = 2.0,
        cap: float = 30.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.factor, self.cap = initial, factor, cap
        self.jitter, self.reset_after = jitter, reset_after
        self._clock, self._rand = clock, rand
        self._base = initial
        self._last: float | None = None

    def next(self) -> float:
        now = self._clock()
        if self._last is not None and now - self._last > self.reset_after:
            self._base = self.initial
        self._last = now
        delay = min(self.cap, self._base * (1 + self.jitter * self._rand()))
        self._base = min(self.cap, self._base * self.factor)
        return delay

    def reset(self) -> None:
        self._base = self.initial
        self._last = None


@dataclass
class ReflectorStats:
    """Counters for tests and debugging (attempts count requests sent, not successes)."""

    list_attempts: int = 0
    lists: int = 0  # completed lists (initial + relists)
    watch_attempts: int = 0
    expired: int = 0  # 410 Gone seen (list or watch)
    errors: int = 0
    events: int = 0
    stalls: int = 0  # watches dropped after stall_timeout without an event or bookmark


def _is_gone(exc: BaseException) -> bool:
    if not isinstance(exc, ApiException):
        return False
    # 410 is the contract; older servers sent a 500 Status saying "too old resource version".
    return exc.status == 410 or "too old resource version" in str(exc.body or "").lower()


def _is_too_large_rv(exc: BaseException) -> bool:
    # The watch cache is behind the RV we asked for (e.g. after an API server restart).
    return isinstance(exc, ApiException) and "too large resource version" in str(
        exc.body or ""
    ).lower()


def _is_transient(exc: BaseException) -> bool:
    """Errors after which a watch may be retried from the same resourceVersion."""
    if isinstance(exc, ApiException):
        return exc.status == 429 or (exc.status or 0) >= 500
    # TransportError (our HTTP client's) is an OSError.
    return isinstance(exc, OSError | TimeoutError)


class _ShortWatchError(Exception):
    """A watch the server closed at once with no events: treated as an error (backoff)."""


class Reflector:
    """Mirrors one resource (optionally one namespace, selectors) into ``store``.

    Invariants (on the event loop, between awaits):
    - after the first list, ``store`` holds exactly the objects of the
      collection as of ``last_resource_version``, transformed, with their keys and
      short strings shared (:func:`share_strings`: equal strings are one object;
      the parts of a new version equal to the version it replaces are that
      version's: safe, as readers never modify cached objects);
    - every change applied to the store is then delivered to each of
      ``handlers`` (the live sequence, read at delivery time) exactly once, in
      the order applied: ``on_add``/``on_update``/``on_delete``; a handler's
      exception is logged and does not affect other handlers or the reflector;
    - ``has_synced`` turns True once the first list has been delivered, and stays;
    - after an error, the next request waits a backoff: ``watch_backoff``
      before retrying a watch from the same resourceVersion (transport
      errors, 429, 5xx), ``backoff`` before a relist (any other failure, or
      410); a watch that the server closes on its timeout is resumed at once;
    - a watch that delivers nothing (no event, no bookmark) for ``stall_timeout``
      seconds is closed, counted (``stats.stalls``, ``metrics.stalled_watch()``)
      and resumed at once from ``last_resource_version`` (no relist: only a 410
      relists). ``None`` disables it. Set it above the server's bookmark interval
      (:data:`APISERVER_BOOKMARK_INTERVAL`), or idle watches are cycled needlessly.
    """

    def __init__(
        self,
        api: KubeClient,
        resource: Resource,
        store: Store,
        handlers: Sequence[EventHandler],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = strip_managed_fields,
        page_size: int = 500,
        watch_timeout: tuple[float, float] = (300.0, 600.0),
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        backoff: BackoffManager | None = None,
        metrics: ReflectorMetricsRecorder | None = None,
    ) -> None:
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource} is cluster-scoped; cannot watch namespace {namespace!r}")
        self.api = api
        self.resource = resource
        self.store = store
        self.handlers = handlers
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.stall_timeout = stall_timeout
        self.metrics = metrics or ReflectorMetricsRecorder()
        # Two managers: a streak of failed watch retries while the server is
        # down must not delay the relist it needs once it answers again (410).
        self.backoff = backoff or BackoffManager()
        self.watch_backoff = copy.copy(self.backoff)
        self.watch_backoff.reset()
        self.stats = ReflectorStats()
        self._last_rv = ""  # last RV seen (list, event or bookmark): where a watch resumes
        self._last_sync_rv = ""  # RV of the last completed list
        self._rv_unavailable = False  # next list must be a quorum read
        self._synced = asyncio.Event()
        self._log = structlog.get_logger(__name__).bind(
            resource=str(resource), namespace=namespace or "*"
        )

    @property
    def last_resource_version(self) -> str:
        return self._last_rv

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # -- main loop -------------------------------------------------------------
    async def run(self) -> None:
        """List and watch until cancelled; never returns otherwise."""
        while True:
            try:
                await self._list_and_watch()
            except Exception as e:  # the loop must outlive any failure
                self.stats.errors += 1
                self._log.warning("list/watch failed", error=_describe(e))
            # Also after a 410: relisting is expensive, never do it in a tight loop.
            await asyncio.sleep(self.backoff.next())

    async def _list_and_watch(self) -> None:
        await self._list()
        while True:
            try:
                await self._watch()
            except ApiException as e:
                if _is_gone(e):
                    self.stats.expired += 1
                    self._rv_unavailable = True
                    self._log.info("watch expired; relisting", resource_version=self._last_rv)
                    return
                if not _is_transient(e):
                    raise
                await self._watch_error(e)
            except _ShortWatchError as e:
                await self._watch_error(e)
            except (OSError, TimeoutError) as e:
                await self._watch_error(e)

    async def _watch_error(self, e: Exception) -> None:
        # The API server may be down or overloaded: retry the watch from the
        # same RV after a backoff (a relist would cost more and gain nothing).
        self.stats.errors += 1
        delay = self.watch_backoff.next()
        self._log.info("watch failed; retrying", error=_describe(e), delay=round(delay, 2))
        await asyncio.sleep(delay)

    # -- list --------------------------------------------------------------------
    def _list_params(self) -> tuple[str | None, str | None]:
        if self._rv_unavailable or not self._last_sync_rv:
            # No resourceVersion: a consistent read, which honours limit/continue.
            # Not "0": kube-apiserver (checked on v1.36) answers resourceVersion=0
            # from its watch cache in one response whatever the limit.
            return None, None
        # Never back in time behind what the store already reflects; an RV other
        # than "0" with NotOlderThan is paged too (checked on v1.36).
        return self._last_sync_rv, "NotOlderThan"

    async def _list_once(
        self, rv: str | None, match: str | None
    ) -> tuple[dict[str, KubeObject], str]:
        """One list, page by page, each page transformed before the next is requested:
        only one page of whole objects is alive at a time (30,000 pods decoded at once
        are over a GB, and the freed memory stays fragmented around the slim ones)."""
        self.stats.list_attempts += 1
        listed: dict[str, KubeObject] = {}
        list_rv, token = "", ""
        while True:
            try:
                page = await list_page(
                    self.api, self.resource, namespace=self.namespace,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                    limit=self.page_size, continue_token=token or None,
                    # The server rejects them with continue; later pages share the first's snapshot.
                    resource_version=None if token else rv,
                    resource_version_match=None if token else match,
                )
            except ApiException as e:
                if not (token and _is_gone(e)):
                    raise
                # The continue token expired (its snapshot compacted) mid-list: as
                # client-go's pager, one whole unpaged list at the requested version.
                self.stats.list_attempts += 1
                self._log.info("continue token expired; listing whole", error=_describe(e))
                page = await list_page(
                    self.api, self.resource, namespace=self.namespace,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                    resource_version=rv, resource_version_match=match,
                )
                return self._prepared(page.items), page.resource_version
            listed.update(self._prepared(page.items))
            page.items.clear()  # drop the whole objects before the next page arrives
            list_rv = page.resource_version or list_rv
            token = page.continue_token
            if not token:
                return listed, list_rv

    async def _list(self) -> None:
        rv, match = self._list_params()
        try:
            listed, list_rv = await self._list_once(rv, match)
        except ApiException as e:
            if not (_is_gone(e) or _is_too_large_rv(e)):
                raise
            # RV compacted away or ahead of this server's cache: restart as a quorum read.
            self.stats.expired += int(_is_gone(e))
            self._rv_unavailable = True
            self._log.info("list expired; relisting from etcd", error=_describe(e))
            listed, list_rv = await self._list_once(None, None)
        self._rv_unavailable = False
        await self._replace(listed, list_rv)

    def _prepared(self, items: list[Obj]) -> dict[str, KubeObject]:
        return dict(self._prepare(raw) for raw in items)

    async def _apply_list(self, result: ObjectList) -> None:
        """Delivers a whole list (as one response) as :meth:`_list` delivers a paged one."""
        await self._replace(self._prepared(result.items), result.resource_version)

    async def _replace(self, listed: dict[str, KubeObject], resource_version: str) -> None:
        """The store becomes ``listed`` (transformed, by key); the difference is delivered."""
        deltas = diff_relist(self.store.items(), listed)
        self.store.replace(listed.values(), resource_version)
        self._last_rv = self._last_sync_rv = resource_version
        self.stats.lists += 1
        self._log.debug("listed", count=len(listed), changes=len(deltas),
                        resource_version=resource_version)
        # Handlers added while we yield below were replayed the (already
        # replaced) store; keep them off the rest of this batch.
        handlers = list(self.handlers)
        for i, d in enumerate(deltas, 1):
            self._deliver(d, handlers)
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._synced.set()

    # -- watch -------------------------------------------------------------------
    async def _watch(self) -> None:
        lo, hi = self.watch_timeout
        timeout = max(1, int(random.uniform(lo, hi)))
        self.stats.watch_attempts += 1
        started = time.monotonic()
        seen = 0
        stream = watch_objects(
            self.api, self.resource, namespace=self.namespace,
            label_selector=self.label_selector, field_selector=self.field_selector,
            resource_version=self._last_rv, timeout_seconds=timeout,
        )
        stall = self.stall_timeout
        loop = asyncio.get_running_loop()
        # One deadline, pushed back by every event and bookmark (and first armed before
        # the request, so a server that never answers counts as a stall too).
        deadline = asyncio.timeout(stall)
        async with contextlib.aclosing(stream):
            try:
                async with deadline:
                    async for ev in stream:
                        seen += 1
                        self._handle(ev)
                        if stall is not None:
                            deadline.reschedule(loop.time() + stall)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the client's own timeout: a transport error
                self._stalled(seen)
                return
        # client-go's "very short watch": closed at once with nothing in it
        # means something is wrong; back off instead of spinning.
        if seen == 0 and time.monotonic() - started < min(1.0, lo / 2):
            raise _ShortWatchError("watch closed immediately without events")

    def _stalled(self, seen: int) -> None:
        self.stats.stalls += 1
        self.metrics.stalled_watch()
        self._log.warning("watch stalled; resuming", idle_seconds=self.stall_timeout,
                          events=seen, resource_version=self._last_rv)

    def _handle(self, ev: WatchEvent) -> None:
        self.stats.events += 1
        if ev.type == "BOOKMARK":
            self._last_rv = resource_version_of(ev.object) or self._last_rv
            return
        key, obj = self._prepare(ev.object)
        if ev.type in ("ADDED", "MODIFIED"):
            old = self.store.add(obj)
            self._deliver(Delta("add", None, obj) if old is None else Delta("update", old, obj))
        elif ev.type == "DELETED":
            self.store.delete(key)
            # The event carries the object's final state: better than our last.
            self._deliver(Delta("delete", obj, None))
        else:
            self._log.warning("unknown watch event type", type=ev.type, key=key)
            return
        self._last_rv = resource_version_of(obj) or self._last_rv

    # -- helpers -----------------------------------------------------------------
    def _prepare(self, obj: Obj) -> tuple[str, KubeObject]:
        """The object's key, and the object as the store keeps it."""
        prepared = self.transform(obj) if self.transform is not None else obj
        key = key_of(prepared)
        # The cached version lends its unchanged parts (an update, a relist): cheaper
        # than sharing the strings of the whole object again.
        result: KubeObject = share_strings(prepared, self.store.get(key))
        return key, result

    def _deliver(self, d: Delta, handlers: Sequence[EventHandler] | None = None) -> None:
        for h in list(self.handlers) if handlers is None else handlers:
            try:
                if d.type == "add":
                    assert d.new is not None
                    h.on_add(d.new)
                elif d.type == "update":
                    assert d.old is not None and d.new is not None
                    h.on_update(d.old, d.new)
                else:
                    assert d.old is not None
                    h.on_delete(d.old)
            except Exception:
                obj = d.new if d.new is not None else d.old
                self._log.exception("event handler failed", delta=d.type,
                                    key=_safe_key(obj))


def _safe_key(obj: KubeObject | None) -> str:
    try:
        return key_of(obj) if obj is not None else "?"
    except ValueError:
        return "?"


def _describe(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"ApiException({e.status}, {e.reason})"
    return f"{type(e).__name__}: {e}"

