"""The Gateway API HTTPRoute ``<name>`` (gateway.networking.k8s.io/v1) and, during a
canary, the canary's Service ``<name>-canary``: the exact traffic split.

Invariants: the route attaches to ``spec.service.gateway`` and has one rule with no
match (every request); without a canary its one backend is the endpoint's Service;
during a canary its backends are the Service (weight ``100 - trafficSplit``) and the
canary's Service (weight ``trafficSplit``). Where the route splits, the canary's pods
do not carry ``app.kubernetes.io/name`` (see :mod:`.canary`), so the endpoint's
Service selects the stable pods only and the weights are the split.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .canary import LABEL_CANARY, canary_name
from .engine import PORT_NAME
from .meta import LABEL_INSTANCE, endpoint_ref, object_meta

__all__ = ["GATEWAY_API_VERSION", "build_canary_service", "build_httproute"]

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_API_GROUP}/v1"


def _backend(name: str, port: int, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def build_httproute(endpoint: AIMEndpoint, canary_weight: int | None) -> dict[str, Any] | None:
    """The route, or None without ``spec.service.gateway``. ``canary_weight``: the
    percent of requests for the canary's Service (None: no canary)."""
    gw = endpoint.spec.service.gateway
    if gw is None:
        return None
    name = endpoint_ref(endpoint).name
    port = endpoint.spec.service.port
    parent: dict[str, Any] = {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": gw.name}
    if gw.namespace is not None:
        parent["namespace"] = gw.namespace
    if gw.section_name is not None:
        parent["sectionName"] = gw.section_name
    if canary_weight is None:
        backends = [_backend(name, port, None)]
    else:
        backends = [_backend(name, port, 100 - canary_weight),
                    _backend(canary_name(name), port, canary_weight)]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": object_meta(endpoint, name),
        "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends}]},
    }


def build_canary_service(endpoint: AIMEndpoint) -> dict[str, Any]:
    """``<name>-canary``: the canary's pods only, on the endpoint's Service port."""
    name = endpoint_ref(endpoint).name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(endpoint, canary_name(name)),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_CANARY: "true", LABEL_INSTANCE: name},
            "ports": [{
                "name": PORT_NAME,
                "port": endpoint.spec.service.port,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            }],
        },
    }
