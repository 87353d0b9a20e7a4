"""Kubernetes Events for the objects a controller manages (core/v1, so that
``kubectl describe`` and ``kubectl get events`` show them).

Like client-go's recorder, a repeat of the same (object, type, reason,
message) updates the count of the existing Event instead of creating a new
one. Recording never fails a reconcile: errors are logged and dropped.
:meth:`EventRecorder.emit` does not even wait: like client-go's broadcaster,
a background task writes the Events in order, so a reconcile never holds a
worker for them; when the backlog is full, new Events are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import secrets
from collections import OrderedDict
from typing import Final

import structlog

from .kubeclient import ApiException
from .resource import Obj
from .writer import ObjectWriter

log = structlog.get_logger(__name__)

NORMAL: Final = "Normal"
WARNING: Final = "Warning"
_MAX_MESSAGE = 1024


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Records Events about objects, aggregating repeats by count.

    Invariant: at most ``cache_size`` recent (object, reason, message) keys are
    remembered; an evicted key simply starts a new Event.
    """

    def __init__(self, writer: ObjectWriter, component: str, instance: str,
                 cache_size: int = 4096, backlog: int = 1000) -> None:
        self._writer = writer
        self._component = component
        self._instance = instance
        self._cache_size = cache_size
        self._seen: OrderedDict[tuple[str, str, str, str], tuple[Obj, int]] = OrderedDict()
        self._backlog: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(backlog)
        self._drainer: asyncio.Task[None] | None = None

    def emit(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Queues an Event for the background writer (from the event loop's thread)."""
        if self._drainer is None or self._drainer.done():
            # A fresh context: the drainer outlives the reconcile that started it,
            # whose log fields (key, reconcile_id) must not stick to later lines.
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context())
        try:
            self._backlog.put_nowait((obj, type_, reason, message))
        except asyncio.QueueFull:
            log.warning("event dropped: backlog full", reason=reason)

    async def flush(self) -> None:
        """Waits until every queued Event was written (or dropped)."""
        await self._backlog.join()

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer

    async def _drain(self) -> None:
        while True:
            item = await self._backlog.get()
            try:
                await self.event(*item)
            finally:
                self._backlog.task_done()

    async def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        message = message[:_MAX_MESSAGE]
        key = (str(meta.get("uid", "")), type_, reason, message)
        now = _now()
        try:
            if key in self._seen:
                ev, count = self._seen.pop(key)
                count += 1
                await self._writer.patch_merge(ev, {"count": count, "lastTimestamp": now})
                self._seen[key] = (ev, count)
                return
            ev = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {
                    "name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}",
                    "namespace": namespace,
                },
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                    "name": meta.get("name"), "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_, "reason": reason, "message": message,
                "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": self._component},
                "reportingComponent": self._component,
                "reportingInstance": self._instance,
            }
            await self._writer.create(ev)
            # Only what a later count patch addresses: the whole Event, kept for each of
            # the cache_size keys, cost a few KB per object the operator manages.
            self._seen[key] = ({"apiVersion": "v1", "kind": "Event",
                                "metadata": ev["metadata"]}, 1)
            while len(self._seen) > self._cache_size:
                self._seen.popitem(last=False)
        except (ApiException, OSError, TimeoutError) as e:
            log.warning("event not recorded", reason=reason, error=str(e))
