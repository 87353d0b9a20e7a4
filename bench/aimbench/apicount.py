"""What kube-apiserver itself counted over a window: requests by verb and resource,
and watch events sent by resource (its own ``/metrics``), so the operator's run and
the raw loop can be compared request by request.

Scrapes are kept as text and parsed after the runs, so that parsing a few MB of
metrics costs no CPU inside the windows being measured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from .kube import Kube
from .metrics import Metrics

Counts = dict[str, float]


async def scrape(kube: Kube) -> str:
    return await kube.get_text("/metrics")


def counts(text: str) -> Counts:
    """``VERB resource[/subresource]`` -> requests (``VERB ... [409]`` for those refused:
    a controller retrying on a stale cache), ``watch events resource`` -> events."""
    m = Metrics.parse(text)
    out: dict[str, float] = defaultdict(float)
    for d, v in m.select("apiserver_request_total"):
        sub = d.get("subresource")
        code = d.get("code", "")
        # refused requests (conflicts above all) are kept apart: they are retries
        failed = "" if code.startswith("2") or not code else f" [{code}]"
        out[f"{d.get('verb', '')} {d.get('resource', '')}{'/' + sub if sub else ''}{failed}"] += v
    for d, v in m.select("apiserver_watch_events_total"):
        out[f"watch events {d.get('resource', '')}"] += v
    return dict(out)


def window(before: str, after: str) -> Counts:
    """What was counted between two scrapes (series absent before count from 0)."""
    a, b = counts(before), counts(after)
    return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0)}


def differences(run: Mapping[str, float], raw: Mapping[str, float], n: int, *,
                at_least: float = 0.05) -> list[tuple[str, float, float]]:
    """(what, per endpoint in the operator's run, in the raw loop) where the two differ
    by ``at_least`` per endpoint or more, the largest difference first."""
    if n <= 0:
        return []
    rows = [(k, run.get(k, 0.0) / n, raw.get(k, 0.0) / n) for k in set(run) | set(raw)]
    rows = [r for r in rows if abs(r[1] - r[2]) >= at_least]
    return sorted(((k, round(a, 3), round(b, 3)) for k, a, b in rows),
                  key=lambda r: (-(r[1] - r[2]), r[0]))


__all__ = ["counts", "differences", "scrape", "window"]
