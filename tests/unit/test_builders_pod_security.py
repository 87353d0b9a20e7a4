"""Hardened endpoint pods (builders.pod_security), the PodDisruptionBudget
(builders.pdb), and the Warning of pods a restricted namespace would refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from test_builders_support import (
    SETTINGS,
    chosen,
    container_of,
    endpoint,
    spec_example_endpoints,
    structural_problems,
)
from test_endpoint_decide import SPEC, endpoint_obj, observed, plan_of

from aim_controller.api.v1alpha1.endpoint import SeccompProfileSpec
from aim_controller.builders import build_deployment, selector_labels
from aim_controller.builders.pdb import build_pdb, pdb_wanted
from aim_controller.builders.pod_security import (
    DEFAULT_RUN_AS,
    ROCM_GROUPS,
    admission_warning,
    pod_security_context,
    runs_as_root,
)
from aim_controller.reconcilers.endpoint_report import (
    POD_SECURITY_ADMISSION,
    EventNote,
    desired_status,
    status_events,
)

T0 = "2026-01-01T00:00:00Z"
ROOT = {"runAsUser": 0, "runAsGroup": 0, "fsGroup": 0}  # the spec's example


def psc(**given: Any) -> dict[str, Any]:
    return pod_security_context(endpoint({"security": {"podSecurityContext": given}}))


def restricted_problems(pod_spec: dict[str, Any]) -> list[str]:
    """What the restricted Pod Security Standard (v1.36) checks, on a pod spec with one
    container and no container-level overrides of the pod's user or seccomp."""
    sc = pod_spec.get("securityContext") or {}
    problems = []
    if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    if sc.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot")
    if sc.get("runAsUser") == 0:
        problems.append("runAsUser")
    for c in pod_spec["containers"]:
        csc = c.get("securityContext") or {}
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation")
        if "ALL" not in (csc.get("capabilities") or {}).get("drop", ()):
            problems.append("capabilities")
        if csc.get("privileged"):
            problems.append("privileged")
    allowed = {"emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected",
               "downwardAPI", "csi", "ephemeral", "name"}
    problems += [f"volume {v['name']}" for v in pod_spec.get("volumes") or ()
                 if set(v) - allowed]
    return problems


class TestPodSecurityContext:
    def test_default_is_non_root_with_runtime_default_seccomp_and_rocm_groups(self) -> None:
        assert pod_security_context(endpoint()) == {
            "fsGroup": DEFAULT_RUN_AS, "fsGroupChangePolicy": "OnRootMismatch",
            "runAsGroup": DEFAULT_RUN_AS, "runAsNonRoot": True, "runAsUser": DEFAULT_RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
            "supplementalGroups": list(ROCM_GROUPS)}
        assert ROCM_GROUPS == (44, 109)

    def test_root_when_asked_and_nothing_else_changes(self) -> None:
        out = psc(**ROOT)
        assert (out["runAsUser"], out["runAsGroup"], out["fsGroup"]) == (0, 0, 0)
        assert "runAsNonRoot" not in out
        assert out["seccompProfile"] == {"type": "RuntimeDefault"}
        # runAsNonRoot false without a user: the image's user, possibly root.
        out = psc(runAsNonRoot=False)
        assert out["runAsNonRoot"] is False and "runAsUser" not in out

    def test_given_fields_win_one_by_one(self) -> None:
        out = psc(runAsUser=1000, supplementalGroups=[44, 992], fsGroupChangePolicy="Always",
                  fsGroup=3000, seccompProfile={"type": "Localhost",
                                                "localhostProfile": "profiles/rocm.json"})
        assert out == {"fsGroup": 3000, "fsGroupChangePolicy": "Always", "runAsNonRoot": True,
                       "runAsUser": 1000,
                       "seccompProfile": {"type": "Localhost",
                                          "localhostProfile": "profiles/rocm.json"},
                       "supplementalGroups": [44, 992]}
        # A group without a user: the default user in that group, which owns the volumes.
        out = psc(runAsGroup=2000)
        assert (out["runAsUser"], out["runAsGroup"], out["fsGroup"]) == (DEFAULT_RUN_AS,
                                                                          2000, 2000)

    def test_seccomp_profile_is_validated(self) -> None:
        with pytest.raises(ValidationError):
            psc(seccompProfile={"type": "Everything"})
        # localhostProfile with Localhost only: a CEL rule in the CRD (the API server
        # enforces it; see the CRD admission tests).
        rules = SeccompProfileSpec.model_json_schema()["x-kubernetes-validations"]
        assert [r["fieldPath"] for r in rules] == [".localhostProfile"]

    def test_every_spec_example_is_restricted_but_the_root_one(self) -> None:
        seen_root = False
        for name, ep in spec_example_endpoints():
            d = build_deployment(ep, chosen(), SETTINGS)
            assert structural_problems(d) == [], name
            problems = restricted_problems(d["spec"]["template"]["spec"])
            if runs_as_root(ep.spec):
                seen_root = True
                assert problems == ["runAsNonRoot", "runAsUser"], name
                assert admission_warning(ep.spec) is not None
            else:
                assert problems == [], (name, problems)
                assert admission_warning(ep.spec) is None
        assert seen_root

    def test_container_and_home(self) -> None:
        c = container_of(build_deployment(endpoint(), chosen(), SETTINGS))
        assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
        assert {"name": "HOME", "value": "/home/aim"} in c["env"]

    def test_unconfined_is_warned_for_baseline_too(self) -> None:
        ep = endpoint({"security": {"podSecurityContext": {
            "seccompProfile": {"type": "Unconfined"}}}})
        warning = admission_warning(ep.spec)
        assert warning is not None and "baseline or restricted" in warning


