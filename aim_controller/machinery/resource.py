"""Any Kubernetes resource, listed and watched as plain JSON dicts.

We send raw requests through our :class:`KubeClient` and parse the JSON
ourselves: no OpenAPI model objects (they drop unknown fields and cannot
represent custom resources), and a watch is read as the raw newline-delimited
JSON stream. Every call passes a :class:`~.httpclient.Timeout`: a watch is bound
by its own timeoutSeconds plus a grace, a list or a write by a fixed deadline, so a
dead connection never hangs a caller.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from . import jsoncodec
from .httpclient import Response, Timeout
from .kubeclient import ApiException, KubeClient

Obj = dict[str, Any]

LIST_TIMEOUT: Final = 90.0  # the API server's own non-watch request timeout is 60 s
CONNECT_TIMEOUT: Final = 10.0
WATCH_GRACE: Final = 30.0  # client-side margin over the server's timeoutSeconds


@dataclass(frozen=True)
class Resource:
    """One REST resource (a GroupVersionResource plus its kind and scope).

    Invariants: ``group`` is ``""`` for the core group (served under
    ``/api/v1``); ``plural`` is the lower-case URL segment; ``namespaced``
    says whether the resource lives in namespaces (a cluster-scoped resource
    can never be restricted to one).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        """The collection URL: one namespace's, or across all namespaces."""
        if namespace:
            if not self.namespaced:
                raise ValueError(f"{self} is cluster-scoped; cannot restrict to {namespace!r}")
            return f"{self.base_path}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self.base_path}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self} is namespaced; a namespace is required")
        return f"{self.collection_path(namespace)}/{quote(name, safe='')}"

    def __str__(self) -> str:
        # kubectl's resource.version.group spelling
        return f"{self.plural}.{self.version}.{self.group}" if self.group else self.plural


# Core resources a controller commonly watches (not our CRDs: those live in api/).
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
SERVICES = Resource("", "v1", "services", "Service")
PODS = Resource("", "v1", "pods", "Pod")
EVENTS = Resource("", "v1", "events", "Event")
PERSISTENT_VOLUME_CLAIMS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
JOBS = Resource("batch", "v1", "jobs", "Job")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
    namespaced=False,
)


