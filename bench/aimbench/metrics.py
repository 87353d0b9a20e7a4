"""Prometheus text exposition, parsed into something the harness can subtract and query.

:meth:`Metrics.minus` gives the change of every counter and histogram between
two scrapes; :func:`histogram_quantile` interpolates a quantile the way
PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD", "LIST", "WATCH"})


@dataclass
class Metrics:
    """Samples of one scrape: (sample name, sorted labels) -> value."""

    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Metrics:
        out: dict[tuple[str, Labels], float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return cls(out)

    def minus(self, earlier: Metrics | None) -> Metrics:
        """This scrape minus an earlier one, series by series (a series absent earlier
        counts from 0). Meaningful for counters and histograms."""
        if earlier is None:
            return Metrics(dict(self.samples))
        return Metrics({k: v - earlier.samples.get(k, 0.0) for k, v in self.samples.items()})

    def select(self, name: str, **match: str) -> Iterable[tuple[dict[str, str], float]]:
        for (n, labels), v in self.samples.items():
            if n != name:
                continue
            d = dict(labels)
            if all(d.get(k) == val for k, val in match.items()):
                yield d, v

    def value(self, name: str, **match: str) -> float:
        return sum(v for _, v in self.select(name, **match))

    def by_label(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for d, v in self.select(name, **match):
            out[d.get(label, "")] += v
        return dict(sorted(out.items()))

    def buckets(self, name: str, **match: str) -> list[tuple[float, float]]:
        """Cumulative (le, count) of a histogram, summed over the matching series."""
        acc: dict[float, float] = defaultdict(float)
        for d, v in self.select(f"{name}_bucket", **match):
            acc[float(d["le"])] += v
        return sorted(acc.items())

    # -- the operator's client metrics ------------------------------------------------
    def requests_by_method(self) -> dict[str, float]:
        return self.by_label("rest_client_requests_total", "method")

    def requests_by_code(self) -> dict[str, float]:
        return self.by_label("rest_client_requests_total", "code")

    def writes(self) -> float:
        return sum(v for m, v in self.requests_by_method().items() if m.upper() in WRITE_METHODS)

    def reads(self) -> float:
        return sum(v for m, v in self.requests_by_method().items() if m.upper() in READ_METHODS)

    def reconciles(self, controller: str | None = None) -> float:
        match = {"controller": controller} if controller else {}
        return self.value("controller_runtime_reconcile_total", **match)

    def reconcile_errors(self) -> float:
        return self.value("controller_runtime_reconcile_errors_total")

    def controllers(self) -> list[str]:
        return sorted(self.by_label("controller_runtime_reconcile_total", "controller"))

    def queue_depth(self) -> float:
        return self.value("workqueue_depth")


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative (le, count) buckets; None when empty."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # the highest finite bound, as Prometheus does
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of ``values`` by linear interpolation; None when empty."""
    if not values:
        return None
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def per(values: Mapping[str, float], n: int) -> dict[str, float]:
    return {k: round(v / n, 3) for k, v in values.items()} if n else {}
