"""Live pods bound to a node, counted per endpoint and pod template from Pod events.

The reservation book asks, for every endpoint with pending replicas, how many of its
pods are bound *now*, each time it places the reservations: during a burst that is
every reconcile, and counting by walking each endpoint's pods made the question
O(pending endpoints x their pods) per reconcile. The count is kept here instead, one
dict update per Pod event.

Invariant: ``count(key, t)`` equals
``bound_pods(<the cached pods indexed to key>, t)`` (:func:`.endpoint_observe.bound_pods`)
after every event handler call. The informer updates its store and calls its handlers
in one step of the event loop, so no reader sees one without the other. Each pod's
contribution is remembered by its key, so a delete whose final state differs from
the cached one (terminated meanwhile) takes back exactly what was added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from aim_controller.machinery.handlers import ResourceEventHandlerFuncs, key_of

from .endpoint_observe import bound_and_live, template_checksum

__all__ = ["BoundPodCount"]

_ANY: Final = "\x00any"  # the bucket of every template (no checksum value can be it)

Slot = tuple[str, str]


class BoundPodCount:
    """Counts from the Pod informer's events; register :meth:`handler` on it."""

    def __init__(self, endpoints_of: Callable[[Mapping[str, Any]], list[str]]) -> None:
        self._endpoints_of = endpoints_of
        self._counts: dict[Slot, int] = {}
        self._slots: dict[str, tuple[Slot, ...]] = {}  # pod key -> where it counts

    def count(self, key: str, template: str | None) -> int:
        """Live bound pods of endpoint ``key`` made from ``template`` (any, when None)."""
        return self._counts.get((key, _ANY if template is None else template), 0)

    def handler(self) -> ResourceEventHandlerFuncs:
        return ResourceEventHandlerFuncs(self._set, lambda _old, new: self._set(new), self._drop)

    def _slots_of(self, pod: Mapping[str, Any]) -> tuple[Slot, ...]:
        if not bound_and_live(pod):
            return ()
        keys = self._endpoints_of(pod)
        if not keys:
            return ()
        checksum = template_checksum(pod)
        return tuple((k, t) for k in keys
                     for t in ((_ANY,) if checksum is None else (_ANY, checksum)))

    def _set(self, pod: Mapping[str, Any]) -> None:
        pod_key = key_of(pod)
        slots = self._slots_of(pod)
        if self._slots.get(pod_key, ()) == slots:
            return
        self._drop_key(pod_key)
        if slots:
            self._slots[pod_key] = slots
            for s in slots:
                self._counts[s] = self._counts.get(s, 0) + 1

    def _drop(self, pod: Mapping[str, Any]) -> None:
        self._drop_key(key_of(pod))

    def _drop_key(self, pod_key: str) -> None:
        for s in self._slots.pop(pod_key, ()):
            left = self._counts[s] - 1
            if left:
                self._counts[s] = left
            else:
                del self._counts[s]