@dataclass
class ObjectList:
    """One list response: items (with ``apiVersion``/``kind`` filled in), its resourceVersion,
    and the continue token of the next page (``""`` on the last one)."""

    items: list[Obj] = field(default_factory=list)
    resource_version: str = ""
    continue_token: str = ""


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK``.

    ``ERROR`` events are never yielded: they are raised as ``ApiException``
    with the code of their ``Status`` object (410 for an expired resourceVersion).
    """

    type: str
    object: Obj


def api_exception(status: int, body: bytes | str, reason: str | None = None) -> ApiException:
    """An ``ApiException`` from a status and body (reason: the body's, if a ``Status``)."""
    return ApiException.from_response(status, body, reason)


def status_exception(status_obj: Obj) -> ApiException:
    """The exception for a ``Status`` object (a watch ``ERROR`` event's payload)."""
    code = int(status_obj.get("code") or 500)
    return api_exception(code, json.dumps(status_obj), str(status_obj.get("reason") or ""))


async def raw_request(
    api: KubeClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str = "application/json",
    request_timeout: Timeout | None = None,
) -> Response:
    """Sends one request; returns the unread response, or raises ``ApiException`` on non-2xx.

    ``body``: bytes or text as is, anything else as JSON. The caller must
    release the response (``async with resp`` or ``resp.release()``).
    """
    data = (body if isinstance(body, bytes) or body is None
            else body.encode() if isinstance(body, str) else jsoncodec.dumps(body))
    return await api.call(
        method, path, query=query, body=data,
        headers={"Accept": "application/json", "Content-Type": content_type},
        request_timeout=request_timeout
        or Timeout(total=LIST_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
    )


async def request_json(
    api: KubeClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str = "application/json",
    request_timeout: Timeout | None = None,
) -> Obj:
    """One request whose response is a JSON object (get/create/update/list)."""
    resp = await raw_request(
        api, method, path, query=query, body=body, content_type=content_type,
        request_timeout=request_timeout,
    )
    async with resp:
        data = await resp.read()
    result = jsoncodec.loads(data)
    if not isinstance(result, dict):
        raise ValueError(f"{method} {path}: expected a JSON object")
    return result


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    q: list[tuple[str, str]] = []
    if label_selector:
        q.append(("labelSelector", label_selector))
    if field_selector:
        q.append(("fieldSelector", field_selector))
    return q


def _fill_type(resource: Resource, obj: Obj) -> Obj:
    # List items come without apiVersion/kind (watch events carry them); make
    # both paths deliver the same shape, as client-go's UnstructuredList does.
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    return obj


async def list_page(
    api: KubeClient,
    resource: Resource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = None,
    continue_token: str | None = None,
    resource_version: str | None = None,
    resource_version_match: str | None = None,
    request_timeout: float = LIST_TIMEOUT,
) -> ObjectList:
    """One page of a list (``GET`` on the collection)."""
    q = _selectors(label_selector, field_selector)
    if limit:
        q.append(("limit", str(limit)))
    if continue_token:
        q.append(("continue", continue_token))
    if resource_version is not None:
        q.append(("resourceVersion", resource_version))
    if resource_version_match:
        q.append(("resourceVersionMatch", resource_version_match))
    data = await request_json(
        api, "GET", resource.collection_path(namespace), query=q,
        request_timeout=Timeout(total=request_timeout, sock_connect=CONNECT_TIMEOUT),
    )
    meta = data.get("metadata") or {}
    return ObjectList(
        items=[_fill_type(resource, o) for o in data.get("items") or ()],
        resource_version=str(meta.get("resourceVersion") or ""),
        continue_token=str(meta.get("continue") or ""),
    )


async def list_objects(
    api: KubeClient,
    resource: Resource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = 500,
    resource_version: str | None = None,
    resource_version_match: str | None = None,
    request_timeout: float = LIST_TIMEOUT,
) -> ObjectList:
    """A complete list, following ``continue`` tokens.

    Only the first page carries ``resourceVersion``/``resourceVersionMatch``
    (the API server rejects them together with ``continue``); every page is
    served from the snapshot of the first. An expired continue token raises
    ``ApiException(410)``.
    """
    page = await list_page(
        api, resource, namespace=namespace, label_selector=label_selector,
        field_selector=field_selector, limit=limit, resource_version=resource_version,
        resource_version_match=resource_version_match, request_timeout=request_timeout,
    )
    result = ObjectList(items=page.items, resource_version=page.resource_version)
    while page.continue_token:
        page = await list_page(
            api, resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, limit=limit, continue_token=page.continue_token,
            request_timeout=request_timeout,
        )
        result.items.extend(page.items)
        result.resource_version = page.resource_version or result.resource_version
    return result


async def watch_objects(
    api: KubeClient,
    resource: Resource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    resource_version: str | None = None,
    timeout_seconds: int = 300,
    allow_bookmarks: bool = True,
) -> AsyncGenerator[WatchEvent, None]:
    """Watches the collection; yields events until the server closes the stream.

    Raises ``ApiException`` for an HTTP error or an ``ERROR`` event; transport
    failures surface as ``TransportError`` (an ``OSError``)/``OSError``/``TimeoutError``.
    Use with ``contextlib.aclosing`` so an abandoned watch releases its connection.
    """
    q = _selectors(label_selector, field_selector)
    q.append(("watch", "true"))
    if resource_version:
        q.append(("resourceVersion", resource_version))
    if allow_bookmarks:
        q.append(("allowWatchBookmarks", "true"))
    q.append(("timeoutSeconds", str(timeout_seconds)))
    # The server ends the stream after timeoutSeconds; the client-side bound
    # only catches a connection that died silently.
    resp = await raw_request(
        api, "GET", resource.collection_path(namespace), query=q,
        request_timeout=Timeout(
            total=timeout_seconds + WATCH_GRACE, sock_connect=CONNECT_TIMEOUT),
    )
    try:
        buf = bytearray()
        # One event per line, but a chunk may hold several events or part of one.
        async for chunk in resp.iter_chunks():
            buf.extend(chunk)
            start = 0
            while (end := buf.find(b"\n", start)) >= 0:
                line = bytes(buf[start:end])
                start = end + 1
                if line.strip():
                    yield _event(resource, line)
            del buf[:start]
        if buf.strip():
            yield _event(resource, bytes(buf))
    finally:
        resp.release()


def _event(resource: Resource, line: bytes) -> WatchEvent:
    raw = jsoncodec.loads(line)
    etype = str(raw.get("type") or "")
    obj = raw.get("object") or {}
    if etype == "ERROR":
        raise status_exception(obj)
    if etype != "BOOKMARK":
        _fill_type(resource, obj)
    return WatchEvent(etype, obj)


async def discover(api: KubeClient, group: str, version: str) -> set[str]:
    """The plurals a group/version serves (subresources excluded); empty if not served.

    Used at start to find optional CRDs (e.g. ``monitoring.coreos.com/v1``
    ``servicemonitors``) before creating informers for them.
    """
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    try:
        data = await request_json(api, "GET", path)
    except ApiException as e:
        if e.status == 404:
            return set()
        raise
    return {
        str(r["name"]) for r in data.get("resources") or () if "/" not in str(r.get("name", "/"))
    }
