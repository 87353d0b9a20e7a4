"""The limit: the same child objects written by a bare asyncio server-side-apply loop.

No informers, no diff, no status: ``concurrency`` workers each take one
endpoint's children and apply them in order, as one reconcile would. The
client is the operator's own (``KubeClient.call``), so
the ratio measures the controller, not the HTTP library.

The objects are what the operator applied, read back from the cluster and cut
down to the fields its field manager owns (:func:`extract_owned`, client-go's
``ExtractInto``), then moved to another namespace without ownerReferences
(their owners do not exist there). Deployments keep their replicas: the
control plane creates, schedules and runs their pods during the loop just as it
does while the operator converges, so both runs share the API server with the
same pod work. (The caller frees the endpoints' GPUs first.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from aim_controller.machinery.httpclient import Timeout
from aim_controller.machinery.kubeclient import ApiException, KubeClient, load_kubeconfig
from aim_controller.machinery.writer import DEFAULT_FIELD_VALIDATION

from .kube import APPLY, Obj, object_path

RAW_MANAGER = "aim-bench-raw"


def _pick(value: Any, fields: dict[str, Any]) -> Any:
    """The part of ``value`` that the managedFields trie ``fields`` covers."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in fields.items():
            if key.startswith("f:"):
                name = key[2:]
                if name in value:
                    out[name] = _pick(value[name], sub) if _has_children(sub) else value[name]
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for key, sub in fields.items():
            if key.startswith("k:"):
                want = json.loads(key[2:])
                for el in value:
                    if isinstance(el, dict) and all(el.get(k) == v for k, v in want.items()):
                        # the key fields identify the entry: an apply must carry them
                        items.append({**want, **_pick(el, sub)} if _has_children(sub) else el)
                        break
            elif key.startswith("v:"):
                items.append(json.loads(key[2:]))
            elif key.startswith("i:"):
                idx = int(key[2:])
                if idx < len(value):
                    items.append(_pick(value[idx], sub) if _has_children(sub) else value[idx])
        return items
    return value


def _has_children(sub: Any) -> bool:
    return isinstance(sub, dict) and any(k != "." for k in sub)


def extract_owned(obj: Obj, manager: str) -> Obj | None:
    """The apply configuration ``manager`` owns in ``obj`` (its last Apply), or None."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (entry.get("manager") == manager and entry.get("operation") == "Apply"
                and not entry.get("subresource")):
            owned = _pick(obj, entry.get("fieldsV1") or {})
            owned["apiVersion"] = obj["apiVersion"]
            owned["kind"] = obj["kind"]
            meta = owned.setdefault("metadata", {})
            meta["name"] = obj["metadata"]["name"]
            if obj["metadata"].get("namespace"):
                meta["namespace"] = obj["metadata"]["namespace"]
            return owned
    return None


def relocate(owned: Obj, namespace: str) -> Obj:
    """``owned`` moved to ``namespace``, without ownerReferences."""
    out = json.loads(json.dumps(owned))
    out["metadata"]["namespace"] = namespace
    out["metadata"].pop("ownerReferences", None)
    return out


def start_offsets(groups: int, spread_over: float | None) -> list[float]:
    """When each group may start, in seconds from the first: all at once (0), or evenly
    over ``spread_over`` seconds (the last group starts just before it ends)."""
    if not spread_over or groups <= 0:
        return [0.0] * max(groups, 0)
    return [i * spread_over / groups for i in range(groups)]


async def raw_apply(kubeconfig: str, groups: Sequence[Sequence[Obj]], concurrency: int,
                    *, manager: str = RAW_MANAGER,
                    spread_over: float | None = None) -> dict[str, Any]:
    """Applies each group's objects in order, ``concurrency`` groups at a time.
    With ``spread_over``, no group starts before its turn (:func:`start_offsets`): the
    same writes at another pace. Returns seconds, writes and failures."""
    queue: asyncio.Queue[tuple[float, Sequence[Obj]]] = asyncio.Queue()
    for offset, g in zip(start_offsets(len(groups), spread_over), groups, strict=True):
        queue.put_nowait((offset, g))
    writes = failures = 0
    timeout = Timeout(total=60, sock_connect=10)

    async with KubeClient(load_kubeconfig(kubeconfig), pool_size=max(concurrency, 10)) as api:

        async def apply(obj: Obj) -> None:
            nonlocal writes, failures
            writes += 1
            try:
                resp = await api.call(
                    "PATCH", object_path(obj),
                    # the operator's writer's query (machinery/writer.py)
                    query=[("fieldManager", manager),
                           ("fieldValidation", DEFAULT_FIELD_VALIDATION), ("force", "true")],
                    headers={"Accept": "application/json", "Content-Type": APPLY},
                    body=json.dumps(obj).encode(), request_timeout=timeout,
                )
            except ApiException:
                failures += 1
                return
            async with resp:
                await resp.read()

        async def worker() -> None:
            while not queue.empty():
                offset, group = queue.get_nowait()
                wait = start + offset - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                for obj in group:
                    await apply(obj)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - start
    return {"seconds": seconds, "writes": writes, "failures": failures,
            "concurrency": concurrency, "groups": len(groups), "spreadOver": spread_over}
