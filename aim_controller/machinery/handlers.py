"""Event handlers: how informer notifications become work-queue keys.

Objects are Kubernetes JSON as dicts (``metadata.namespace``,
``metadata.name``, ``metadata.ownerReferences``). Handlers only enqueue keys;
the reconcile function reads the current state from the caches itself, which
is what makes the controllers level-triggered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

KubeObject = Mapping[str, Any]
"""A Kubernetes object as decoded JSON."""


class EventHandler(Protocol):
    """What an informer calls for each change it observes (client-go ``ResourceEventHandler``).

    Handlers run on the event loop and must not block or await: they are
    expected to enqueue keys and return.
    """

    def on_add(self, obj: KubeObject) -> None: ...

    def on_update(self, old: KubeObject, new: KubeObject) -> None: ...

    def on_delete(self, obj: KubeObject) -> None: ...


class Enqueuer(Protocol):
    """Anything keys can be added to (a work queue)."""

    def add(self, key: str) -> None: ...


class PriorityEnqueuer(Protocol):
    """A queue that takes a priority with each key (higher is handed out first)."""

    def add(self, key: str, priority: int = ...) -> None: ...


@dataclass(frozen=True)
class AtPriority:
    """An :class:`Enqueuer` that adds every key at one priority, so any handler
    factory below can enqueue at it (controller-runtime's ``WithLowPriorityWhenUnchanged``
    idea, made explicit per watch)."""

    queue: PriorityEnqueuer
    priority: int

    def add(self, key: str) -> None:
        self.queue.add(key, self.priority)


@dataclass(frozen=True)
class ResourceEventHandlerFuncs:
    """An :class:`EventHandler` from optional callables; a missing one ignores that event."""

    add_func: Callable[[KubeObject], None] | None = None
    update_func: Callable[[KubeObject, KubeObject], None] | None = None
    delete_func: Callable[[KubeObject], None] | None = None

    def on_add(self, obj: KubeObject) -> None:
        if self.add_func is not None:
            self.add_func(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if self.update_func is not None:
            self.update_func(old, new)

    def on_delete(self, obj: KubeObject) -> None:
        if self.delete_func is not None:
            self.delete_func(obj)


def key_of(obj: KubeObject) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object.

    client-go's ``MetaNamespaceKeyFunc``.
    """
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of :func:`key_of`: ``(namespace or None, name)``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def api_group(api_version: str) -> str:
    """The group of an ``apiVersion`` (``""`` for the core group ``v1``)."""
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


def enqueue_object(queue: Enqueuer) -> ResourceEventHandlerFuncs:
    """Enqueue the object's own key on every event.

    controller-runtime's ``EnqueueRequestForObject``.
    """

    def on_obj(obj: KubeObject) -> None:
        queue.add(key_of(obj))

    def on_update(old: KubeObject, new: KubeObject) -> None:
        queue.add(key_of(new))

    return ResourceEventHandlerFuncs(on_obj, on_update, on_obj)


def _generation(obj: KubeObject) -> object:
    return (obj.get("metadata") or {}).get("generation")


def enqueue_object_on_generation_change(queue: Enqueuer) -> ResourceEventHandlerFuncs:
    """Like :func:`enqueue_object`, but updates that leave ``metadata.generation`` as it
    was are ignored (controller-runtime's ``GenerationChangedPredicate``): for a
    controller whose output is the object's own status, its status write echoing
    back must not start another round."""

    def on_obj(obj: KubeObject) -> None:
        queue.add(key_of(obj))

    def on_update(old: KubeObject, new: KubeObject) -> None:
        if _generation(old) != _generation(new) or _generation(new) is None:
            queue.add(key_of(new))

    return ResourceEventHandlerFuncs(on_obj, on_update, on_obj)


def enqueue_object_spec_first(
    queue: PriorityEnqueuer, default_priority: int, churn_priority: int
) -> ResourceEventHandlerFuncs:
    """Like :func:`enqueue_object`, but an update that leaves ``metadata.generation``
    as it was (status, labels, annotations: often the controller's own status write
    echoing back) is enqueued at ``churn_priority``; adds, deletes and spec changes
    at ``default_priority``."""

    def on_obj(obj: KubeObject) -> None:
        queue.add(key_of(obj), default_priority)

    def on_update(old: KubeObject, new: KubeObject) -> None:
        same = _generation(old) == _generation(new)
        queue.add(key_of(new), churn_priority if same else default_priority)

    return ResourceEventHandlerFuncs(on_obj, on_update, on_obj)


def owner_keys(
    obj: KubeObject,
    owner_api_version: str,
    owner_kind: str,
    *,
    only_controller: bool = True,
    cluster_scoped_owner: bool = False,
) -> list[str]:
    """Keys of ``obj``'s owners of the given group/kind.

    Matches on group and kind, not version, like controller-runtime: an owner
    reference written under an older version still names the same object.
    An owner of a namespaced object lives in the same namespace unless
    ``cluster_scoped_owner``.
    """
    meta = obj.get("metadata") or {}
    group = api_group(owner_api_version)
    namespace = meta.get("namespace")
    keys: list[str] = []
    for ref in meta.get("ownerReferences") or ():
        if only_controller and not ref.get("controller"):
            continue
        if ref.get("kind") != owner_kind or api_group(ref.get("apiVersion", "")) != group:
            continue
        name = ref.get("name")
        if not name:
            continue
        keys.append(name if cluster_scoped_owner or not namespace else f"{namespace}/{name}")
    return keys


def enqueue_owner(
    queue: Enqueuer,
    owner_api_version: str,
    owner_kind: str,
    *,
    only_controller: bool = True,
    cluster_scoped_owner: bool = False,
) -> ResourceEventHandlerFuncs:
    """Enqueue the owner of a child object (controller-runtime ``EnqueueRequestForOwner``).

    On update both the old and the new owners are enqueued, so an owner that
    lost a child hears about it too.
    """

    def keys(obj: KubeObject) -> list[str]:
        return owner_keys(
            obj,
            owner_api_version,
            owner_kind,
            only_controller=only_controller,
            cluster_scoped_owner=cluster_scoped_owner,
        )

    return enqueue_mapped(queue, keys)


def enqueue_mapped(
    queue: Enqueuer, fn: Callable[[KubeObject], Iterable[str]]
) -> ResourceEventHandlerFuncs:
    """Enqueue the keys ``fn`` maps an object to.

    controller-runtime's ``EnqueueRequestsFromMapFunc``: on update both the
    old and the new object are mapped.
    """

    def on_obj(obj: KubeObject) -> None:
        for key in fn(obj):
            queue.add(key)

    def on_update(old: KubeObject, new: KubeObject) -> None:
        on_obj(old)
        on_obj(new)

    return ResourceEventHandlerFuncs(on_obj, on_update, on_obj)
