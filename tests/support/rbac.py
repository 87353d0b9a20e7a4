"""RBAC as sets of permissions, and the permissions an identity used, from the API
server's audit log: what the least-privilege tests compare.

A permission is (apiGroup, resource, verb), with a subresource written
``resource/subresource`` as RBAC rules write it. Only plain rules are understood:
a wildcard, a resourceName or a nonResourceURL in a rule is an error (the
operator's role must not have them)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Permission = tuple[str, str, str]


def granted(rules: Iterable[Mapping[str, Any]]) -> set[Permission]:
    out: set[Permission] = set()
    for rule in rules:
        if rule.get("resourceNames") or rule.get("nonResourceURLs"):
            raise ValueError(f"rule narrows by name or URL, not understood here: {rule}")
        groups, resources, verbs = (list(rule.get(k) or ()) for k in
                                    ("apiGroups", "resources", "verbs"))
        if "*" in groups + resources + verbs:
            raise ValueError(f"wildcard in rule: {rule}")
        out |= {(g, r, v) for g in groups for r in resources for v in verbs}
    return out


def role_rules(docs: Iterable[Mapping[str, Any] | None]) -> dict[str, set[Permission]]:
    """``ClusterRole`` or ``Role/<namespace>`` -> its permissions, from manifests."""
    out: dict[str, set[Permission]] = {}
    for d in docs:
        if not d or d.get("kind") not in ("ClusterRole", "Role"):
            continue
        meta = d.get("metadata") or {}
        where = "ClusterRole" if d["kind"] == "ClusterRole" else f"Role/{meta.get('namespace')}"
        out.setdefault(where, set()).update(granted(d.get("rules") or ()))
    return out


def audit_events(log: Path, user: str) -> list[dict[str, Any]]:
    """The ResponseComplete events of ``user`` (the policy logs at Metadata level)."""
    events = []
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        if (e.get("user") or {}).get("username") == user and \
                e.get("stage") == "ResponseComplete":
            events.append(e)
    return events


def used(events: Iterable[Mapping[str, Any]]) -> dict[Permission, set[str]]:
    """Each permission the events exercised (whether allowed or not) -> the namespaces
    it was used in ("" for cluster scope or all namespaces). A patch that created its
    object (201) used create as well."""
    out: dict[Permission, set[str]] = {}
    for e in events:
        ref = e.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery, /version, ...: not resource requests
        res = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        verbs = [e["verb"]]
        # A server-side apply that creates is audited as a patch answered 201; the API
        # server authorised it as a create too.
        if e["verb"] == "patch" and (e.get("responseStatus") or {}).get("code") == 201:
            verbs.append("create")
        for verb in verbs:
            out.setdefault((ref.get("apiGroup") or "", res, verb), set()).add(
                ref.get("namespace") or "")
    return out


def denied(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per request the API server refused for lack of permission."""
    return [f"{e['verb']} {e.get('requestURI')}: {(e.get('responseStatus') or {}).get('message')}"
            for e in events if (e.get("responseStatus") or {}).get("code") == 403]
