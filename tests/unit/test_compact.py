"""share_strings: cached objects share equal keys and short values, and stay equal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aim_controller.machinery.compact import MAX_INTERNED_LENGTH, share_strings

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
