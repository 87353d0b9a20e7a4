"""The ServiceAccount (v1), when ``security.serviceAccount.create`` is true.

Named ``serviceAccount.name`` or ``<name>``. Its token is not automounted: the
engine never calls the Kubernetes API (the pod spec says the same, which also covers
a pre-existing or default ServiceAccount).

Caveat: a created ServiceAccount is controlled by exactly one endpoint. Two
endpoints naming the same ``serviceAccount.name`` with ``create: true`` would fight
over it (only one controller ownerReference is allowed); the reconciler should
report such a conflict instead of applying.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .deployment import service_account_name
from .meta import object_meta

__all__ = ["build_service_account"]


def build_service_account(endpoint: AIMEndpoint) -> dict[str, Any] | None:
    """The ServiceAccount manifest, or None when the operator does not create one."""
    if not endpoint.spec.security.service_account.create:
        return None
    name = service_account_name(endpoint)
    assert name is not None  # create=True always names it
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(endpoint, name),
        "automountServiceAccountToken": False,
    }
