"""Correctness of a namespace's end state, read fresh from the API server.

:func:`check_namespace` returns a :class:`Verdict` listing every problem:

* *lost*: an endpoint the run created is missing, or its spec is not at the
  revision the run last wrote (an update of ours was lost);
* *not converged*: ``observedGeneration`` behind ``generation``, or not Ready
  (when Ready is required);
* *stale*: the Service does not carry the endpoint's current revision (the
  operator never applied the last spec change);
* *missing* / *duplicate*: an expected child is absent, or the endpoint
  controls a child of a kind/name it should not have (two Deployments, ...);
* *orphan*: a child managed by aim-controller whose controlling endpoint is
  gone (or that has no controller at all);
* *misplaced*: a pod of an endpoint bound to a node that must not hold it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kube import Kube, collection_path
from .workload import (
    REV,
    controller_uid,
    expected_children,
    is_ready,
    list_children,
    list_endpoints,
    observed_current,
    spec_rev,
)


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, limit: int = 5) -> str:
        if self.ok:
            return "ok"
        kinds: dict[str, int] = defaultdict(int)
        for p in self.problems:
            kinds[p.split(":", 1)[0]] += 1
        head = ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
        return f"{head}; e.g. {'; '.join(self.problems[:limit])}"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems[:50],
                "problemCount": len(self.problems), "counts": self.counts}


async def check_namespace(kube: Kube, namespace: str, *,
                          expected: Mapping[str, int] | None = None,
                          require_ready: bool = True,
                          forbidden_nodes: Collection[str] = ()) -> Verdict:
    """``expected``: endpoint name -> the revision the run last wrote (None: whatever
    exists is expected)."""
    v = Verdict()
    eps = {e["metadata"]["name"]: e for e in await list_endpoints(kube, namespace)}
    children = await list_children(kube, namespace)
    uids = {e["metadata"]["uid"]: name for name, e in eps.items()}

    if expected is not None:
        for name, rev in sorted(expected.items()):
            ep = eps.get(name)
            if ep is None:
                v.problems.append(f"lost: endpoint {name} is missing")
            elif spec_rev(ep) != str(rev):
                v.problems.append(f"lost: {name} spec at rev {spec_rev(ep)}, wrote {rev}")
        for name in sorted(set(eps) - set(expected)):
            v.problems.append(f"unexpected: endpoint {name} exists")

    owned: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    services: dict[str, dict[str, Any]] = {}
    for c in children:
        kind, name = c["kind"], c["metadata"]["name"]
        uid = controller_uid(c)
        if uid is None:
            if kind != "PersistentVolumeClaim":  # a retained cache PVC has no owner
                v.problems.append(f"orphan: {kind}/{name} has no controlling AIMEndpoint")
            continue
        if uid not in uids:
            if c["metadata"].get("deletionTimestamp") is None:
                v.problems.append(f"orphan: {kind}/{name} controlled by a deleted endpoint")
            continue
        owned[uids[uid]][(kind, name)] += 1
        if kind == "Service":
            services[uids[uid]] = c

    for name, ep in sorted(eps.items()):
        if ep["metadata"].get("deletionTimestamp"):
            continue
        want = expected_children(ep)
        have = owned.get(name, {})
        for kind, child in sorted(want - set(have)):
            v.problems.append(f"missing: {name} has no {kind}/{child}")
        for (kind, child), n in sorted(have.items()):
            if (kind, child) not in want:
                v.problems.append(f"duplicate: {name} controls unexpected {kind}/{child}")
            elif n > 1:
                v.problems.append(f"duplicate: {name} controls {n} x {kind}/{child}")
        if not observed_current(ep):
            st = ep.get("status") or {}
            v.problems.append(f"not-converged: {name} observedGeneration "
                              f"{st.get('observedGeneration')} != "
                              f"{ep['metadata'].get('generation')}")
        elif require_ready and not is_ready(ep):
            v.problems.append(f"not-ready: {name}")
        svc = services.get(name)
        if svc is not None:
            have_rev = (svc["metadata"].get("annotations") or {}).get(REV)
            if have_rev != spec_rev(ep):
                v.problems.append(f"stale: {name} Service at rev {have_rev}, spec {spec_rev(ep)}")

    if forbidden_nodes:
        pods, _ = await kube.list(collection_path("v1", "Pod", namespace))
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node in forbidden_nodes and not p["metadata"].get("deletionTimestamp"):
                v.problems.append(f"misplaced: pod {p['metadata']['name']} on {node}")

    v.counts = {"endpoints": len(eps), "children": len(children),
                "ready": sum(1 for e in eps.values() if is_ready(e)),
                "converged": sum(1 for e in eps.values() if observed_current(e))}
    return v


async def wait_verdict(kube: Kube, namespace: str, within: float, *,
                       interval: float = 3.0, **kw: Any) -> Verdict:
    """Re-checks until the namespace passes or ``within`` seconds pass; the last verdict."""
    deadline = time.monotonic() + within
    while True:
        try:
            v = await check_namespace(kube, namespace, **kw)
        except Exception as e:  # the API server may be coming back
            v = Verdict(problems=[f"error: {type(e).__name__}: {e}"])
        if v.ok or time.monotonic() >= deadline:
            return v
        await asyncio.sleep(interval)
