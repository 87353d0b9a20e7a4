"""Tables, JSON and the convergence plot of a bench run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int):
        return format(v, spec)
    return str(v)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(out)


def bench_table(results: Sequence[dict[str, Any]]) -> str:
    header = ["N", "apply s", "converged s", "ready s", "raw s", "ratio", "ratio settled",
              "writes/ep",
              "GET/ep", "CPU s/ep", "quiet W", "quiet R", "peak MB", "KB/ep", "rec p50 ms",
              "rec p99 ms", "chg p50 ms", "chg p99 ms", "correct"]
    rows = []
    for r in results:
        rec = r.get("reconcileSeconds") or {}
        lat = r.get("specChangeLatency") or {}
        quiet = r.get("quiet") or {}
        rss = r.get("rss") or {}
        raw = r.get("raw") or {}
        ms = lambda s: None if s is None else s * 1e3  # noqa: E731
        rows.append([
            str(r["n"]), _fmt(r.get("applySeconds")), _fmt(r.get("convergedSeconds")),
            _fmt(r.get("readySeconds")), _fmt(raw.get("seconds")), _fmt(r.get("ratio"), ".2f"),
            _fmt(r.get("ratioSettled"), ".2f"),
            _fmt(r.get("writesPerEndpointAtConvergence"), ".2f"),
            _fmt((r.get("requestsPerEndpoint") or {}).get("GET"), ".2f"),
            _fmt(r.get("cpuSecondsPerEndpoint"), ".3f"),
            _fmt(quiet.get("writes"), ".0f"), _fmt(quiet.get("reads"), ".0f"),
            _fmt(rss.get("peakMB")), _fmt(rss.get("growthKBPerEndpoint")),
            _fmt(ms(rec.get("p50")), ".0f"), _fmt(ms(rec.get("p99")), ".0f"),
            _fmt(ms(lat.get("p50")), ".0f"), _fmt(ms(lat.get("p99")), ".0f"),
            "yes" if (r.get("correct") or {}).get("ok") else "NO",
        ])
    return table(rows, header)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def plot_convergence(results: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Endpoints converged (solid) and Ready (dashed) over time, one colour per N."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, r in enumerate(results):
        color = f"C{i}"
        for key, style, what in (("curve", "-", "converged"), ("readyCurve", "--", "Ready")):
            pts = r.get(key) or []
            if not pts:
                continue
            xs = [0.0] + [p[0] for p in pts]
            ys = [0] + [p[1] for p in pts]
            ax.step(xs, ys, where="post", linestyle=style, color=color,
                    label=f"N={r['n']} {what}")
        raw = (r.get("raw") or {}).get("seconds")
        if raw:
            ax.axvline(raw, color=color, linestyle=":", linewidth=1,
                       label=f"N={r['n']} raw SSA loop")
    ax.set_xlabel("seconds since the endpoints were applied")
    ax.set_ylabel("endpoints")
    ax.set_title("aim-controller: endpoints converged over time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
