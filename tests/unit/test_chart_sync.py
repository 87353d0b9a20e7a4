"""The Helm chart's generated files (hack/sync_chart.py, make chart): the committed chart
is current with manifests/, and a change to manifests/ (a rule, a flag, a CRD) or a
values default that disagrees with them is reported as stale until `make chart`."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sync_chart
import yaml

from aim_controller.options import parse, parser


def test_the_committed_chart_is_current() -> None:
    stale = sync_chart.check()
    assert not stale, (
        "charts/aim-engine-operator is out of date with manifests/: run `make chart` "
        "(python hack/sync_chart.py) and commit the result\n" + "".join(stale))


def defines(tpl: str) -> dict[str, Any]:
    """Each generated named template's body, parsed."""
    return {name: yaml.safe_load(body) for name, body in re.findall(
        r'\{\{- define "aim-engine-operator\.generated\.(\w+)" -\}\}\n(.*?)\{\{- end \}\}',
        tpl, re.S)}


def test_the_chart_carries_the_manifests_rules_flags_and_probes() -> None:
    role = {d["kind"]: d for d in sync_chart.docs(sync_chart.MANIFESTS / "rbac" / "role.yaml")}
    dep, container = sync_chart.manager()
    got = defines(sync_chart.generated_tpl())
    assert got["clusterRoleRules"] == role["ClusterRole"]["rules"]
    assert got["leaderElectionRules"] == role["Role"]["rules"]
    # Every flag of the manager is either rendered from values or copied.
    copied = got["args"] or []
    assert sorted(copied + [a for a in container["args"]
                            if sync_chart.flag(a) in sync_chart.VALUE_FLAGS]) \
        == sorted(container["args"])
    assert got["container"]["livenessProbe"] == container["livenessProbe"]
    assert got["container"]["readinessProbe"] == container["readinessProbe"]
    assert got["pod"]["terminationGracePeriodSeconds"] \
        == dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_crds_and_catalog_are_the_manifests() -> None:
    out = sync_chart.generated()
    for crd in (sync_chart.MANIFESTS / "crd").glob("*.yaml"):
        assert out[sync_chart.CHART / "crds" / crd.name] == crd.read_text()
    catalog = out[sync_chart.CHART / "templates" / "catalog.yaml"]
    assert catalog.count("kind: AIMRecipe") == (
        sync_chart.MANIFESTS / "catalog" / "recipes.yaml").read_text().count("kind: AIMRecipe")
    assert "namespace: aim-system" not in catalog
    assert catalog.count("namespace: {{ .Release.Namespace }}") == catalog.count("kind: AIMRecipe")


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A copy of manifests/ and of the chart, brought up to date, that the script uses."""
    manifests, chart = tmp_path / "manifests", tmp_path / "chart"
    shutil.copytree(sync_chart.MANIFESTS, manifests)
    shutil.copytree(sync_chart.CHART, chart)
    monkeypatch.setattr(sync_chart, "MANIFESTS", manifests)
    monkeypatch.setattr(sync_chart, "CHART", chart)
    assert sync_chart.main([]) == 0
    assert sync_chart.main(["--check"]) == 0
    yield manifests, chart


def test_a_new_rule_or_flag_makes_the_chart_stale_until_synced(
    copies: tuple[Path, Path],
) -> None:
    manifests, chart = copies
    role = manifests / "rbac" / "role.yaml"
    role.write_text(role.read_text().replace(
        "rules:\n", "rules:\n- apiGroups: [policy]\n  resources: [poddisruptionbudgets]\n"
        "  verbs: [list, watch]\n", 1))
    manager = manifests / "manager" / "manager.yaml"
    manager.write_text(manager.read_text().replace(
        "        - --log-format=json\n", "        - --log-format=json\n        - --new-flag=1\n"))
    stale = "".join(sync_chart.check())
    assert "+  - poddisruptionbudgets" in stale and "+- --new-flag=1" in stale
    assert sync_chart.main(["--check"]) == 1
    assert sync_chart.main([]) == 0 and sync_chart.check() == []
    got = defines((chart / "templates" / "_generated.tpl").read_text())
    assert got["clusterRoleRules"][0]["resources"] == ["poddisruptionbudgets"]
    assert "--new-flag=1" in got["args"]


def test_a_crd_added_or_removed_is_reported(copies: tuple[Path, Path]) -> None:
    manifests, chart = copies
    (chart / "crds" / "old.yaml").write_text("kind: CustomResourceDefinition\n")
    crd = next((manifests / "crd").glob("*.yaml"))
    crd.write_text(crd.read_text() + "# changed\n")
    stale = "".join(sync_chart.check())
    assert "old.yaml: not in manifests/crd" in stale and "+# changed" in stale
    assert sync_chart.main([]) == 0
    assert not (chart / "crds" / "old.yaml").exists() and sync_chart.check() == []


def test_values_defaults_that_disagree_with_the_manifests_are_reported(
    copies: tuple[Path, Path],
) -> None:
    manifests, _chart = copies
    manager = manifests / "manager" / "manager.yaml"
    manager.write_text(manager.read_text().replace("memory: 512Mi", "memory: 1Gi")
                       .replace("--log-format=json", "--log-format=console"))
    problems = "".join(sync_chart.check())
    assert "values.yaml: resources is" in problems and "'1Gi'" in problems
    assert "values.yaml: the flags values set" in problems and "console" in problems
    # Generation cannot fix values.yaml: make chart fails and says so.
    assert sync_chart.main([]) == 1


def test_the_operator_accepts_every_flag_the_chart_passes() -> None:
    values = yaml.safe_load((sync_chart.CHART / "values.yaml").read_text())
    values["leaderElection"].update(leaseDuration="30s", renewDeadline="20s", retryPeriod="5s")
    values.update(watchNamespaces=["team-a", "team-b"], unschedulableGrace="2m",
                  logLevel="debug", gpuMetricsPrometheusUrl="http://prom.monitoring:9090")
    args = [a.replace(sync_chart.NS, "ops") for a in sync_chart.value_args(values)]
    args += defines(sync_chart.generated_tpl())["args"] or []
    opts = parse(args)
    assert (opts.operator_namespace, opts.leader_election_namespace) == ("ops", "ops")
    assert opts.leader_elect and (opts.lease_duration, opts.renew_deadline,
                                  opts.retry_period) == (30.0, 20.0, 5.0)
    assert opts.namespaces == ["team-a", "team-b"] and opts.unschedulable_grace == 120.0
    assert (opts.log_level, opts.log_format) == ("debug", "json")
    assert opts.gpu_metrics_prometheus_url == "http://prom.monitoring:9090"


def test_the_values_schema_takes_the_log_choices_from_the_operator() -> None:
    schema = json.loads(sync_chart.values_schema())
    for key, flag in (("logLevel", "--log-level"), ("logFormat", "--log-format")):
        [action] = [a for a in parser()._actions if flag in a.option_strings]
        assert schema["properties"][key]["enum"] == list(action.choices or [])
    values = yaml.safe_load((sync_chart.CHART / "values.yaml").read_text())
    # Every value has a place in the schema (it forbids the others: typos fail).
    assert set(values) <= set(schema["properties"])
