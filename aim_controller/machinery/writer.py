"""Writes to the API server: server-side apply, status apply, guarded delete.

One ``ObjectWriter`` per process, with one field manager: every field the
controller sets is owned by that manager, so fields set by anyone else (an
annotation added with kubectl, replicas set by an HPA) are left alone, and a
field we stop setting is removed by the next apply.

Invariants:
- every apply is ``force=True``: we are the controller of what we apply, and a
  conflict with another manager over one of *our* fields is resolved in our
  favour (that is what drift repair means);
- deletes carry a UID precondition, so a delete never hits a newer object of
  the same name created meanwhile;
- every create and patch carries the writer's ``fieldValidation`` directive.

Why ``Ignore`` by default: the API server's own default, ``Warn``, parses every
apply body a second time, strictly, only to send back warnings; for a custom
resource's status that is about 5% of the write's API-server CPU. An apply with a
field the schema does not declare is refused whatever the directive; for creates
and merge patches the tests run the operator with ``Strict``, where such a field
fails the write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .kubeclient import ApiException, KubeClient
from .resource import Obj, Resource, request_json

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# A resourceVersion no stored object has: etcd's first write is revision 2, and a
# namespaced object is written after its namespace anyway.
NO_OBJECT_HAS_THIS_VERSION = "1"
FIELD_VALIDATIONS = ("Ignore", "Warn", "Strict")
DEFAULT_FIELD_VALIDATION = "Ignore"


class RESTMapper:
    """(apiVersion, kind) -> Resource, for the kinds a controller writes."""

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        self._by_gvk: dict[tuple[str, str], Resource] = {}
        for r in resources:
            self.add(r)

    def add(self, resource: Resource) -> None:
        self._by_gvk[(resource.api_version, resource.kind)] = resource

    def resource_for(self, api_version: str, kind: str) -> Resource:
        try:
            return self._by_gvk[(api_version, kind)]
        except KeyError:
            raise KeyError(f"no resource registered for {api_version} {kind}") from None


class ObjectWriter:
    """Server-side apply and deletes through one field manager."""

    def __init__(self, api: KubeClient, mapper: RESTMapper, field_manager: str,
                 *, field_validation: str = DEFAULT_FIELD_VALIDATION) -> None:
        if field_validation not in FIELD_VALIDATIONS:
            raise ValueError(f"field_validation must be one of {FIELD_VALIDATIONS}, "
                             f"not {field_validation!r}")
        self._api = api
        self._mapper = mapper
        self.field_manager = field_manager
        self.field_validation = field_validation

    @property
    def mapper(self) -> RESTMapper:
        return self._mapper

    def _target(self, obj: Obj) -> tuple[Resource, str, str | None]:
        meta = obj.get("metadata") or {}
        resource = self._mapper.resource_for(str(obj["apiVersion"]), str(obj["kind"]))
        ns = meta.get("namespace") if resource.namespaced else None
        return resource, str(meta["name"]), ns

    async def apply(self, obj: Obj, *, force: bool = True) -> Obj:
        """Server-side applies ``obj`` (the full intent of this manager for it)."""
        resource, name, ns = self._target(obj)
        return await request_json(
            self._api, "PATCH", resource.object_path(name, ns),
            query=self._apply_query(force), body=obj, content_type=APPLY_CONTENT_TYPE,
        )

    async def apply_new(self, obj: Obj) -> Obj | None:
        """Server-side applies namespaced ``obj`` only if no object has its name: the
        server creates it (owned by this manager, as ``apply`` would), or answers 409
        and writes nothing (then None).

        One request, no read first: the apply carries a resourceVersion precondition
        that no existing object meets, and that a create does not check.
        """
        resource, name, ns = self._target(obj)
        if ns is None:
            raise ValueError(f"apply_new is for namespaced objects, not {resource.kind}")
        body = {**obj, "metadata": {**obj["metadata"],
                                    "resourceVersion": NO_OBJECT_HAS_THIS_VERSION}}
        try:
            return await request_json(
                self._api, "PATCH", resource.object_path(name, ns),
                query=self._apply_query(True), body=body, content_type=APPLY_CONTENT_TYPE,
            )
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    async def apply_status(self, obj: Obj, *, force: bool = True) -> Obj:
        """Server-side applies ``obj``'s ``status`` through the status subresource."""
        resource, name, ns = self._target(obj)
        body: dict[str, Any] = {
            "apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": name, **({"namespace": ns} if ns else {})},
            "status": obj.get("status") or {},
        }
        return await request_json(
            self._api, "PATCH", resource.object_path(name, ns) + "/status",
            query=self._apply_query(force), body=body, content_type=APPLY_CONTENT_TYPE,
        )

    async def delete(self, obj: Obj, *, propagation: str = "Background") -> bool:
        """Deletes ``obj`` if it is still the same object (UID precondition).

        Returns False when it was already gone or replaced.
        """
        resource, name, ns = self._target(obj)
        uid = (obj.get("metadata") or {}).get("uid")
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await request_json(self._api, "DELETE", resource.object_path(name, ns), body=body)
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    async def get(self, obj: Obj) -> Obj | None:
        """The object named like ``obj`` as the server has it now; None when absent.

        For the rare read a writer needs before a create (is the name taken by
        somebody else?); everything else reads the informer caches.
        """
        resource, name, ns = self._target(obj)
        try:
            return await request_json(self._api, "GET", resource.object_path(name, ns))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create(self, obj: Obj) -> Obj:
        resource, _name, ns = self._target(obj)
        return await request_json(self._api, "POST", resource.collection_path(ns),
                                  query=self._validation_query(), body=obj)

    async def patch_merge(self, obj_ref: Obj, patch: Obj, *, subresource: str = "") -> Obj:
        resource, name, ns = self._target(obj_ref)
        path = resource.object_path(name, ns) + (f"/{subresource}" if subresource else "")
        return await request_json(self._api, "PATCH", path, query=self._validation_query(),
                                  body=patch, content_type="application/merge-patch+json")

    def _validation_query(self) -> list[tuple[str, str]]:
        return [("fieldValidation", self.field_validation)]

    def _apply_query(self, force: bool) -> list[tuple[str, str]]:
        q = [("fieldManager", self.field_manager), *self._validation_query()]
        if force:
            q.append(("force", "true"))
        return q
