"""Where the operator's memory goes: import cost and the initial pod list's transient.

``python -m aimbench.memory`` (from bench/) prints:

- the RSS of a fresh interpreter after each import the operator makes, cumulative
  (each line is a new process importing the modules so far): the API client, pydantic,
  our CRD models, the whole entry point;
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

STAGES = ("kubernetes_asyncio.client", "pydantic", "aim_controller.api.v1alpha1",
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


if __name__ == "__main__":
    for row in import_costs():
        print(row)
    print(list_transient())
