"""The permission arithmetic of the least-privilege tests (tests/support/rbac.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.rbac import audit_events, denied, granted, role_rules, used


def test_rules_expand_to_group_resource_verb_triples() -> None:
    rules = [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments/status"],
              "verbs": ["get", "list"]}]
    assert granted(rules) == {(g, r, v) for g in ("", "apps")
                              for r in ("pods", "deployments/status") for v in ("get", "list")}


@pytest.mark.parametrize("rule", [
    {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["x"]},
])
def test_wildcards_and_names_are_refused(rule: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        granted([rule])


def test_roles_are_keyed_by_kind_and_namespace() -> None:
    docs = [{"kind": "ClusterRole", "metadata": {"name": "a"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
            {"kind": "Role", "metadata": {"name": "b", "namespace": "ns"},
             "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "verbs": ["get"]}]},
            {"kind": "ServiceAccount", "metadata": {"name": "c"}}, None]
    assert role_rules(docs) == {"ClusterRole": {("", "pods", "list")},
                                "Role/ns": {("coordination.k8s.io", "leases", "get")}}


def test_audit_events_give_the_used_and_the_denied(tmp_path: Path) -> None:
    user = "system:serviceaccount:aim-system:aim-controller"
    lines = [
        {"stage": "ResponseComplete", "user": {"username": user}, "verb": "patch",
         "objectRef": {"apiGroup": "aim.engine.amd.com", "resource": "aimendpoints",
                       "subresource": "status", "namespace": "x"},
         "responseStatus": {"code": 200}},
        {"stage": "ResponseComplete", "user": {"username": user}, "verb": "list",
         "objectRef": {"resource": "pods"}, "responseStatus": {"code": 403, "message": "no"},
         "requestURI": "/api/v1/pods"},
        {"stage": "ResponseComplete", "user": {"username": user}, "verb": "get",
         "requestURI": "/version", "responseStatus": {"code": 200}},
        {"stage": "ResponseComplete", "user": {"username": user}, "verb": "patch",
         "objectRef": {"apiGroup": "apps", "resource": "deployments", "namespace": "x"},
         "responseStatus": {"code": 201}},
        {"stage": "ResponseComplete", "user": {"username": "admin"}, "verb": "delete",
         "objectRef": {"resource": "pods"}, "responseStatus": {"code": 200}},
    ]
    log = tmp_path / "audit.log"
    log.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    events = audit_events(log, user)
    assert used(events) == {("aim.engine.amd.com", "aimendpoints/status", "patch"): {"x"},
                            ("", "pods", "list"): {""},
                            ("apps", "deployments", "patch"): {"x"},
                            ("apps", "deployments", "create"): {"x"}}
    assert denied(events) == ["list /api/v1/pods: no"]
