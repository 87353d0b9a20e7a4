"""Names, labels and ownerReferences shared by every child."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_builders_support import UID, endpoint

from aim_controller.builders import (
    LABEL_INSTANCE,
    LABEL_MODEL,
    LABEL_NAME,
    endpoint_labels,
    endpoint_name_problem,
    owner_reference,
    sanitize_label_value,
    selector_labels,
    selector_string,
)
from aim_controller.builders.meta import is_valid_label_value, object_meta


def test_recommended_labels() -> None:
    labels = endpoint_labels(endpoint({"model": {"id": "Qwen/Qwen3-32B"}}, name="qwen"))
    assert labels == {
        "aim.engine.amd.com/endpoint": "qwen",
        "aim.engine.amd.com/model": "Qwen_Qwen3-32B",
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/instance": "qwen",
        "app.kubernetes.io/managed-by": "aim-controller",
        "app.kubernetes.io/name": "aim-endpoint",
        "app.kubernetes.io/part-of": "aim-engine",
    }
    assert list(labels) == sorted(labels)


def test_selector_is_only_the_stable_labels() -> None:
    assert selector_labels("qwen") == {LABEL_INSTANCE: "qwen", LABEL_NAME: "aim-endpoint"}
    assert selector_string("qwen") == (
        "app.kubernetes.io/instance=qwen,app.kubernetes.io/name=aim-endpoint"
    )
    a = endpoint_labels(endpoint({"model": {"id": "a/b"}}, name="x"))
    b = endpoint_labels(endpoint({"model": {"id": "c/d"}}, name="x"))
    assert a[LABEL_MODEL] != b[LABEL_MODEL]
    assert {k: a[k] for k in selector_labels("x")} == {k: b[k] for k in selector_labels("x")}


def test_owner_reference() -> None:
    assert owner_reference(endpoint(name="e1")) == {
        "apiVersion": "aim.engine.amd.com/v1alpha1",
        "kind": "AIMEndpoint",
        "name": "e1",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_object_meta_keeps_our_labels_over_extra_ones() -> None:
    meta = object_meta(endpoint(name="e1"), "e1", extra_labels={LABEL_NAME: "evil", "team": "a"})
    assert meta["labels"][LABEL_NAME] == "aim-endpoint"
    assert meta["labels"]["team"] == "a"
    assert "annotations" not in meta
    assert "ownerReferences" not in object_meta(endpoint(), "x", owned=False)


def test_builders_need_server_metadata() -> None:
    with pytest.raises(ValueError, match="uid"):
        owner_reference(endpoint(uid=""))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Qwen/Qwen3-32B", "Qwen_Qwen3-32B"),
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama_Llama-3.1-8B-Instruct"),
        ("plain-1.0", "plain-1.0"),
        ("/leading/slash/", "leading_slash"),
        ("@@@", ""),
    ],
)
def test_sanitize_label_value(value: str, expected: str) -> None:
    assert sanitize_label_value(value) == expected


def test_long_model_ids_stay_distinct() -> None:
    a = sanitize_label_value("org/" + "x" * 80 + "-a")
    b = sanitize_label_value("org/" + "x" * 80 + "-b")
    assert a != b and len(a) <= 63 and len(b) <= 63


@given(st.text(max_size=300))
def test_sanitized_values_are_valid_and_idempotent(value: str) -> None:
    s = sanitize_label_value(value)
    assert is_valid_label_value(s)
    assert sanitize_label_value(s) == s


@pytest.mark.parametrize(
    ("name", "ok"),
    [("qwen-7b-demo", True), ("a" * 63, True), ("a" * 64, False), ("7b-demo", False),
     ("qwen.7b", False)],
)
def test_endpoint_name_problem(name: str, ok: bool) -> None:
    assert (endpoint_name_problem(name) is None) == ok
