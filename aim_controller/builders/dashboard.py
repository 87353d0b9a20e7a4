"""The Grafana dashboard ConfigMap (v1) ``<name>-dashboard``.

Built when ``monitoring.enabled`` and ``monitoring.grafana.enabled`` (it needs no
CRD). It follows the Grafana dashboard sidecar convention (kube-prometheus-stack,
the Grafana Helm chart): label ``grafana_dashboard: "1"``, one ``*.json`` key per
dashboard. Since the sidecar writes every key into one folder, the key is
``aim-endpoint-<namespace>-<name>.json`` and the dashboard uid is derived from
``<namespace>/<name>``, so endpoints never overwrite each other's dashboards; the
title is ``<monitoring.grafana.dashboard or "AIM Endpoint"> (<namespace>/<name>)``.

Panels: request throughput, requests in flight, end-to-end latency p50/p95/p99,
time to first token, tokens/s, GPU utilization (``gpu_gfx_activity``), KV cache
usage (``vllm:gpu_cache_usage_perc``, or ``vllm:kv_cache_usage_perc`` of newer vLLM),
replicas, and the recipe in use (from the operator's ``aim_endpoint_info`` gauge,
which the reconciler must export with labels ``namespace``, ``aimendpoint``,
``recipe``, ``source``, ``hardware``, ``precision``, ``backend``, ``gpu_count``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .meta import COMPONENT_MONITORING, EndpointRef, endpoint_ref, object_meta
from .promql import endpoint_selector, pod_selector, service_selector

__all__ = [
    "DASHBOARD_LABEL",
    "build_dashboard_config_map",
    "dashboard_json",
    "dashboard_name",
    "dashboard_wanted",
]

DASHBOARD_LABEL = "grafana_dashboard"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_RATE = "$__rate_interval"


def dashboard_name(name: str) -> str:
    return f"{name}-dashboard"


def dashboard_wanted(endpoint: AIMEndpoint) -> bool:
    m = endpoint.spec.monitoring
    return m.enabled and m.grafana.enabled


def _target(expr: str, legend: str, ref_id: str, *, instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": _DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref_id,
    }
    if instant:
        t |= {"instant": True, "range": False, "format": "table"}
    return t


def _timeseries(
    title: str, unit: str, targets: list[dict[str, Any]], *, max_value: float | None = None
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "min": 0}
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "type": "timeseries",
        "title": title,
        "datasource": _DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": targets,
    }


def _quantiles(metric: str, svc: str) -> list[dict[str, Any]]:
    return [
        _target(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{svc}}}[{_RATE}])))",
            f"p{int(q * 100)}", chr(ord("A") + i),
        )
        for i, q in enumerate((0.5, 0.95, 0.99))
    ]


def _panels(ref: EndpointRef) -> list[dict[str, Any]]:
    svc, pods = service_selector(ref), pod_selector(ref)
    ns = ref.namespace
    deploy = f'namespace="{ns}",deployment="{ref.name}"'
    hpa = f'namespace="{ns}",horizontalpodautoscaler="{ref.name}"'
    recipe_table = {
        "type": "table",
        "title": "Recipe",
        "datasource": _DATASOURCE,
        "targets": [_target(f"aim_endpoint_info{{{endpoint_selector(ref)}}}", "", "A",
                            instant=True)],
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True,
                              "instance": True, "endpoint": True, "pod": True,
                              "service": True, "container": True},
        }}],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
    }
    panels = [
        _timeseries("Request throughput", "reqps", [
            _target(f"sum(rate(vllm:request_success_total{{{svc}}}[{_RATE}]))", "requests/s", "A"),
        ]),
        _timeseries("Requests in flight", "short", [
            _target(f"sum(vllm:num_requests_running{{{svc}}})", "running", "A"),
            _target(f"sum(vllm:num_requests_waiting{{{svc}}})", "waiting", "B"),
        ]),
        _timeseries("End-to-end latency", "s",
                    _quantiles("vllm:e2e_request_latency_seconds", svc)),
        _timeseries("Time to first token", "s",
                    _quantiles("vllm:time_to_first_token_seconds", svc)),
        _timeseries("Tokens per second", "short", [
            _target(f"sum(rate(vllm:generation_tokens_total{{{svc}}}[{_RATE}]))", "generated", "A"),
            _target(f"sum(rate(vllm:prompt_tokens_total{{{svc}}}[{_RATE}]))", "prompt", "B"),
        ]),
        _timeseries("GPU utilization", "percent", [
            _target(f"avg by (pod) (gpu_gfx_activity{{{pods}}})", "{{pod}}", "A"),
        ], max_value=100),
        _timeseries("KV cache usage", "percentunit", [
            _target(f"avg by (pod) (vllm:gpu_cache_usage_perc{{{svc}}}"
                    f" or vllm:kv_cache_usage_perc{{{svc}}})", "{{pod}}", "A"),
        ], max_value=1),
        _timeseries("Replicas", "short", [
            _target(f"max(kube_deployment_spec_replicas{{{deploy}}})", "desired", "A"),
            _target(f"max(kube_deployment_status_replicas_available{{{deploy}}})",
                    "available", "B"),
            _target(f"max(kube_horizontalpodautoscaler_status_desired_replicas{{{hpa}}})",
                    "autoscaler desired", "C"),
        ]),
        recipe_table,
    ]
    for i, p in enumerate(panels):
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return panels


def dashboard_json(endpoint: AIMEndpoint) -> dict[str, Any]:
    """The Grafana dashboard model (schemaVersion 39)."""
    ref = endpoint_ref(endpoint)
    base = endpoint.spec.monitoring.grafana.dashboard or "AIM Endpoint"
    uid = "aim-" + hashlib.sha256(f"{ref.namespace}/{ref.name}".encode()).hexdigest()[:24]
    return {
        "uid": uid,
        "title": f"{base} ({ref.namespace}/{ref.name})",
        "tags": ["aim-engine", "llm-inference", "amd-gpu"],
        "editable": False,
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": _panels(ref),
    }


def build_dashboard_config_map(endpoint: AIMEndpoint) -> dict[str, Any] | None:
    if not dashboard_wanted(endpoint):
        return None
    ref = endpoint_ref(endpoint)
    body = json.dumps(dashboard_json(endpoint), sort_keys=True, indent=2, ensure_ascii=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            endpoint, dashboard_name(ref.name), component=COMPONENT_MONITORING,
            extra_labels={DASHBOARD_LABEL: "1"},
        ),
        "data": {f"aim-endpoint-{ref.namespace}-{ref.name}.json": body + "\n"},
    }
