"""Service, ServiceAccount and cache PVC."""

from __future__ import annotations

from typing import Any

import pytest
from test_builders_support import endpoint, structural_problems

from aim_controller.builders import (
    build_cache_pvc,
    build_service,
    build_service_account,
    owner_reference,
    selector_labels,
)


class TestService:
    def test_default(self) -> None:
        svc = build_service(endpoint(name="qwen"))
        assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service")
        assert svc["metadata"]["name"] == "qwen"
        assert "annotations" not in svc["metadata"]
        assert svc["spec"] == {
            "type": "ClusterIP",
            "selector": selector_labels("qwen"),
            "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP",
                       "appProtocol": "http"}],
        }
        assert structural_problems(svc) == []

    def test_type_port_and_annotations_from_spec(self) -> None:
        svc = build_service(endpoint({"service": {
            "type": "LoadBalancer", "port": 80,
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}}}))
        assert svc["spec"]["type"] == "LoadBalancer"
        assert svc["spec"]["ports"][0]["port"] == 80
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert svc["metadata"]["annotations"] == {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}

    def test_labels_let_the_service_monitor_find_it(self) -> None:
        labels = build_service(endpoint(name="qwen"))["metadata"]["labels"]
        assert selector_labels("qwen").items() <= labels.items()


class TestServiceAccount:
    def test_not_created_by_default(self) -> None:
        assert build_service_account(endpoint()) is None
        assert build_service_account(endpoint({"security": {"serviceAccount": {
            "name": "existing"}}})) is None

    @pytest.mark.parametrize(("sa", "name"), [({"create": True}, "qwen"),
                                              ({"create": True, "name": "aim-sa"}, "aim-sa")])
    def test_created(self, sa: dict[str, Any], name: str) -> None:
        obj = build_service_account(endpoint({"security": {"serviceAccount": sa}}, name="qwen"))
        assert obj is not None
        assert obj["metadata"]["name"] == name
        assert obj["automountServiceAccountToken"] is False
        assert obj["metadata"]["ownerReferences"] == [owner_reference(endpoint(name="qwen"))]
        assert structural_problems(obj) == []


class TestCachePVC:
    def test_absent_unless_enabled(self) -> None:
        assert build_cache_pvc(endpoint()) is None

    def test_retained_by_default_has_no_owner(self) -> None:
        pvc = build_cache_pvc(endpoint({"cache": {"enabled": True, "storageClass": "fast-ssd",
                                                  "size": "100Gi"}}, name="qwen"))
        assert pvc is not None
        assert pvc["metadata"]["name"] == "qwen-cache"
        assert "ownerReferences" not in pvc["metadata"]
        assert pvc["metadata"]["labels"]["aim.engine.amd.com/endpoint"] == "qwen"
        assert pvc["metadata"]["labels"]["app.kubernetes.io/instance"] == "qwen"
        assert pvc["spec"] == {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "100Gi"}},
            "storageClassName": "fast-ssd",
            "volumeMode": "Filesystem",
        }
        assert structural_problems(pvc) == []

    def test_owned_when_not_retained(self) -> None:
        ep = endpoint({"cache": {"enabled": True, "retainOnDelete": False}}, name="qwen")
        pvc = build_cache_pvc(ep)
        assert pvc is not None
        assert pvc["metadata"]["ownerReferences"] == [owner_reference(ep)]

    def test_default_storage_class_is_omitted(self) -> None:
        pvc = build_cache_pvc(endpoint({"cache": {"enabled": True, "size": 1073741824}}))
        assert pvc is not None
        assert "storageClassName" not in pvc["spec"]
        assert pvc["spec"]["resources"]["requests"]["storage"] == "1073741824"

    @pytest.mark.parametrize(("min_r", "max_r", "mode"), [
        (1, 1, "ReadWriteOnce"), (0, 1, "ReadWriteOnce"), (1, 2, "ReadWriteMany"),
        (3, 3, "ReadWriteMany")])
    def test_access_mode_follows_max_replicas(self, min_r: int, max_r: int, mode: str) -> None:
        pvc = build_cache_pvc(endpoint({"cache": {"enabled": True}, "scaling": {
            "minReplicas": min_r, "maxReplicas": max_r}}))
        assert pvc is not None
        assert pvc["spec"]["accessModes"] == [mode]

    def test_existing_access_modes_are_kept(self) -> None:
        ep = endpoint({"cache": {"enabled": True}, "scaling": {"minReplicas": 1,
                                                               "maxReplicas": 4}})
        pvc = build_cache_pvc(ep, existing_access_modes=["ReadWriteOnce"])
        assert pvc is not None
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
