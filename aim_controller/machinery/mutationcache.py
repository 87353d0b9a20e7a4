"""Read-your-writes over an informer cache (client-go ``tools/cache.MutationCache``).

A worker that just wrote an object gets the server's answer at once, but the
informer sees the change only when its watch event arrives. A reconcile that
runs in between (triggered by another object) would read the older copy and
redo work already done: apply a child again, rewrite a status, emit a second
Event. The mutation cache remembers what this process wrote and serves it
until the informer has caught up.

Invariants:
- ``get(key)`` returns the informer's object unless a remembered write of the
  *same object* (same UID) carries a newer ``resourceVersion``; it never
  returns an object the informer does not have (a deleted object stays
  deleted, so nothing is recreated from memory);
- resourceVersions are compared as integers, as client-go's
  ``NewIntegerResourceVersionMutationCache`` does (etcd revisions); a version
  that is not an integer is never remembered;
- an entry is dropped as soon as the informer delivers that version or a
  newer one, or deletes the object, so memory stays bounded by the writes in
  flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .handlers import KubeObject, ResourceEventHandlerFuncs, key_of
from .informer import InformerLike


def _rv(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


def _uid(obj: Mapping[str, Any]) -> object:
    return (obj.get("metadata") or {}).get("uid")


class MutationCache:
    """An informer's store with this process's own recent writes laid over it."""

    def __init__(self, informer: InformerLike) -> None:
        self._informer = informer
        self._written: dict[str, KubeObject] = {}
        informer.add_event_handler(ResourceEventHandlerFuncs(
            self._observed, lambda _old, new: self._observed(new), self._deleted))

    def mutated(self, obj: KubeObject) -> None:
        """Remember ``obj`` as the server returned it from a write."""
        rv = _rv(obj)
        if rv is None:
            return
        key = key_of(obj)
        held = self._written.get(key)
        if held is not None and (_rv(held) or 0) >= rv:
            return
        cached = self._informer.store.get(key)
        if cached is not None and (_rv(cached) or 0) >= rv:
            return
        self._written[key] = obj

    def get(self, key: str) -> KubeObject | None:
        cached = self._informer.store.get(key)
        if cached is None or not self._written:
            return cached
        return self._newest(cached)

    def by_index(self, index_name: str, value: str) -> list[KubeObject]:
        """The store's index hits, each as :meth:`get` would return it.

        The hits are the informer's: an own write that changed the indexed value
        counts once the informer has it (as with :meth:`get`, memory never adds an
        object the informer does not have).
        """
        out = self._informer.store.by_index(index_name, value)
        if not self._written:
            return out
        return [self._newest(obj) for obj in out]

    def _newest(self, cached: KubeObject) -> KubeObject:
        held = self._written.get(key_of(cached))
        if held is None or _uid(held) != _uid(cached) or (_rv(held) or 0) <= (_rv(cached) or 0):
            return cached
        return held

    def __len__(self) -> int:
        return len(self._written)

    def _observed(self, obj: KubeObject) -> None:
        if not self._written:
            return
        key = key_of(obj)
        held = self._written.get(key)
        if held is not None and (_uid(held) != _uid(obj)
                                 or (_rv(held) or 0) <= (_rv(obj) or 0)):
            del self._written[key]

    def _deleted(self, obj: KubeObject) -> None:
        if self._written:
            self._written.pop(key_of(obj), None)


__all__ = ["MutationCache"]
