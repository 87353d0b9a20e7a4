"""share_strings: cached objects share equal keys and short values, and stay equal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aim_controller.machinery.compact import MAX_INTERNED_LENGTH, same_json, share_strings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30)


@given(json_values)
def test_the_result_equals_the_input(value: Any) -> None:
    assert share_strings(value) == value


def decoded(i: int) -> Any:
    # Built from text each time, as a watch event is: no string is shared to begin with.
    return json.loads(json.dumps({
        "metadata": {"name": f"ep-{i}", "uid": f"uid-{i}"},
        "spec": {"containers": [{"imagePullPolicy": "IfNotPresent",
                                 "ports": [{"protocol": "TCP"}]}]},
        "long": "x" * (MAX_INTERNED_LENGTH + 1),
    }))


def test_two_decoded_objects_share_their_keys_and_short_values() -> None:
    a, b = decoded(1), decoded(2)
    assert next(iter(a["metadata"])) is not next(iter(b["metadata"]))  # json.loads alone
    a, b = share_strings(a), share_strings(b)
    key_a, key_b = next(iter(a["metadata"])), next(iter(b["metadata"]))
    assert key_a == key_b == "name" and key_a is key_b
    ca, cb = a["spec"]["containers"][0], b["spec"]["containers"][0]
    assert ca["imagePullPolicy"] is cb["imagePullPolicy"]
    assert ca["ports"][0]["protocol"] is cb["ports"][0]["protocol"]
    # Long values stay apart (mostly unique: messages, certificates).
    assert a["long"] == b["long"] and a["long"] is not b["long"]


def test_other_types_are_left_as_they_are() -> None:
    marker = object()
    nested = {"t": (1, 2), "o": marker}
    out = share_strings(nested)
    assert out["t"] is nested["t"] and out["o"] is marker


def as_json(value: Any) -> str:
    """Type-exact text of a JSON value (True is not 1, 1 is not 1.0, -0.0 is not 0.0)."""
    return json.dumps(value, sort_keys=True)


@given(json_values, json_values)
def test_given_a_cached_version_the_result_still_equals_the_input_types_included(
        value: Any, cached: Any) -> None:
    out = share_strings(value, share_strings(cached))
    assert as_json(out) == as_json(value)


# What the API server sends: numbers within int64 (its integers) or floats.
api_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30)


@given(api_values, api_values)
def test_same_json_is_equality_of_the_json_text(a: Any, b: Any) -> None:
    if same_json(a, b):
        assert as_json(a) == as_json(b)
    decoded_again = json.loads(json.dumps(a))  # an equal object, as a new event brings it
    if as_json(decoded_again) == as_json(a):
        assert same_json(a, decoded_again)


def test_an_update_takes_its_unchanged_parts_from_the_cached_version() -> None:
    cached = share_strings(decoded(1))
    update = decoded(1)
    update["metadata"]["uid"] = "changed"
    out = share_strings(update, cached)
    assert out == update
    assert out["spec"] is cached["spec"]  # unchanged: lent whole
    assert out["long"] is cached["long"]
    assert out["metadata"] is not cached["metadata"]  # changed: rebuilt...
    assert out["metadata"]["name"] is cached["metadata"]["name"]  # ...from shared parts
    assert out["metadata"]["uid"] == "changed"


def test_values_equal_under_python_but_not_in_json_are_not_lent() -> None:
    cached = share_strings({"a": [True, 1.0, 0.0], "b": 1, "c": {"d": 1}})
    out = share_strings({"a": [1, 1, -0.0], "b": True, "c": {"d": 1.0}}, cached)
    assert as_json(out) == as_json({"a": [1, 1, -0.0], "b": True, "c": {"d": 1.0}})
    assert type(out["a"][0]) is int and type(out["b"]) is bool and type(out["c"]["d"]) is float


def test_a_longer_or_shorter_list_shares_what_its_positions_have_in_common() -> None:
    cached = share_strings({"l": [{"x": "1"}, {"y": "2"}]})
    longer = share_strings({"l": [{"x": "1"}, {"y": "2"}, {"z": "3"}]}, cached)
    assert longer["l"][0] is cached["l"][0] and longer["l"][1] is cached["l"][1]
    shorter = share_strings({"l": [{"x": "1"}]}, cached)
    assert shorter == {"l": [{"x": "1"}]} and shorter["l"][0] is cached["l"][0]
