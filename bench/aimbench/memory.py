"""Where the operator's memory goes: import cost and the initial pod list's transient.

``python -m aimbench.memory`` (from bench/) prints:

- the RSS of a fresh interpreter after each import the operator makes, cumulative
  (each line is a new process importing the modules so far): aiohttp (our REST
  client's transport), pydantic, our CRD models, the whole entry point;
- what listing ``pods`` pods costs while it happens: tracemalloc's peak per pod for
  whole pods (as the API server serves them, managedFields included;
  ``pod_templates.json``) against what the slim pod keeps afterwards;
- the RSS a process is left with after listing 30,000 pods into a slim store: decoded
  in one response, then slimmed (the reflector before it paged: kube-apiserver answers
  resourceVersion=0 whole), 500 at a time, and through the operator's own
  ``Reflector`` (its ``list_page`` served from memory in pages of 500).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from aim_controller.reconcilers.pod_slim import slim_pod

from .podcache import simulated_pods

STAGES = ("aiohttp", "pydantic", "aim_controller.api.v1alpha1",
          "aim_controller.main")
_PROBE = ("import sys\nfor m in sys.argv[1:]:\n    __import__(m)\n"
          "print(next(int(l.split()[1]) for l in open('/proc/self/status') "
          "if l.startswith('VmRSS:')))")


def _rss_kb_after(modules: tuple[str, ...]) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    return int(out.stdout.strip())


def import_costs() -> list[dict[str, Any]]:
    """RSS (MB) of a fresh interpreter after importing each stage and those before it."""
    rows = [{"import": "(python)", "rssMB": round(_rss_kb_after(()) / 1024, 1)}]
    for i in range(len(STAGES)):
        rss = _rss_kb_after(STAGES[: i + 1])
        rows.append({"import": STAGES[i], "rssMB": round(rss / 1024, 1),
                     "addsMB": round(rss / 1024 - rows[-1]["rssMB"], 1)})
    return rows


def list_transient(pods: int = 5000) -> dict[str, Any]:
    """Bytes per pod held while a list of ``pods`` whole pods is decoded (the peak the
    reflector reaches before slimming), and after slimming."""
    whole = list(simulated_pods(pods))  # decoded once, to get the JSON of each
    raw = [json.dumps(p) for p in whole]
    del whole
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        items = [json.loads(s) for s in raw]
        held_whole = tracemalloc.get_traced_memory()[0] - base
        slim = [slim_pod(p) for p in items]
        del items
        gc.collect()
        held_slim = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(slim) == pods
    return {"pods": pods, "jsonBytesPerPod": round(sum(map(len, raw)) / pods),
            "decodedBytesPerPod": round(held_whole / pods),
            "slimBytesPerPod": round(held_slim / pods)}


_LIST_RSS = """
import gc, itertools, json, sys
sys.path.insert(0, "bench")
from aimbench.podcache import simulated_pods
from aim_controller.reconcilers.pod_slim import slim_pod
def status(k):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(k)) // 1024
mode, n = sys.argv[1], int(sys.argv[2])
page = n if mode == "whole" else 500
store = {}
base = status("VmRSS:")
pods = simulated_pods(n)
if mode == "reflector":
    import asyncio
    from aim_controller.machinery import reflector as r
    from aim_controller.machinery.resource import PODS, ObjectList, list_page
    from aim_controller.machinery.store import Indexer
    async def served(*a, continue_token=None, **kw):
        body = json.dumps({"items": list(itertools.islice(pods, page))}).encode()
        done = int(continue_token or 0) + page
        return ObjectList(json.loads(body)["items"], "1", str(done) if done < n else "")
    r.list_page = served
    ref = r.Reflector(None, PODS, Indexer(), [], transform=slim_pod, page_size=page)
    asyncio.run(ref._list())
    assert len(ref.store) == n
    n = 0
for _ in range(0, n, page):
    body = json.dumps({"items": list(itertools.islice(pods, page))}).encode()
    items = json.loads(body)["items"]
    del body
    for o in items:
        s = slim_pod(o)
        store[s["metadata"]["uid"]] = s
    del items, o
gc.collect()
print(json.dumps({"rssBeforeMB": base, "rssAfterMB": status("VmRSS:"), "peakMB": status("VmHWM:")}))
"""


def list_rss(pods: int, *, mode: str) -> dict[str, Any]:
    """RSS of a fresh process after it decoded a list of ``pods`` whole pods and kept them
    slim: ``whole``, in one response (what the reflector did before it paged: the API
    server serves a list at resourceVersion=0 from its watch cache in one piece, ignoring
    ``limit``); ``paged``, page by page (500), slimming each page before decoding the
    next; ``reflector``, the operator's ``Reflector`` doing the same."""
    out = subprocess.run([sys.executable, "-c", _LIST_RSS, mode, str(pods)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    return {"pods": pods, "mode": mode, **json.loads(out.stdout.splitlines()[-1])}


if __name__ == "__main__":
    for row in import_costs():
        print(row)
    print(list_transient())
    for mode in ("whole", "paged", "reflector"):
        print(list_rss(30_000, mode=mode))
