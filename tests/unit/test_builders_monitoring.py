"""ServiceMonitor, PrometheusRule and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from test_builders_support import SETTINGS, endpoint, structural_problems

from aim_controller.builders import (
    OperatorSettings,
    build_dashboard_config_map,
    build_prometheus_rule,
    build_service_monitor,
    selector_labels,
)
from aim_controller.builders.promql import pod_name_regex

MONITORED = {"monitoring": {"enabled": True, "prometheus": {"enabled": True, "interval": "15s"},
                            "grafana": {"enabled": True}}}


def test_nothing_without_monitoring() -> None:
    ep = endpoint()
    assert build_service_monitor(ep, SETTINGS, monitoring_available=True) is None
    assert build_prometheus_rule(ep, SETTINGS, monitoring_available=True) is None
    assert build_dashboard_config_map(ep) is None


def test_prometheus_objects_only_when_the_crds_exist() -> None:
    ep = endpoint(MONITORED)
    assert build_service_monitor(ep, SETTINGS, monitoring_available=False) is None
    assert build_prometheus_rule(ep, SETTINGS, monitoring_available=False) is None
    assert build_dashboard_config_map(ep) is not None


def test_prometheus_disabled() -> None:
    ep = endpoint({"monitoring": {"enabled": True, "prometheus": {"enabled": False}}})
    assert build_service_monitor(ep, SETTINGS, monitoring_available=True) is None
    assert build_prometheus_rule(ep, SETTINGS, monitoring_available=True) is None


def test_service_monitor() -> None:
    sm = build_service_monitor(endpoint(MONITORED, name="qwen"), SETTINGS,
                               monitoring_available=True)
    assert sm is not None
    assert (sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert sm["spec"] == {
        "selector": {"matchLabels": selector_labels("qwen")},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
    }
    assert sm["metadata"]["labels"]["app.kubernetes.io/name"] == "aim-endpoint"
    assert structural_problems(sm) == []


def test_monitoring_labels_from_settings() -> None:
    s = OperatorSettings(monitoring_labels={"release": "kube-prometheus-stack"})
    ep = endpoint(MONITORED)
    for obj in (build_service_monitor(ep, s, monitoring_available=True),
                build_prometheus_rule(ep, s, monitoring_available=True)):
        assert obj is not None
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"


class TestPrometheusRule:
    def rules(self) -> list[dict[str, Any]]:
        pr = build_prometheus_rule(endpoint(MONITORED, name="qwen"), SETTINGS,
                                   monitoring_available=True)
        assert pr is not None
        assert structural_problems(pr) == []
        (group,) = pr["spec"]["groups"]
        assert group["name"] == "aim-endpoint.aim-engine.qwen"
        rules: list[dict[str, Any]] = group["rules"]
        return rules

    def test_every_alert_is_complete(self) -> None:
        names = [r["alert"] for r in self.rules()]
        assert names == ["AIMEndpointHighLatency", "AIMEndpointLowGPUUtilization",
                         "AIMEndpointMemoryPressure", "AIMEndpointPodRestarts",
                         "AIMEndpointRecipeSelectionFailed"]
        for r in self.rules():
            assert re.fullmatch(r"[0-9]+[smh]", r["for"])
            assert r["labels"]["severity"] in {"info", "warning", "critical"}
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            assert r["expr"].count("(") == r["expr"].count(")")
            assert r["expr"].count("{") == r["expr"].count("}")

    @pytest.mark.parametrize(("alert", "fragments"), [
        ("AIMEndpointHighLatency", ["histogram_quantile(0.95",
                                    "vllm:e2e_request_latency_seconds_bucket", "> 0.5",
                                    'service="qwen"']),
        ("AIMEndpointLowGPUUtilization", ["gpu_gfx_activity", "< 50"]),
        ("AIMEndpointMemoryPressure", ["container_memory_working_set_bytes",
                                       'resource="memory"', "> 0.9"]),
        ("AIMEndpointPodRestarts", ["increase(kube_pod_container_status_restarts_total"]),
        ("AIMEndpointRecipeSelectionFailed", ['aim_endpoint_condition{', 'aimendpoint="qwen"',
                                              'condition="RecipeSelected"', 'status="false"']),
    ])
    def test_expressions(self, alert: str, fragments: list[str]) -> None:
        expr = next(r["expr"] for r in self.rules() if r["alert"] == alert)
        for f in fragments:
            assert f in expr
        assert 'namespace="aim-engine"' in expr


def test_pod_regex_does_not_match_a_longer_endpoint_name() -> None:
    rx = re.compile(pod_name_regex("qwen"))
    assert rx.fullmatch("qwen-5d8f9c7b6-x2x4z")
    assert not rx.fullmatch("qwen-7b-5d8f9c7b6-x2x4z")
    assert not rx.fullmatch("qwen-config")


class TestDashboard:
    def test_config_map(self) -> None:
        cm = build_dashboard_config_map(endpoint(MONITORED | {"monitoring": {
            "enabled": True, "grafana": {"enabled": True, "dashboard": "aim-endpoint-dashboard"}}},
            name="qwen"))
        assert cm is not None
        assert cm["metadata"]["name"] == "qwen-dashboard"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert structural_problems(cm) == []
        (key,) = cm["data"]
        assert key == "aim-endpoint-aim-engine-qwen.json"
        dash = json.loads(cm["data"][key])
        assert dash["title"] == "aim-endpoint-dashboard (aim-engine/qwen)"
        assert len(dash["uid"]) <= 40
        titles = [p["title"] for p in dash["panels"]]
        for wanted in ("Request throughput", "End-to-end latency", "Tokens per second",
                       "GPU utilization", "KV cache usage", "Replicas", "Recipe"):
            assert wanted in titles
        exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
        for metric in ("vllm:gpu_cache_usage_perc", "gpu_gfx_activity", "aim_endpoint_info",
                       "histogram_quantile(0.99", "vllm:generation_tokens_total"):
            assert metric in exprs
        ids = [p["id"] for p in dash["panels"]]
        assert len(set(ids)) == len(ids)

    def test_distinct_per_endpoint(self) -> None:
        a = build_dashboard_config_map(endpoint(MONITORED, name="a"))
        b = build_dashboard_config_map(endpoint(MONITORED, name="a", namespace="other"))
        assert a is not None and b is not None
        assert set(a["data"]) != set(b["data"])
        uid = [json.loads(next(iter(x["data"].values())))["uid"] for x in (a, b)]
        assert uid[0] != uid[1]
