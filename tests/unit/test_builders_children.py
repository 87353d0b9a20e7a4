"""desired_children over the spec's examples: kinds, ownership, determinism, sanity."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from test_builders_support import (
    SETTINGS,
    UID,
    by_kind,
    chosen,
    chosen_1gpu,
    container_of,
    endpoint,
    flag_value,
    spec_example_endpoints,
    structural_problems,
)

from aim_controller.api.v1alpha1 import AIMEndpoint
from aim_controller.builders import (
    CHILD_KINDS,
    ChosenRecipe,
    OperatorSettings,
    child_kinds,
    desired_children,
    endpoint_name_problem,
)

EXAMPLES = dict(spec_example_endpoints())


def build(ep: AIMEndpoint, c: ChosenRecipe | None = None, *, available: bool = True,
          settings: OperatorSettings = SETTINGS) -> list[dict[str, Any]]:
    return desired_children(ep, c or chosen(), settings, monitoring_available=available)


def kinds(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def test_the_spec_examples_are_all_there() -> None:
    assert set(EXAMPLES) == {
        "advanced-auto-scaling-endpoint[0]", "advanced-canary-endpoint[0]",
        "aimendpoint-qwen-32b-production[0]", "usage-basic-qwen-7b-demo[0]",
        "usage-multi-model[0]", "usage-multi-model[1]", "usage-production-endpoint[0]",
    }


@pytest.mark.parametrize("example", sorted(EXAMPLES))
@pytest.mark.parametrize("available", [True, False])
def test_every_example_builds_sane_objects(example: str, available: bool) -> None:
    ep = EXAMPLES[example]
    assert endpoint_name_problem(ep.metadata.name or "") is None
    objs = build(ep, available=available)
    known = {(k.api_version, k.kind) for k in child_kinds()}
    for obj in objs:
        assert (obj["apiVersion"], obj["kind"]) in known
        assert structural_problems(obj) == [], obj["kind"]
        json.dumps(obj)  # plain JSON, ready to send
        refs = obj["metadata"].get("ownerReferences", [])
        if obj["kind"] == "PersistentVolumeClaim" and ep.spec.cache.retain_on_delete:
            assert refs == []
        else:
            assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [
                ("AIMEndpoint", UID, True)]
    names = kinds(objs)
    assert len(set(names)) == len(names)
    order = [k.kind for k in CHILD_KINDS]
    assert [order.index(o["kind"]) for o in objs] == sorted(order.index(o["kind"]) for o in objs)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_deterministic(example: str) -> None:
    a = build(EXAMPLES[example])
    b = build(copy.deepcopy(EXAMPLES[example]))
    assert a == b
    assert json.dumps(a) == json.dumps(b)  # same key order too


def test_production_example() -> None:
    objs = build(EXAMPLES["aimendpoint-qwen-32b-production[0]"])
    assert kinds(objs) == [
        ("ServiceAccount", "aim-endpoint-sa"),
        ("ConfigMap", "qwen-32b-production-config"),
        ("ConfigMap", "qwen-32b-production-dashboard"),
        ("PersistentVolumeClaim", "qwen-32b-production-cache"),
        ("Deployment", "qwen-32b-production"),
        ("Service", "qwen-32b-production"),
        ("HorizontalPodAutoscaler", "qwen-32b-production"),
        ("PodDisruptionBudget", "qwen-32b-production"),
        ("ServiceMonitor", "qwen-32b-production"),
        ("PrometheusRule", "qwen-32b-production"),
    ]
    d = by_kind(objs, "Deployment")
    ps = d["spec"]["template"]["spec"]
    # maxReplicas 5 > minReplicas 1: the HPA scales the endpoint, which sets this.
    assert d["spec"]["replicas"] == 1
    assert ps["serviceAccountName"] == "aim-endpoint-sa"
    # The spec's root example: root as asked, the rest hardened (no runAsNonRoot).
    assert ps["securityContext"] == {
        "fsGroup": 0, "fsGroupChangePolicy": "OnRootMismatch", "runAsGroup": 0,
        "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroups": [44, 109]}
    res = container_of(d)["resources"]
    assert res["requests"] == {"amd.com/gpu": "4", "cpu": "16", "memory": "64Gi"}
    assert res["limits"] == {"amd.com/gpu": "4", "cpu": "32", "memory": "64Gi"}
    pvc = by_kind(objs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    svc = by_kind(objs, "Service")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}


def test_basic_example_is_minimal() -> None:
    objs = build(EXAMPLES["usage-basic-qwen-7b-demo[0]"], chosen_1gpu())
    assert kinds(objs) == [("ConfigMap", "qwen-7b-demo-config"),
                           ("Deployment", "qwen-7b-demo"), ("Service", "qwen-7b-demo")]
    d = by_kind(objs, "Deployment")
    assert d["spec"]["replicas"] == 1
    assert by_kind(objs, "Service")["spec"]["type"] == "NodePort"
    args = container_of(d)["args"]
    assert flag_value(args, "--port") == "8000"


def test_production_usage_example_monitoring_without_grafana() -> None:
    objs = build(EXAMPLES["usage-production-endpoint[0]"])
    assert [o["kind"] for o in objs] == ["ConfigMap", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                         "ServiceMonitor", "PrometheusRule"]
    hpa = by_kind(objs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    objs = build(EXAMPLES["usage-production-endpoint[0]"], available=False)
    assert [o["kind"] for o in objs] == ["ConfigMap", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget"]


def test_auto_scaling_and_canary_examples() -> None:
    hpa = by_kind(build(EXAMPLES["advanced-auto-scaling-endpoint[0]"]), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Resource", "Pods"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    d = by_kind(build(EXAMPLES["advanced-canary-endpoint[0]"]), "Deployment")
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_multi_model_examples_do_not_collide() -> None:
    a = build(EXAMPLES["usage-multi-model[0]"])
    b = build(EXAMPLES["usage-multi-model[1]"])
    assert not set(kinds(a)) & set(kinds(b))
    sel_a = by_kind(a, "Deployment")["spec"]["selector"]["matchLabels"]
    sel_b = by_kind(b, "Deployment")["spec"]["selector"]["matchLabels"]
    assert sel_a != sel_b


def test_selector_is_stable_across_recipe_and_model_changes() -> None:
    a = by_kind(build(endpoint(name="e")), "Deployment")
    b = by_kind(build(endpoint({"model": {"id": "Qwen/Qwen3-32B"}}, name="e"), chosen_1gpu()),
                "Deployment")
    assert a["spec"]["selector"] == b["spec"]["selector"]
    assert a["spec"]["template"] != b["spec"]["template"]


def test_child_kinds() -> None:
    pairs = [(k.api_version, k.kind) for k in child_kinds()]
    assert pairs == [
        ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"),
        ("apps/v1", "Deployment"), ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("policy/v1", "PodDisruptionBudget"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ]
    assert [k.kind for k in child_kinds() if k.needs_prometheus_operator] == [
        "ServiceMonitor", "PrometheusRule"]
    assert [k.kind for k in child_kinds() if k.needs_gateway_api] == ["HTTPRoute"]
    assert [k.kind for k in child_kinds() if k.needs_keda] == ["ScaledObject"]
    everything = endpoint({
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "cache": {"enabled": True},
        "security": {"serviceAccount": {"create": True}},
        "monitoring": {"enabled": True, "grafana": {"enabled": True}},
    })
    built = {(o["apiVersion"], o["kind"]) for o in build(everything)}
    # The HTTPRoute carries the canary's weights: the decide step builds it. The
    # ScaledObject replaces the HPA (tests/unit/test_builders_scaledobject.py).
    assert built == set(pairs) - {("gateway.networking.k8s.io/v1", "HTTPRoute"),
                                  ("keda.sh/v1alpha1", "ScaledObject")}
