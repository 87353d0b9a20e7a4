"""Talking to the local control plane from a test: clients, a request log, a relay."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from localcluster import LocalCluster  # type: ignore[import-not-found]
from tcprelay import Relay  # type: ignore[import-not-found]  # noqa: F401  (re-exported)

from aim_controller.machinery.kubeclient import KubeClient, load_kubeconfig

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crd"


def install_crds(c: LocalCluster) -> None:
    """Our three CRDs, installed and Established."""
    c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", str(CRD_DIR))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
              "crd/aimendpoints.aim.engine.amd.com", "crd/aimrecipes.aim.engine.amd.com",
              "crd/aimcaches.aim.engine.amd.com")


async def api_client(c: LocalCluster, host: str | None = None) -> KubeClient:
    """The operator's client for ``c`` (through ``host`` instead, e.g. a :class:`Relay`)."""
    cfg = load_kubeconfig(c.kubeconfig)
    return KubeClient(dataclasses.replace(cfg, server=host) if host else cfg)


async def typed_api_client(c: LocalCluster) -> ApiClient:
    """A kubernetes_asyncio client for ``c``, for tests that want its typed APIs."""
    cfg = Configuration()
    await config.load_kube_config(config_file=str(c.kubeconfig), client_configuration=cfg)
    return ApiClient(cfg)


class RequestLog:
    """Every request a client sends, as (method, path with query), in order.

    Recorded when sent, so a request counts even if its answer never comes.
    """

    def __init__(self, api: KubeClient) -> None:
        self.requests: list[tuple[str, str]] = []
        # Beside each request: its body and its answer's status (None until it comes),
        # so a test that counts writes can say what each one carried.
        self.bodies: list[bytes | None] = []
        self.answers: list[int | None] = []
        original = api.request

        async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            i = len(self.requests)
            self.requests.append((method.upper(), url))
            self.bodies.append(kwargs.get("data"))
            self.answers.append(None)
            resp = await original(method, url, *args, **kwargs)
            self.answers[i] = getattr(resp, "status", None)
            return resp

        api.request = request

    def __len__(self) -> int:
        return len(self.requests)

    def since(self, mark: int, method: str | None = None) -> list[tuple[str, str]]:
        """The requests after the first ``mark`` (``len(log)`` taken earlier)."""
        return [(m, u) for m, u in self.requests[mark:] if method is None or m == method]

    def sent_to(self, mark: int, path: str) -> list[tuple[int | None, Any]]:
        """(answer status, JSON body) of each request after ``mark`` whose path ends
        with ``path``, in order."""
        return [(self.answers[i], json.loads(self.bodies[i] or b"null"))
                for i in range(mark, len(self.requests))
                if self.requests[i][1].split("?")[0].endswith(path)]

    def writes(self, namespace: str) -> list[tuple[str, str]]:
        """The non-GET requests about objects in ``namespace``."""
        return [(m, u) for m, u in self.requests
                if m != "GET" and f"/namespaces/{namespace}/" in u]
