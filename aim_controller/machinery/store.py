"""The informer cache: objects by key, with named secondary indexes.

Same model as client-go ``tools/cache`` ``ThreadSafeStore``/``Indexer``, minus
the locks: the whole operator runs on one asyncio event loop, and every
mutation happens synchronously on that loop (from the reflector that owns the
store), so readers on the loop always see a consistent store between awaits.
Never touch a store from another thread.

Objects are the decoded JSON dicts the API server returned (after the
informer's transform). They are shared with every reader, so readers must
treat them as immutable (copy before modifying); they are typed as read-only
``Mapping``s to let the type checker help.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aim_controller.machinery.handlers import KubeObject, key_of

IndexFunc = Callable[[KubeObject], Sequence[str]]
"""Maps an object to the index values it is filed under (may be empty)."""

NAMESPACE_INDEX = "namespace"
CONTROLLER_OWNER_UID_INDEX = "owner-uid"


class ReadOnlyStore(Protocol):
    """What consumers of an informer may do with its cache: read, never write."""

    def get(self, key: str) -> KubeObject | None: ...

    def list(self) -> builtins.list[KubeObject]: ...

    def list_keys(self) -> builtins.list[str]: ...

    def by_index(self, index_name: str, value: str) -> builtins.list[KubeObject]: ...

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]: ...

    def __contains__(self, key: object) -> bool: ...

    def __len__(self) -> int: ...


class Store:
    """Objects by ``namespace/name`` (or ``name`` for cluster-scoped objects).

    Invariants: every value is stored under ``key_of(value)``;
    ``resource_version`` is the resourceVersion of the last ``replace``
    (the list it came from), ``""`` before the first one. Single-loop: see
    the module docstring.
    """

    def __init__(self) -> None:
        self._items: dict[str, KubeObject] = {}
        self.resource_version = ""

    # -- writes (the reflector's) -------------------------------------------
    def add(self, obj: KubeObject) -> KubeObject | None:
        """Inserts or replaces ``obj``; returns the object it replaced, if any."""
        key = key_of(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._on_change(key, old, obj)
        return old

    update = add

    def delete(self, key: str) -> KubeObject | None:
        """Removes the object under ``key``; returns it (``None`` if absent)."""
        old = self._items.pop(key, None)
        if old is not None:
            self._on_change(key, old, None)
        return old

    def replace(self, objects: Iterable[KubeObject], resource_version: str) -> None:
        """Replaces the whole content (a relist) and records its resourceVersion."""
        self._items = {key_of(o): o for o in objects}
        self.resource_version = resource_version
        self._rebuild()

    # -- reads ---------------------------------------------------------------
    def get(self, key: str) -> KubeObject | None:
        return self._items.get(key)

    get_by_key = get

    def list(self) -> builtins.list[KubeObject]:
        return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        return list(self._items)

    def items(self) -> dict[str, KubeObject]:
        """A shallow snapshot of key -> object (safe to hold across awaits)."""
        return dict(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[KubeObject]:
        return iter(list(self._items.values()))

    # -- hooks for Indexer ----------------------------------------------------
    def _on_change(self, key: str, old: KubeObject | None, new: KubeObject | None) -> None:
        return None

    def _rebuild(self) -> None:
        return None


class Indexer(Store):
    """A :class:`Store` with named secondary indexes (client-go ``Indexer``).

    Invariants: for every index ``n`` and value ``v``,
    ``index_keys(n, v)`` is exactly the set of stored keys whose object maps
    to ``v`` under index function ``n``; an index function's result for an
    object is computed once, when the object enters the store, and remembered
    so removal does not depend on calling the function again.
    """

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        super().__init__()
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {}
        # index name -> key -> values it is filed under
        self._filed: dict[str, dict[str, tuple[str, ...]]] = {}
        if indexers:
            self.add_indexers(indexers)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Adds index functions; existing objects are indexed at once.

        Re-adding a name with the same function is a no-op; with another
        function it is an error (two callers disagreeing on what it means).
        """
        for name, fn in indexers.items():
            existing = self._indexers.get(name)
            if existing is not None:
                if existing is not fn:
                    raise ValueError(f"indexer {name!r} already exists with another function")
                continue
            self._indexers[name] = fn
            self._indices[name] = {}
            self._filed[name] = {}
            for key, obj in self._items.items():
                self._file(name, key, obj)

    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._indexers)

    def by_index(self, index_name: str, value: str) -> builtins.list[KubeObject]:
        """Objects filed under ``value`` in index ``index_name``."""
        return [self._items[k] for k in self.index_keys(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Keys filed under ``value`` in index ``index_name`` (sorted, for determinism)."""
        try:
            index = self._indices[index_name]
        except KeyError:
            raise KeyError(f"no index named {index_name!r}") from None
        return sorted(index.get(value, ()))

    def list_index_values(self, index_name: str) -> builtins.list[str]:
        """Every value some object is filed under in ``index_name``."""
        return sorted(self._indices[index_name])

    def _file(self, name: str, key: str, obj: KubeObject) -> None:
        values = tuple(dict.fromkeys(self._indexers[name](obj)))
        if values:
            self._filed[name][key] = values
            index = self._indices[name]
            for v in values:
                index.setdefault(v, set()).add(key)

    def _unfile(self, name: str, key: str) -> None:
        index = self._indices[name]
        for v in self._filed[name].pop(key, ()):
            keys = index.get(v)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[v]

    def _on_change(self, key: str, old: KubeObject | None, new: KubeObject | None) -> None:
        for name in self._indexers:
            if old is not None:
                self._unfile(name, key)
            if new is not None:
                self._file(name, key, new)

    def _rebuild(self) -> None:
        for name in self._indexers:
            self._indices[name] = {}
            self._filed[name] = {}
            for key, obj in self._items.items():
                self._file(name, key, obj)


# -- index functions ----------------------------------------------------------
def index_by_namespace(obj: KubeObject) -> builtins.list[str]:
    """client-go ``MetaNamespaceIndexFunc``; cluster-scoped objects are not filed."""
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def index_by_controller_owner_uid(obj: KubeObject) -> builtins.list[str]:
    """The UID of the owner reference with ``controller: true`` (at most one)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("uid"):
            return [str(ref["uid"])]
    return []


def index_by_label(label: str) -> IndexFunc:
    """Files objects under the value of label ``label`` (unlabelled ones are not filed)."""

    def fn(obj: KubeObject) -> builtins.list[str]:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        value = labels.get(label)
        return [] if value is None else [str(value)]

    return fn


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def index_by_field(path: str) -> IndexFunc:
    """Files objects under the value at dotted ``path`` (e.g. ``spec.nodeName``).

    A missing/null field files nothing; a list of scalars files every element;
    booleans are ``"true"``/``"false"`` as in field selectors.
    """
    parts = path.split(".")

    def fn(obj: KubeObject) -> builtins.list[str]:
        cur: Any = obj
        for p in parts:
            if not isinstance(cur, Mapping):
                return []
            cur = cur.get(p)
            if cur is None:
                return []
        if isinstance(cur, list):
            return [_scalar(v) for v in cur if v is not None and not isinstance(v, dict | list)]
        if isinstance(cur, dict):
            return []
        return [_scalar(cur)]

    return fn


DEFAULT_INDEXERS: dict[str, IndexFunc] = {
    NAMESPACE_INDEX: index_by_namespace,
    CONTROLLER_OWNER_UID_INDEX: index_by_controller_owner_uid,
}
"""Indexes most controllers want (namespace, controller owner UID)."""
