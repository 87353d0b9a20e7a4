"""``aim_endpoint_condition`` and ``aim_endpoint_info``, computed from the cache at scrape time.

kube-state-metrics style: one series per (endpoint, condition, status) with value 1
for the current status, and an info gauge naming the recipe in use. Reading the
informer cache at scrape time means no bookkeeping in the reconcile and no stale
series for deleted endpoints. The PrometheusRule and the Grafana dashboard the
operator writes query these names.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aim_controller.machinery.store import ReadOnlyStore

_STATUSES = ("true", "false", "unknown")


class EndpointStatusCollector(Collector):
    def __init__(self, store: ReadOnlyStore) -> None:
        self._store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        cond = GaugeMetricFamily(
            "aim_endpoint_condition", "The condition of an AIMEndpoint (1 for its status)",
            labels=["namespace", "aimendpoint", "condition", "status"])
        info = GaugeMetricFamily(
            "aim_endpoint_info", "The recipe an AIMEndpoint runs",
            labels=["namespace", "aimendpoint", "recipe", "source", "hardware", "precision",
                    "backend", "gpu_count"])
        for obj in self._store.list():
            meta = obj.get("metadata") or {}
            ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            status = obj.get("status") or {}
            for c in status.get("conditions") or ():
                current = str(c.get("status", "Unknown")).lower()
                for s in _STATUSES:
                    cond.add_metric([ns, name, str(c.get("type")), s],
                                    1.0 if s == current else 0.0)
            rec = status.get("recipe") or {}
            if rec.get("recipeName"):
                info.add_metric([ns, name, str(rec["recipeName"]), str(rec.get("source", "")),
                                 str(rec.get("hardware", "")), str(rec.get("precision", "")),
                                 str(rec.get("backend", "")), str(rec.get("gpuCount", ""))], 1.0)
        yield cond
        yield info

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
