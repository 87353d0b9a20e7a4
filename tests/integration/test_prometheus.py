"""Prometheus for real: Debian's ``promtool`` checks and unit-tests the PrometheusRule
the operator builds, and a real ``prometheus`` server scrapes the in-process
operator on the local control plane and evaluates that rule on what it scraped.

``make prometheus`` (hack/install-prometheus.sh) installs both; ``make test`` sets
AIM_REQUIRE_PROMETHEUS=1 so a machine without them fails instead of skipping."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, free_port  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    cond_is,
    endpoint,
    running_operator,
    wait_ready,
)
from support import eventually

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.builders import OperatorSettings, build_prometheus_rule
from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

JOB = "aim-controller"
RECIPE_ALERT = "AIMEndpointRecipeSelectionFailed"


def _tool(name: str) -> str | None:
    bin_dir = os.environ.get("PROMETHEUS_BIN_DIR")
    if bin_dir and os.access(Path(bin_dir) / name, os.X_OK):
        return str(Path(bin_dir) / name)
    return shutil.which(name)


PROMTOOL = _tool("promtool")
PROMETHEUS = _tool("prometheus")

if not (PROMTOOL and PROMETHEUS) and not os.environ.get("AIM_REQUIRE_PROMETHEUS"):
    pytest.skip("prometheus/promtool not installed (run `make prometheus`, i.e. "
                "hack/install-prometheus.sh); set AIM_REQUIRE_PROMETHEUS=1 to fail instead",
                allow_module_level=True)


@pytest.fixture(scope="module")
def promtool() -> str:
    assert PROMTOOL, "promtool not found on PATH or in $PROMETHEUS_BIN_DIR (make prometheus)"
    return PROMTOOL


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    assert PROMETHEUS, "prometheus not found on PATH or in $PROMETHEUS_BIN_DIR (make prometheus)"
    return PROMETHEUS


def monitored_endpoint(name: str, namespace: str) -> AIMEndpoint:
    """An AIMEndpoint as the reconciler sees it, with Prometheus monitoring on."""
    return AIMEndpoint.model_validate({
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "AIMEndpoint",
        "metadata": {"name": name, "namespace": namespace, "generation": 1,
                     "uid": "0b5ab3f0-5d4e-4f0e-9a57-3c0f2b8a1e11"},
        "spec": {"model": {"id": "Qwen/Qwen2.5-7B-Instruct"},
                 "monitoring": {"enabled": True, "prometheus": {"enabled": True}}},
    })


def rule_groups(*endpoints: AIMEndpoint) -> list[dict[str, Any]]:
    """The ``groups`` of the operator's PrometheusRules: a Prometheus rules file."""
    groups: list[dict[str, Any]] = []
    for ep in endpoints:
        pr = build_prometheus_rule(ep, OperatorSettings(), monitoring_available=True)
        assert pr is not None
        groups += pr["spec"]["groups"]
    return groups


def write_rules(path: Path, *endpoints: AIMEndpoint) -> Path:
    path.write_text(yaml.safe_dump({"groups": rule_groups(*endpoints)}, sort_keys=False))
    return path


def rule(groups: list[dict[str, Any]], alert: str) -> dict[str, Any]:
    return next(r for g in groups for r in g["rules"] if r["alert"] == alert)


