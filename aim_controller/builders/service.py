"""The Service (v1) in front of the engine pods.

Invariants: named ``<name>``; selector = the stable selector labels; one port named
``http`` (the name the ServiceMonitor scrapes) on ``spec.service.port`` with
targetPort the container port *name* ``http``, so the engine port can move without
touching the Service.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .engine import PORT_NAME
from .meta import endpoint_ref, object_meta, selector_labels

__all__ = ["build_service"]


def build_service(endpoint: AIMEndpoint) -> dict[str, Any]:
    ref = endpoint_ref(endpoint)
    svc = endpoint.spec.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(endpoint, ref.name, annotations=dict(svc.annotations)),
        "spec": {
            "type": svc.type,
            "selector": selector_labels(ref.name),
            "ports": [{
                "name": PORT_NAME,
                "port": svc.port,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            }],
        },
    }
