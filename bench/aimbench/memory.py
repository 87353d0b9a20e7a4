"""Where the operator's memory goes: import cost and the initial pod list's transient.

``python -m aimbench.memory`` (from bench/) prints:

- the RSS of a fresh interpreter after each import the operator makes, cumulative
  (each line is a new process importing the modules so far): aiohttp (our REST
  client's transport), pydantic, our CRD models, the whole entry point;
- what listing ``pods`` pods costs while it happens: the reflector holds every item
  of the list, decoded, before it slims them (``list_objects`` follows every page,
  then ``_apply_list`` transforms); tracemalloc's peak per pod for whole pods (as the
  API server serves them, managedFields included; ``pod_templates.json``) against
  what the slim pod keeps afterwards.
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
paged, n = sys.argv[1] == "paged", int(sys.argv[2])
page = 500 if paged else n
store = {}
base = status("VmRSS:")
pods = simulated_pods(n)
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


def list_rss(pods: int, *, paged: bool) -> dict[str, Any]:
    """RSS of a fresh process after it decoded a list of ``pods`` whole pods and kept them
    slim: in one response (what the reflector does: the API server serves a list at
    resourceVersion=0 from its watch cache in one piece, ignoring ``limit``), or page by
    page (500), slimming each page before decoding the next."""
    out = subprocess.run([sys.executable, "-c", _LIST_RSS, "paged" if paged else "whole",
                          str(pods)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    return {"pods": pods, "paged": paged, **json.loads(out.stdout)}


if __name__ == "__main__":
    for row in import_costs():
        print(row)
    print(list_transient())
    for paged in (False, True):
        print(list_rss(30_000, paged=paged))
