"""The canary's metric analysis: the PromQL, the verdict against the thresholds, and the
state machine holding a canary for a verdict, rolling back on a failed one."""

from __future__ import annotations

import json
from datetime import timedelta

from test_endpoint_canary import HEALTHY, T0, inp, then

from aim_controller.builders.promql import pod_name_regex
from aim_controller.reconcilers.canary_metrics import MetricSample, Thresholds, judge, queries
from aim_controller.reconcilers.endpoint_canary import MetricVerdict, Mode, step

T = Thresholds()


def test_queries_select_one_side_by_pod_name() -> None:
    q = queries("ns", pod_name_regex("ep-canary"), 5)
    assert q["error_rate"] == (
        'sum(rate(http_requests_total{namespace="ns",pod=~"ep-canary-'
        '[bcdfghjklmnpqrstvwxz2456789]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}",status="5xx"}'
        '[30s])) / sum(rate(http_requests_total{namespace="ns",pod=~"ep-canary-'
        '[bcdfghjklmnpqrstvwxz2456789]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}"}[30s]))')
    assert q["p95"].startswith("histogram_quantile(0.95, sum by (le) (rate("
                               "vllm:e2e_request_latency_seconds_bucket{")
    assert "[300s]" in queries("ns", "x", 300)["p95"]


def test_verdicts() -> None:
    ok = judge(MetricSample(0.0, 0.5), MetricSample(0.0, 0.5), T)
    assert not ok.failed and "within the thresholds" in ok.message
    slow = judge(MetricSample(0.0, 2.0), MetricSample(0.0, 0.5), T)
    assert slow.failed and slow.message.startswith("p95 latency 2s against the stable's 0.5s")
    errors = judge(MetricSample(0.05, 0.5), MetricSample(0.01, 0.5), T)
    assert errors.failed and errors.message.startswith("error rate 5.00% against")
    assert not judge(MetricSample(0.015, 0.59), MetricSample(0.01, 0.5), T).failed
    quiet = judge(MetricSample(None, None), MetricSample(None, None), T)
    assert not quiet.failed and quiet.message == "no requests to compare in the window"


def analyzed(metrics: MetricVerdict | None) -> tuple[Mode, dict[str, object]]:
    s1 = step(inp(metrics_required=True))
    s2 = step(then(s1, canary_template="new", health=HEALTHY, metrics_required=True))
    s3 = step(then(s2, canary_template="new", health=HEALTHY, metrics_required=True,
                   metrics=metrics, now=T0 + timedelta(seconds=61)))
    assert s3.record is not None
    return s3.mode, json.loads(json.dumps(s3.record))


def test_a_canary_waits_for_its_verdict_then_follows_it() -> None:
    mode, rec = analyzed(None)
    assert mode is Mode.CANARY and rec["phase"] == "Analyzing"
    assert "waiting for the metric analysis" in str(rec["message"])
    mode, rec = analyzed(MetricVerdict(True, "p95 latency 2s against the stable's 0.5s"))
    assert mode is Mode.HOLD and rec["phase"] == "RolledBack" and rec["result"] == "Failed"
    assert "metric analysis failed: p95 latency 2s" in str(rec["message"])
    mode, rec = analyzed(MetricVerdict(False, "p95 latency 0.5s (stable 0.5s) within"))
    assert mode is Mode.PLAIN and rec["phase"] == "Promoting"
    assert "metric analysis passed" in str(rec["message"])
