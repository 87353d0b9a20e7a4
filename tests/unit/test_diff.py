"""needs_apply / applied_hash: the semantic diff that gates server-side applies."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_builders_support import SETTINGS, by_kind, chosen, endpoint

from aim_controller.builders import (
    ANNOTATION_APPLIED_HASH,
    applied_hash,
    covers,
    desired_children,
    needs_apply,
    stamp_applied_hash,
)
from aim_controller.builders.diff import is_quantity_path


def deployment(**spec: Any) -> dict[str, Any]:
    objs = desired_children(endpoint(spec or None, name="qwen"), chosen(), SETTINGS,
                            monitoring_available=False)
    return by_kind(objs, "Deployment")


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return c


def test_missing_object_needs_apply() -> None:
    assert needs_apply(deployment(), None)


def test_identical_does_not() -> None:
    d = deployment()
    assert not needs_apply(d, copy.deepcopy(d))


def test_server_additions_are_ignored() -> None:
    d = deployment()
    o = copy.deepcopy(d)
    del o["apiVersion"], o["kind"]  # list items come without them
    o["metadata"] |= {"uid": "u", "resourceVersion": "42", "generation": 3,
                      "managedFields": [{"manager": "aim-controller"}],
                      "creationTimestamp": "2025-01-01T00:00:00Z"}
    o["metadata"]["labels"]["extra"] = "x"
    o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    o["status"] = {"replicas": 1}
    o["spec"]["template"]["metadata"]["creationTimestamp"] = None
    c = container(o)
    c |= {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    c["ports"][0]["hostPort"] = 0
    o["spec"]["template"]["spec"] |= {"dnsPolicy": "ClusterFirst", "schedulerName": "x"}
    assert not needs_apply(d, o)


@pytest.mark.parametrize(("mine", "theirs"), [
    ("1", "1000m"), ("0.5", "500m"), ("64Gi", "68719476736"), ("16", "16000m"), ("1e3", "1k")])
def test_quantities_compare_by_value(mine: str, theirs: str) -> None:
    d = deployment()
    o = copy.deepcopy(d)
    container(d)["resources"]["requests"]["cpu"] = mine
    container(o)["resources"]["requests"]["cpu"] = theirs
    assert not needs_apply(d, o)
    container(o)["resources"]["requests"]["cpu"] = "3"
    assert needs_apply(d, o)


def test_pvc_size_and_shm_are_quantities() -> None:
    assert covers({"spec": {"resources": {"requests": {"storage": "1Gi"}}}},
                  {"spec": {"resources": {"requests": {"storage": "1073741824"}}}})
    assert covers({"emptyDir": {"sizeLimit": "16Gi"}}, {"emptyDir": {"sizeLimit": "16384Mi"}})
    assert covers({"target": {"averageValue": "85"}}, {"target": {"averageValue": "85000m"}})
    assert is_quantity_path(("spec", "hard", "memory"))
    assert not is_quantity_path(("spec", "containers", "[]", "args", "[]"))


def test_quantity_spellings_elsewhere_are_just_strings() -> None:
    d = deployment()
    o = copy.deepcopy(d)
    args = container(o)["args"]
    args[args.index("0.9")] = "0.90"
    assert needs_apply(d, o)


def test_int_or_string_ports_keep_their_type() -> None:
    d = deployment()
    o = copy.deepcopy(d)
    container(o)["ports"][0]["containerPort"] = "8000"
    assert needs_apply(d, o)
    o = copy.deepcopy(d)
    container(o)["startupProbe"]["httpGet"]["port"] = 8000
    assert needs_apply(d, o)
    assert covers({"targetPort": "http"}, {"targetPort": "http"})
    assert not covers({"port": 8000}, {"port": "8000"})
    assert not covers({"x": False}, {"x": 0})
    assert covers({"x": 1}, {"x": 1.0})


def test_zero_values_match_absent_fields() -> None:
    assert covers({"a": {}, "b": [], "c": "", "d": 0, "e": False, "f": None}, {})
    assert covers({"readOnly": False}, {"readOnly": None})
    assert not covers({"a": True}, {})
    assert not covers({"a": []}, {"a": [1]})


def test_atomic_lists_compare_by_position_and_length() -> None:
    d = deployment()
    o = copy.deepcopy(d)
    container(o)["args"].append("--enforce-eager")
    assert needs_apply(d, o)
    o = copy.deepcopy(d)
    container(o)["args"].reverse()
    assert needs_apply(d, o)


def test_merge_keyed_lists_match_by_key() -> None:
    d = deployment(cache={"enabled": True})
    container(d)["env"].append({"name": "A", "value": "1"})
    o = copy.deepcopy(d)
    pod = o["spec"]["template"]["spec"]
    container(o)["env"].reverse()
    container(o)["volumeMounts"].reverse()
    pod["volumes"].reverse()
    pod["containers"].insert(0, {"name": "istio-proxy", "image": "proxy"})  # injected sidecar
    pod["tolerations"].append({"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                               "effect": "NoExecute", "tolerationSeconds": 300})
    assert not needs_apply(d, o)
    engine = next(c for c in pod["containers"] if c["name"] == "engine")
    engine["env"][0]["value"] = "2"
    assert needs_apply(d, o)


def test_owner_reference_and_labels_are_compared() -> None:
    d = deployment()
    o = copy.deepcopy(d)
    o["metadata"]["ownerReferences"] = []
    assert needs_apply(d, o)
    o = copy.deepcopy(d)
    o["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    assert needs_apply(d, o)
    o = copy.deepcopy(d)
    del o["metadata"]["annotations"]
    assert needs_apply(d, o)


def test_removed_field_is_caught_by_the_hash() -> None:
    before = stamp_applied_hash(deployment(replicas=2, scaling={"minReplicas": 2,
                                                                "maxReplicas": 2}))
    observed = copy.deepcopy(before)
    assert not needs_apply(before, observed)
    # A field the new desired state no longer sets (as when a spec option is unset).
    after = deployment(replicas=2, scaling={"minReplicas": 2, "maxReplicas": 2})
    del after["spec"]["revisionHistoryLimit"]
    assert covers(after["spec"], observed["spec"])  # the subset check alone misses it
    assert needs_apply(after, observed)
    assert needs_apply(stamp_applied_hash(after), observed)


def test_hash_ignores_its_own_annotation_and_key_order() -> None:
    d = deployment()
    stamped = stamp_applied_hash(d)
    assert stamped["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] == applied_hash(d)
    assert applied_hash(stamped) == applied_hash(d)
    assert ANNOTATION_APPLIED_HASH not in d["metadata"]["annotations"]  # not mutated
    reordered = dict(reversed(list(d.items())))
    assert applied_hash(reordered) == applied_hash(d)
    assert len(applied_hash(d)) == 64
    # Stamped or not, an unchanged object needs no apply.
    assert not needs_apply(d, stamped)
    assert not needs_apply(stamped, stamped)


def test_hash_of_object_without_annotations() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}
    stamped = stamp_applied_hash(obj)
    assert applied_hash(stamped) == applied_hash(obj)
    assert "annotations" not in obj["metadata"]


def test_foreign_edit_of_an_owned_field_is_detected() -> None:
    d = stamp_applied_hash(deployment())
    o = copy.deepcopy(d)
    container(o)["image"] = "attacker/image:latest"
    assert needs_apply(d, o)