class TestPodDisruptionBudget:
    @pytest.mark.parametrize(("spec", "wanted"), [
        ({}, False),
        ({"replicas": 2}, False),  # scaling.maxReplicas (default 1) bounds it
        ({"replicas": 3, "scaling": {"minReplicas": 1, "maxReplicas": 1}}, False),
        ({"scaling": {"minReplicas": 1, "maxReplicas": 3}}, True),  # the HPA may add
        ({"scaling": {"minReplicas": 0, "maxReplicas": 1}}, False),
        ({"scaling": {"minReplicas": 2, "maxReplicas": 2}}, True),
    ])
    def test_wanted_iff_more_than_one_replica_is_possible(
            self, spec: dict[str, Any], wanted: bool) -> None:
        ep = endpoint(spec)
        assert pdb_wanted(ep.spec) is wanted
        assert (build_pdb(ep) is not None) is wanted

    def test_shape(self) -> None:
        two = {"scaling": {"minReplicas": 2, "maxReplicas": 2}}
        pdb = build_pdb(endpoint(two, name="qwen"))
        assert pdb is not None
        assert (pdb["apiVersion"], pdb["kind"], pdb["metadata"]["name"]) == (
            "policy/v1", "PodDisruptionBudget", "qwen")
        assert pdb["metadata"]["ownerReferences"][0]["controller"] is True
        assert pdb["spec"] == {"maxUnavailable": 1,
                               "selector": {"matchLabels": selector_labels("qwen")},
                               "unhealthyPodEvictionPolicy": "AlwaysAllow"}
        # It selects exactly the Deployment's pods.
        d = build_deployment(endpoint(two, name="qwen"), chosen(), SETTINGS)
        assert pdb["spec"]["selector"] == d["spec"]["selector"]


class TestAdmissionWarning:
    def report(self, spec: dict[str, Any], status: dict[str, Any] | None = None
               ) -> tuple[dict[str, Any], list[EventNote]]:
        o = observed(endpoint_obj(spec, status))
        plan = plan_of(o)
        status = desired_status(o, plan, None, T0, "sel")
        return status, [e for e in status_events(o, plan, status)
                        if e.reason == POD_SECURITY_ADMISSION]

    @staticmethod
    def resources_ready(status: dict[str, Any]) -> str:
        return str(next(c for c in status["conditions"]
                        if c["type"] == "ResourcesReady")["message"])

    def test_root_is_warned_once_and_said_in_resources_ready(self) -> None:
        root = {**SPEC, "security": {"podSecurityContext": ROOT}}
        status, events = self.report(root)
        [event] = events
        assert event.type == "Warning"
        assert "restricted" in event.message and "runAsUser 0" in event.message
        assert event.message in self.resources_ready(status)
        # The next status write says nothing new about it.
        _, events = self.report(root, status)
        assert events == []

    def test_hardened_default_says_nothing(self) -> None:
        status, events = self.report(SPEC)
        assert events == [] and "restricted" not in self.resources_ready(status)