def run_promtool(promtool: str, *args: str, stdin: str | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


# --- promtool on the rules ----------------------------------------------------------


def test_promtool_accepts_the_prometheus_rule(promtool: str, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules.yaml", monitored_endpoint("qwen", "aim-engine"),
                        monitored_endpoint("qwen-7b", "other"))
    res = run_promtool(promtool, "check", "rules", str(rules))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 10 rules found" in res.stdout, res.stdout


def test_promtool_unit_tests_the_recipe_selection_alert(promtool: str, tmp_path: Path) -> None:
    ep = monitored_endpoint("qwen", "aim-engine")
    groups = rule_groups(ep)
    alert = rule(groups, RECIPE_ALERT)
    assert alert["for"] == "5m"
    write_rules(tmp_path / "rules.yaml", ep)

    def series(name: str, status: str = "false", namespace: str = "aim-engine") -> str:
        return (f'aim_endpoint_condition{{namespace="{namespace}",aimendpoint="{name}",'
                f'condition="RecipeSelected",status="{status}"}}')

    firing = {
        "exp_labels": {"namespace": "aim-engine", "aimendpoint": "qwen",
                       "condition": "RecipeSelected", "status": "false",
                       **alert["labels"]},
        "exp_annotations": alert["annotations"],
    }
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {   # Failing for longer than `for`: fires; pending before that.
                "interval": "1m",
                "input_series": [{"series": series("qwen"), "values": "1x10"},
                                 {"series": series("qwen", "true"), "values": "0x10"}],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": RECIPE_ALERT, "exp_alerts": []},
                    {"eval_time": "6m", "alertname": RECIPE_ALERT, "exp_alerts": [firing]},
                    {"eval_time": "10m", "alertname": RECIPE_ALERT, "exp_alerts": [firing]},
                ],
            },
            {   # The series exists but is 0 (the condition is True or Unknown): silent.
                "interval": "1m",
                "input_series": [{"series": series("qwen"), "values": "0x10"},
                                 {"series": series("qwen", "true"), "values": "1x10"}],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": RECIPE_ALERT, "exp_alerts": []},
                ],
            },
            {   # Failing for a while, then selected: resolves before reaching `for`.
                "interval": "1m",
                "input_series": [{"series": series("qwen"), "values": "1 1 1 0x10"}],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": RECIPE_ALERT, "exp_alerts": []},
                ],
            },
            {   # Other endpoints' failures (a longer name, another namespace) are not ours.
                "interval": "1m",
                "input_series": [{"series": series("qwen-7b"), "values": "1x10"},
                                 {"series": series("qwen", namespace="other"),
                                  "values": "1x10"}],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": RECIPE_ALERT, "exp_alerts": []},
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    res = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout, res.stdout


def test_promtool_unit_tests_the_pod_restart_alert_pod_matching(
    promtool: str, tmp_path: Path
) -> None:
    """The pod-name regex in real PromQL: our pods match, a longer endpoint's don't."""
    ep = monitored_endpoint("qwen", "aim-engine")
    alert = rule(rule_groups(ep), "AIMEndpointPodRestarts")
    write_rules(tmp_path / "rules.yaml", ep)

    def restarts(pod: str) -> str:
        return (f'kube_pod_container_status_restarts_total{{namespace="aim-engine",'
                f'pod="{pod}",container="engine"}}')

    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": restarts("qwen-5d8f9c7b6-x2x4z"), "values": "0 0 1 1 1 1 1 1 1 1"},
                {"series": restarts("qwen-7b-5d8f9c7b6-x2x4z"), "values": "0 0 1 1 1 1 1 1 1 1"},
            ],
            "alert_rule_test": [{
                "eval_time": "9m", "alertname": "AIMEndpointPodRestarts",
                "exp_alerts": [{"exp_labels": {
                    "namespace": "aim-engine", "pod": "qwen-5d8f9c7b6-x2x4z",
                    "container": "engine", **alert["labels"]},
                    # The description's template renders with the pod and the count.
                    "exp_annotations": {
                        "summary": alert["annotations"]["summary"],
                        "description": "Pod qwen-5d8f9c7b6-x2x4z restarted 1 times in the"
                                       " last 15 minutes."}}],
            }],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    res = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


# --- a real Prometheus scraping the real operator -------------------------------------


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds) as app:
        yield app


def metrics_text(app: App) -> str:
    port = app.manager.serving.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


