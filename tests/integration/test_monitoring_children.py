"""The monitoring children against the real Prometheus Operator CRDs.

A private full control plane with the upstream ServiceMonitor and PrometheusRule
CRDs (pinned in hack/versions.env, fetched through the Go module proxy by
hack/fetch-crds.sh monitoring): the operator's CRD watch finds them at start, the objects
it builds pass the upstream schemas, carry ownerReferences, cost no writes once
applied (no perpetual diff against the schemas' defaulting), and go away when
monitoring is turned off."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localcluster import LocalCluster, monitoring_crds  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    ReconcileLog,
    apply,
    endpoint,
    get_json,
    running_operator,
    settled,
)
from support import eventually
from support.kube import RequestLog

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crd"


MONITORING_CRDS = ("crd/servicemonitors.monitoring.coreos.com",
                   "crd/prometheusrules.monitoring.coreos.com")


def install(c: LocalCluster, crds: Path, *names: str) -> None:
    c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", str(crds))
    # A fresh control plane on two busy cores may take a while to establish them.
    c.kubectl("wait", "--for=condition=Established", "--timeout=180s", *names,
              timeout=200)


def gpu_cluster(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    c = make_cluster(full=True)
    c.apply_inventory()
    install(c, CRD_DIR, "crd/aimendpoints.aim.engine.amd.com",
            "crd/aimrecipes.aim.engine.amd.com")
    c.kubectl("create", "namespace", "mon")
    return c


@pytest.fixture
def monitored_cluster(make_cluster: Callable[..., LocalCluster]) -> Iterator[LocalCluster]:
    c = gpu_cluster(make_cluster)
    install(c, monitoring_crds(), *MONITORING_CRDS)
    yield c


MONITORED = {"enabled": True, "prometheus": {"interval": "15s"}, "grafana": {"enabled": True}}


def owner_kind(obj: dict[str, Any]) -> str | None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or () if r.get("controller")]
    return refs[0]["kind"] if refs else None


async def test_monitoring_children_pass_the_upstream_schemas_and_follow_the_spec(
    monitored_cluster: LocalCluster,
) -> None:
    c, ns = monitored_cluster, "mon"
    async with running_operator(c) as app:
        log, reconciles = RequestLog(app.api_client), ReconcileLog(app)
        apply(c, endpoint("watched", monitoring=MONITORED), ns)

        def children() -> Any:
            sm = get_json(c, "-n", ns, "servicemonitors.monitoring.coreos.com/watched")
            pr = get_json(c, "-n", ns, "prometheusrules.monitoring.coreos.com/watched")
            dash = get_json(c, "-n", ns, "configmap/watched-dashboard")
            return (sm, pr, dash) if sm and pr and dash else None

        sm, pr, dash = await eventually(children, 60, what="ServiceMonitor, rule, dashboard",
                                        blocking=True)
        for obj in (sm, pr, dash):
            assert owner_kind(obj) == "AIMEndpoint", obj["metadata"]
        assert sm["spec"]["endpoints"][0]["interval"] == "15s"
        assert sm["spec"]["selector"]["matchLabels"]
        assert [g["rules"] for g in pr["spec"]["groups"]] and all(
            r.get("alert") and r.get("expr") for g in pr["spec"]["groups"] for r in g["rules"])
        status = get_json(c, "-n", ns, f"aimendpoints.{GROUP}/watched")["status"]
        resources = next(x for x in status["conditions"] if x["type"] == "ResourcesReady")
        assert resources["status"] == "True", resources  # no apply was refused

        # Applied once, then quiet: the schemas' defaulting leaves nothing to re-apply,
        # neither when the operator sees its own writes come back nor on a resync.
        await settled(app, c, ns)
        before = log.writes(ns)
        monitoring = [u.split("?")[0] for m, u in before
                      if m == "PATCH" and "monitoring.coreos.com" in u]
        assert len(monitoring) == 2 and len(set(monitoring)) == 2, monitoring
        assert await reconciles.reconcile(f"{ns}/watched") == "success"
        await settled(app, c, ns)
        assert log.writes(ns) == before

        # Monitoring off: the ServiceMonitor and the rule are pruned, the dashboard too.
        c.kubectl("patch", "-n", ns, f"aimendpoints.{GROUP}/watched", "--type=merge",
                  "-p", json.dumps({"spec": {"monitoring": {"enabled": False}}}))

        def pruned() -> bool:
            return all(get_json(c, "-n", ns, what) is None for what in (
                "servicemonitors.monitoring.coreos.com/watched",
                "prometheusrules.monitoring.coreos.com/watched",
                "configmap/watched-dashboard"))

        await eventually(pruned, 60, what="monitoring children pruned", blocking=True)


async def test_prometheus_operator_installed_later_is_picked_up_without_a_restart(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c, ns = gpu_cluster(make_cluster), "mon"
    async with running_operator(c):
        apply(c, endpoint("later", monitoring=MONITORED), ns)
        await eventually(lambda: get_json(c, "-n", ns, "deployment/later"), 60,
                         what="the endpoint's Deployment", blocking=True)
        # No Prometheus Operator yet: no ServiceMonitor kind to write.
        assert get_json(c, "-n", ns, "configmap/later-dashboard") is not None
        install(c, monitoring_crds(), *MONITORING_CRDS)

        def monitoring_children() -> Any:
            sm = get_json(c, "-n", ns, "servicemonitors.monitoring.coreos.com/later")
            pr = get_json(c, "-n", ns, "prometheusrules.monitoring.coreos.com/later")
            return (sm, pr) if sm and pr else None

        sm, pr = await eventually(monitoring_children, 60,
                                  what="ServiceMonitor and rule after the CRDs appeared",
                                  blocking=True)
        assert owner_kind(sm) == owner_kind(pr) == "AIMEndpoint"
