"""A small asyncio Kubernetes client for the harness (aiohttp, JSON dicts).

Invariants: every request has a timeout; a non-2xx answer raises
:class:`KubeError` with the status code; a watch ``ERROR`` event raises
:class:`KubeError` with the code of its Status (410 for an expired
resourceVersion). Lines of a watch stream may be of any length.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

Obj = dict[str, Any]
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"

# (apiVersion, kind) -> (plural, namespaced) for every kind the harness touches.
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("aim.engine.amd.com/v1alpha1", "AIMEndpoint"): ("aimendpoints", True),
    ("aim.engine.amd.com/v1alpha1", "AIMRecipe"): ("aimrecipes", True),
    ("aim.engine.amd.com/v1alpha1", "AIMCache"): ("aimcaches", True),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"):
        ("validatingwebhookconfigurations", False),
}


RETRIABLE = frozenset({429, 500, 502, 503, 504})


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message[:500]}")
        self.status = status


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    plural, namespaced = KINDS[(api_version, kind)]
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    if namespaced and namespace:
        return f"{base}/namespaces/{quote(namespace, safe='')}/{plural}"
    return f"{base}/{plural}"


def object_path(obj_or_api_version: Obj | str, kind: str = "", name: str = "",
                namespace: str | None = None) -> str:
    if isinstance(obj_or_api_version, dict):
        obj = obj_or_api_version
        meta = obj["metadata"]
        return object_path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    return (f"{collection_path(obj_or_api_version, kind, namespace)}/"
            f"{quote(name, safe='')}")


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to connect: read from a kubeconfig with client certificates
    (what hack/localcluster.py writes)."""

    server: str
    ca: str
    cert: str
    key: str

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> Credentials:
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        return cls(cluster["server"], cluster["certificate-authority"],
                   user["client-certificate"], user["client-key"])

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


class Kube:
    """One connection pool to one API server. Use as an async context manager."""

    def __init__(self, creds: Credentials, *, connections: int = 100,
                 timeout: float = 60.0) -> None:
        self.creds = creds
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        conn = aiohttp.TCPConnector(ssl=self.creds.ssl_context(), limit=self._connections)
        self._session = aiohttp.ClientSession(self.creds.server, connector=conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Kube used outside its context")
        return self._session

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: dict[str, str] | None = None, content_type: str = "application/json",
                      request_timeout: float | None = None, attempts: int = 5) -> Obj:
        """One request, retried on transport errors, 429 and 5xx (every request the
        harness makes is idempotent: GET, DELETE, apply and merge patches)."""
        for attempt in range(attempts):
            try:
                return await self._request_once(method, path, body, params, content_type,
                                                 request_timeout)
            except KubeError as e:
                if e.status not in RETRIABLE or attempt + 1 == attempts:
                    raise
            except (aiohttp.ClientError, TimeoutError):
                if attempt + 1 == attempts:
                    raise
            await asyncio.sleep(min(2.0**attempt, 8.0))
        raise AssertionError("unreachable")

    async def _request_once(self, method: str, path: str, body: Any,
                            params: dict[str, str] | None, content_type: str,
                            request_timeout: float | None) -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        to = aiohttp.ClientTimeout(total=request_timeout or self._timeout, sock_connect=10)
        async with self.session.request(method, path, data=data, params=params,
                                        headers=headers, timeout=to) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise KubeError(resp.status, text)
            out: Obj = json.loads(text) if text else {}
            return out

    async def get(self, path: str) -> Obj:
        return await self.request("GET", path)

    async def get_text(self, path: str) -> str:
        """A non-JSON GET (``/metrics``), not retried."""
        async with self.session.get(path, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise KubeError(resp.status, text)
            return text

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, path: str, *, label_selector: str | None = None,
                   page: int = 500) -> tuple[list[Obj], str]:
        """Every item of a collection (paged) and the list's resourceVersion."""
        items: list[Obj] = []
        params = {"limit": str(page)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            out = await self.request("GET", path, params=params, request_timeout=120)
            items.extend(out.get("items") or [])
            cont = (out.get("metadata") or {}).get("continue")
            if not cont:
                return items, str(out["metadata"].get("resourceVersion", ""))
            params["continue"] = cont

    async def apply(self, obj: Obj, manager: str, *, force: bool = True,
                    subresource: str = "", field_validation: str | None = None) -> Obj:
        path = object_path(obj) + (f"/{subresource}" if subresource else "")
        params = {"fieldManager": manager}
        if force:
            params["force"] = "true"
        if field_validation:
            params["fieldValidation"] = field_validation
        return await self.request("PATCH", path, body=obj, params=params, content_type=APPLY)

    async def merge_patch(self, path: str, patch: Obj, *, manager: str = "") -> Obj:
        params = {"fieldManager": manager} if manager else None
        return await self.request("PATCH", path, body=patch, params=params, content_type=MERGE)

    async def delete(self, path: str, *, propagation: str = "Background") -> bool:
        try:
            await self.request("DELETE", path, body={"propagationPolicy": propagation})
        except KubeError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def watch(self, path: str, resource_version: str, *,
                    label_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, Obj]]:
        """Yields (type, object) until the server ends the watch."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        to = aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_connect=10,
                                   sock_read=timeout_seconds + 30)
        async with self.session.get(path, params=params, timeout=to) as resp:
            if resp.status >= 300:
                raise KubeError(resp.status, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    if ev.get("type") == "ERROR":
                        status = ev.get("object") or {}
                        raise KubeError(int(status.get("code") or 500),
                                        str(status.get("message")))
                    yield str(ev["type"]), ev["object"]


async def gather_limited(coros: Iterable[Any], limit: int) -> list[Any]:
    """Runs the awaitables with at most ``limit`` in flight; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))