class Prometheus:
    """A ``prometheus`` subprocess on a free loopback port with its own config and
    data dir, and its HTTP API."""

    def __init__(self, binary: str, workdir: Path, scrape_port: int,
                 rule_files: list[Path]) -> None:
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{
                "job_name": JOB,
                # As the operator's ServiceMonitor must (builders/promql.py): its
                # aim_endpoint_* series carry their own `namespace` label.
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}],
            }],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-30:])

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, promql: str) -> float | None:
        """The single sample of an instant query, or None when it selects nothing."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["alerts"]
                if a["labels"].get("alertname") == name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


@pytest.fixture
def prometheus_server(
    prometheus_bin: str, tmp_path: Path
) -> Iterator[Callable[[int, list[Path]], Prometheus]]:
    started: list[Prometheus] = []

    def start(scrape_port: int, rule_files: list[Path]) -> Prometheus:
        p = Prometheus(prometheus_bin, tmp_path, scrape_port, rule_files)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


async def test_real_prometheus_scrapes_the_operator_and_evaluates_its_alert(
    crds: LocalCluster, namespace: str, operator: App, tmp_path: Path,
    prometheus_server: Callable[[int, list[Path]], Prometheus],
) -> None:
    port = operator.manager.serving.metrics_port
    assert port
    rules = write_rules(tmp_path / "rules.yaml", monitored_endpoint("scraped", namespace),
                        monitored_endpoint("nosuch", namespace))
    prom = prometheus_server(port, [rules])
    await eventually(prom.ready, 60, interval=0.2, what=f"prometheus ready\n{prom.log_tail()}",
                     blocking=True)

    apply(crds, endpoint("scraped"), namespace)
    apply(crds, endpoint("nosuch", "acme/mystery-model"), namespace)
    await wait_ready(crds, namespace, "scraped")
    await eventually(lambda: cond_is(crds, namespace, "nosuch", "RecipeSelected", "False",
                                     "NoRecipe"), 30, what="nosuch has no recipe", blocking=True)

    ready = (f'aim_endpoint_condition{{namespace="{namespace}",aimendpoint="scraped",'
             'condition="Ready",status="true"}')
    await eventually(lambda: prom.value(ready) == 1.0, 30, interval=0.5,
                     what=f"{ready} == 1 in prometheus", blocking=True)

    assert prom.value(f'up{{job="{JOB}"}}') == 1.0
    reconciles = prom.value(
        'sum(controller_runtime_reconcile_total{controller="aimendpoint"})')
    assert reconciles is not None and reconciles > 0
    adds = prom.value('sum(workqueue_adds_total{name="aimendpoint"})')
    assert adds is not None and adds > 0
    requests = prom.query("rest_client_requests_total")
    assert requests, "rest_client_requests_total not scraped"
    assert {s["metric"]["method"] for s in requests} >= {"GET"}
    # The scraped series carry the operator's labels, not the scrape target's.
    assert {s["metric"]["job"] for s in requests} == {JOB}

    # The PrometheusRule's alert, evaluated by a real Prometheus on the real series:
    # pending (its `for` is 5 m) for the endpoint without a recipe, absent for the other.
    rule_state = prom.get("/api/v1/rules", type="alert")
    health = {(r["name"], g["name"]): r["health"]
              for g in rule_state["groups"] for r in g["rules"]}
    assert len(health) == 10 and set(health.values()) <= {"ok", "unknown"}, health
    pending = await eventually(lambda: prom.alerts(RECIPE_ALERT), 30, interval=0.5,
                               what=f"{RECIPE_ALERT} pending", blocking=True)
    assert [(a["labels"]["aimendpoint"], a["labels"]["namespace"], a["state"])
            for a in pending] == [("nosuch", namespace, "pending")]
    assert pending[0]["labels"]["severity"] == "critical"


# --- promtool on the operator's /metrics --------------------------------------------


async def test_promtool_check_metrics_finds_no_problems(
    crds: LocalCluster, namespace: str, operator: App, promtool: str
) -> None:
    apply(crds, endpoint("linted"), namespace)
    await wait_ready(crds, namespace, "linted")
    text = await asyncio.to_thread(metrics_text, operator)
    # Every family the README lists is in what we lint.
    for family in ("workqueue_adds_total", "controller_runtime_reconcile_total",
                   "rest_client_requests_total", "aim_endpoint_condition",
                   "aim_endpoint_info"):
        assert f"\n{family}{{" in text, family
    res = run_promtool(promtool, "check", "metrics", stdin=text)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (
        res.stdout + res.stderr)

