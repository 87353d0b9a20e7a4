"""The engine Deployment."""

from __future__ import annotations

from typing import Any

import pytest
from recipes_fixtures import labeller_labels, mixed_labels
from test_builders_support import (
    GPU_TOLERATION,
    SETTINGS,
    chosen,
    chosen_1gpu,
    container_of,
    endpoint,
    flag_value,
    structural_problems,
)

from aim_controller.builders import (
    ANNOTATION_CONFIG_CHECKSUM,
    OperatorSettings,
    build_deployment,
    container_resources,
    deployment_replicas,
    selector_labels,
)
from aim_controller.builders.deployment import gpu_node_affinity, shm_size


def selects(exprs: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """A nodeSelectorTerm's matchExpressions on node labels, as the scheduler reads them."""
    def one(r: dict[str, Any]) -> bool:
        key, op = r["key"], r["operator"]
        if op == "In":
            return key in labels and labels[key] in r["values"]
        if op == "NotIn":
            return key not in labels or labels[key] not in r["values"]
        if op == "Exists":
            return key in labels
        assert op == "DoesNotExist", op
        return key not in labels
    return all(one(r) for r in exprs)


def node_matches(node_affinity: dict[str, Any], labels: dict[str, str]) -> bool:
    required = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    return any(selects(t["matchExpressions"], labels) for t in required["nodeSelectorTerms"])


def deploy(spec: dict[str, Any] | None = None, settings: OperatorSettings = SETTINGS,
           **chosen_overrides: Any) -> dict[str, Any]:
    return build_deployment(endpoint(spec, name="qwen"), chosen(**chosen_overrides), settings)


def pod_spec(d: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = d["spec"]["template"]["spec"]
    return spec


def test_shape() -> None:
    d = deploy()
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    assert d["metadata"]["name"] == "qwen"
    assert d["metadata"]["annotations"] == {"aim.engine.amd.com/recipe":
                                            "aim-engine/qwen-32b-mi300x-bf16"}
    assert d["spec"]["selector"] == {"matchLabels": selector_labels("qwen")}
    assert d["spec"]["revisionHistoryLimit"] == 3
    assert structural_problems(d) == []


def test_container_has_recipe_args_port_and_image() -> None:
    c = container_of(deploy())
    assert c["name"] == "engine"
    assert c["image"] == SETTINGS.image_for("vllm")
    assert c["args"] == list(chosen().args)
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert flag_value(c["args"], "--port") == "8000"


class TestResources:
    def test_gpu_requests_equal_limits_equal_gpu_count(self) -> None:
        res = container_of(deploy())["resources"]
        assert res["requests"]["amd.com/gpu"] == res["limits"]["amd.com/gpu"] == "4"
        assert res == {
            "limits": {"amd.com/gpu": "4", "cpu": "32", "memory": "128Gi"},
            "requests": {"amd.com/gpu": "4", "cpu": "16", "memory": "64Gi"},
        }

    def test_gpu_count_override(self) -> None:
        c = container_of(deploy({"resources": {"gpuCount": 2}}))
        assert c["resources"]["requests"]["amd.com/gpu"] == "2"
        assert c["resources"]["limits"]["amd.com/gpu"] == "2"
        assert flag_value(c["args"], "--tensor-parallel-size") == "2"

    def test_gpu_resource_added_when_recipe_lists_none(self) -> None:
        res = container_resources(endpoint(), chosen(requests={}, limits={}), 4)
        assert res == {"limits": {"amd.com/gpu": "4"}, "requests": {"amd.com/gpu": "4"}}

    def test_memory_override_sets_request_and_limit(self) -> None:
        res = container_of(deploy({"resources": {"memory": "96Gi"}}))["resources"]
        assert res["requests"]["memory"] == res["limits"]["memory"] == "96Gi"

    @pytest.mark.parametrize(
        ("cpu", "limit"),
        [("16", "32"), ("32", "32"), ("8000m", "32"), ("48", None), (64, None)],
    )
    def test_cpu_override_keeps_limit_only_if_not_below(self, cpu: Any, limit: str | None) -> None:
        res = container_of(deploy({"resources": {"cpu": cpu}}))["resources"]
        assert res["requests"]["cpu"] == str(cpu)
        assert res["limits"].get("cpu") == limit

    def test_spec_example_resources(self) -> None:
        ep = endpoint({"resources": {"gpuCount": 4, "memory": "64Gi", "cpu": "16"}})
        res = container_resources(ep, chosen(), 4)
        assert res["requests"] == {"amd.com/gpu": "4", "cpu": "16", "memory": "64Gi"}
        assert res["limits"] == {"amd.com/gpu": "4", "cpu": "32", "memory": "64Gi"}


class TestPlacement:
    def test_node_affinity_on_device_ids(self) -> None:
        aff = pod_spec(deploy())["affinity"]["nodeAffinity"]
        terms = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        keys = [t["matchExpressions"][0]["key"] for t in terms]
        assert keys == ["amd.com/gpu.device-id", "beta.amd.com/gpu.device-id",
                        "amd.com/gpu.device-id.74a1", "amd.com/gpu.device-id.74b5"]
        for t in terms[:2]:
            device, partition = t["matchExpressions"]
            assert device["operator"] == "In" and device["values"] == ["74a1", "74b5"]
        for t in terms:
            partition = t["matchExpressions"][-1]
            assert partition["key"] == "amd.com/compute-memory-partition"
            assert partition["operator"] == "NotIn"
            assert "cpx_nps4" in partition["values"]
            assert not any(v.startswith("spx") for v in partition["values"])
        for t in terms[2:]:
            counted, *others, _ = t["matchExpressions"]
            assert counted["operator"] == "Exists"
            # A 4-GPU pod only where no other known model's GPUs are.
            assert {"key": "amd.com/gpu.device-id.74a5", "operator": "DoesNotExist"} in others
            assert not any(o["key"].endswith(("74a1", "74b5")) for o in others)
        assert "preferredDuringSchedulingIgnoredDuringExecution" not in aff

    @pytest.mark.parametrize(("labels", "one_gpu", "four_gpus"), [
        (labeller_labels("MI300X"), True, True),
        (labeller_labels("MI300X", plain=False), True, True),
        ({"amd.com/gpu.device-id.74a1": "8"}, True, True),
        ({"amd.com/gpu.device-id.74a1": "4", "amd.com/gpu.device-id.74b5": "4"}, True, True),
        (mixed_labels({"MI300X": 4, "MI325X": 4}), True, False),
        ({"amd.com/gpu.device-id.74a1": "4", "amd.com/gpu.device-id.74a5": "4"}, True, False),
        (labeller_labels("MI325X"), False, False),
        (mixed_labels({"MI325X": 4, "MI355X": 4}), False, False),
        (labeller_labels("MI300X") | {"amd.com/compute-memory-partition": "cpx_nps4"},
         False, False),
        ({"amd.com/gpu.device-id.74a1": "8", "amd.com/compute-memory-partition": "cpx_nps4"},
         False, False),
        (labeller_labels("MI300X") | {"amd.com/compute-memory-partition": "spx_nps1"},
         True, True),
        ({}, False, False),
    ], ids=["labeller", "beta-only", "count-only", "pf-and-vf", "mixed-labeller",
            "mixed-issue", "other-model", "other-mixed", "partitioned",
            "partitioned-count-only", "spx", "no-labels"])
    def test_node_affinity_matches_either_label_form(
        self, labels: dict[str, str], one_gpu: bool, four_gpus: bool
    ) -> None:
        """The scheduler's verdict on real label sets (AMD's labeller, and the
        count-encoded form alone): mixed nodes take 1-GPU pods, never 4-GPU ones."""
        for gpus, expected in ((1, one_gpu), (4, four_gpus)):
            aff = gpu_node_affinity(("74a1", "74b5"), gpus_per_replica=gpus)
            assert aff is not None
            assert node_matches(aff["nodeAffinity"], labels) is expected, gpus

    def test_one_gpu_pods_prefer_nodes_with_only_the_chosen_model(self) -> None:
        aff = pod_spec(deploy(gpu_count=1, args=(), requests={}, limits={}))["affinity"]
        preferred = aff["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert [p["weight"] for p in preferred] == [100]
        prefers = preferred[0]["preference"]["matchExpressions"]
        assert all(r["operator"] == "DoesNotExist" for r in prefers)
        assert selects(prefers, labeller_labels("MI300X"))
        assert selects(prefers, {"amd.com/gpu.device-id.74a1": "8"})
        assert not selects(prefers, mixed_labels({"MI300X": 4, "MI325X": 4}))

    def test_no_affinity_without_device_ids(self) -> None:
        assert "affinity" not in pod_spec(deploy(device_ids=()))

    def test_tolerations_deduplicated_and_sorted(self) -> None:
        other = {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
        ps = pod_spec(deploy(tolerations=(other, GPU_TOLERATION, dict(GPU_TOLERATION))))
        assert ps["tolerations"] == [GPU_TOLERATION, other]
        assert "tolerations" not in pod_spec(deploy(tolerations=()))


class TestVolumes:
    def test_shm_is_memory_backed(self) -> None:
        ps = pod_spec(deploy())
        shm = next(v for v in ps["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        mounts = container_of(deploy())["volumeMounts"]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in mounts

    @pytest.mark.parametrize(
        ("memory", "size"),
        [(None, "16Gi"), ("64Gi", "16Gi"), ("8Gi", "4Gi"), ("20G", "9536Mi"), ("1Mi", "1Mi")],
    )
    def test_shm_size(self, memory: str | None, size: str) -> None:
        requests = {} if memory is None else {"memory": memory}
        assert shm_size(requests, SETTINGS) == size

    def test_cache_volume(self) -> None:
        d = deploy({"cache": {"enabled": True}})
        ps = pod_spec(d)
        assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "qwen-cache"}} in (
            ps["volumes"]
        )
        c = container_of(d)
        assert {"name": "model-cache", "mountPath": "/models"} in c["volumeMounts"]
        assert {"name": "HF_HOME", "value": "/models/hf"} in c["env"]

    def test_no_cache_volume_by_default(self) -> None:
        d = deploy()
        # /dev/shm and the writable HOME of a user the image may not know.
        assert [v["name"] for v in pod_spec(d)["volumes"]] == ["dshm", "home"]
        assert container_of(d)["env"] == [{"name": "HOME", "value": "/home/aim"}]
        assert {"name": "home", "mountPath": "/home/aim"} in container_of(d)["volumeMounts"]


class TestProbes:
    def test_probes_on_health(self) -> None:
        c = container_of(deploy())
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}

    def test_startup_budget_covers_a_large_model(self) -> None:
        d = deploy()
        sp = container_of(d)["startupProbe"]
        window = sp["periodSeconds"] * sp["failureThreshold"]
        assert window >= 1800
        assert d["spec"]["progressDeadlineSeconds"] >= window

    def test_startup_budget_follows_settings(self) -> None:
        d = deploy(settings=OperatorSettings(startup_budget_seconds=3605))
        sp = container_of(d)["startupProbe"]
        assert sp["periodSeconds"] * sp["failureThreshold"] >= 3605
        assert d["spec"]["progressDeadlineSeconds"] >= 3605


class TestSecurity:
    def test_defaults_are_hardened(self) -> None:
        ps = pod_spec(deploy())
        # What the restricted Pod Security Standard asks for, plus the ROCm groups.
        assert ps["securityContext"] == {
            "fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch", "runAsGroup": 65532,
            "runAsNonRoot": True, "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}, "supplementalGroups": [44, 109]}
        assert "serviceAccountName" not in ps
        assert ps["automountServiceAccountToken"] is False
        assert ps["enableServiceLinks"] is False
        sc = container_of(deploy())["securityContext"]
        assert sc == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    def test_pod_security_context_from_spec(self) -> None:
        # The spec's root example: root as asked, no runAsNonRoot, the rest hardened.
        ps = pod_spec(deploy({"security": {"podSecurityContext": {
            "runAsUser": 0, "runAsGroup": 0, "fsGroup": 0}}}))
        assert ps["securityContext"] == {
            "fsGroup": 0, "fsGroupChangePolicy": "OnRootMismatch", "runAsGroup": 0,
            "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"},
            "supplementalGroups": [44, 109]}
        ps = pod_spec(deploy({"security": {"podSecurityContext": {
            "runAsNonRoot": True, "runAsUser": 1000, "supplementalGroups": [44, 992]}}}))
        assert ps["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"},
                                         "supplementalGroups": [44, 992]}

    @pytest.mark.parametrize(
        ("sa", "name"),
        [({"create": True}, "qwen"), ({"create": True, "name": "aim-sa"}, "aim-sa"),
         ({"create": False, "name": "shared"}, "shared"), ({"create": False}, None)],
    )
    def test_service_account_name(self, sa: dict[str, Any], name: str | None) -> None:
        ps = pod_spec(deploy({"security": {"serviceAccount": sa}}))
        assert ps.get("serviceAccountName") == name


class TestReplicasAndStrategy:
    @pytest.mark.parametrize(
        ("spec", "replicas"),
        [
            ({}, 1),
            ({"replicas": 3, "scaling": {"minReplicas": 3, "maxReplicas": 3}}, 3),
            ({"replicas": 1, "scaling": {"minReplicas": 2, "maxReplicas": 2}}, 2),
            ({"replicas": 9, "scaling": {"minReplicas": 2, "maxReplicas": 2}}, 2),
            ({"replicas": 0, "scaling": {"minReplicas": 0, "maxReplicas": 1}}, 0),
            ({"replicas": 4, "scaling": {"minReplicas": 0, "maxReplicas": 1}}, 1),
        ],
    )
    def test_replicas_without_autoscaler(self, spec: dict[str, Any], replicas: int) -> None:
        assert deploy(spec)["spec"]["replicas"] == replicas

    def test_replicas_from_the_endpoint_when_the_hpa_scales_the_endpoint(self) -> None:
        d = deploy({"replicas": 3, "scaling": {"minReplicas": 1, "maxReplicas": 5}})
        assert d["spec"]["replicas"] == 3
        ep = endpoint({"replicas": 0, "scaling": {"minReplicas": 0, "maxReplicas": 5}})
        assert deployment_replicas(ep.spec) == 1

    def test_default_strategy_is_explicit_rolling_update(self) -> None:
        assert deploy()["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}

    def test_canary_example_strategy(self) -> None:
        st = deploy({"deployment": {"strategy": {"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxSurge": 1,
                                                                   "maxUnavailable": 0}}}})
        assert st["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}

    def test_recreate(self) -> None:
        d = deploy({"deployment": {"strategy": {"type": "Recreate"}}})
        assert d["spec"]["strategy"] == {"type": "Recreate"}


class TestChecksum:
    def _checksum(self, d: dict[str, Any]) -> str:
        value: str = d["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_CHECKSUM]
        return value

    def test_changes_when_the_recipe_changes(self) -> None:
        a = build_deployment(endpoint(), chosen(), SETTINGS)
        b = build_deployment(endpoint(), chosen(recipe_name="qwen-32b-v2"), SETTINGS)
        c = build_deployment(endpoint(), chosen_1gpu(), SETTINGS)
        assert len({self._checksum(a), self._checksum(b), self._checksum(c)}) == 3

    def test_unchanged_otherwise(self) -> None:
        a = build_deployment(endpoint(), chosen(), SETTINGS)
        b = build_deployment(
            endpoint(), chosen(selection_record={"selectedAt": "2030-01-01T00:00:00Z"}), SETTINGS
        )
        c = build_deployment(endpoint({"replicas": 2, "scaling": {"minReplicas": 2,
                                                                  "maxReplicas": 2}}),
                             chosen(), SETTINGS)
        assert self._checksum(a) == self._checksum(b) == self._checksum(c)
        assert a == b


def test_pod_template_labels() -> None:
    labels = deploy()["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "aim-endpoint"
    assert labels["app.kubernetes.io/instance"] == "qwen"
    assert labels["aim.engine.amd.com/model"] == "Qwen_Qwen2.5-7B-Instruct"


def test_pod_template_labels_and_annotations_from_the_spec_never_override_ours() -> None:
    d = deploy({"podTemplate": {
        "labels": {"team": "ml", "app.kubernetes.io/instance": "hijack",
                   "aim.engine.amd.com/endpoint": "other"},
        "annotations": {"sidecar.istio.io/inject": "true",
                        ANNOTATION_CONFIG_CHECKSUM: "mine"},
    }})
    meta = d["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "ml"
    assert meta["labels"]["app.kubernetes.io/instance"] == "qwen"
    assert meta["labels"]["aim.engine.amd.com/endpoint"] == "qwen"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "true"
    assert meta["annotations"][ANNOTATION_CONFIG_CHECKSUM] == \
        deploy()["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_CHECKSUM]
    assert d["spec"]["selector"] == deploy()["spec"]["selector"]
    assert structural_problems(d) == []
