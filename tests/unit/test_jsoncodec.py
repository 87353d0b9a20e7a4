"""The wire codec reads and writes what the standard library does, for JSON-shaped values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aim_controller.machinery import jsoncodec

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@given(values)
def test_decodes_what_the_standard_library_encodes(v: Any) -> None:
    text = json.dumps(v)
    assert jsoncodec.loads(text.encode()) == json.loads(text)
    assert jsoncodec.loads(text) == json.loads(text)


@given(values)
def test_encodes_what_the_standard_library_decodes_back(v: Any) -> None:
    assert json.loads(jsoncodec.dumps(v)) == v


def test_a_cut_document_is_a_value_error_as_before() -> None:
    with pytest.raises(json.JSONDecodeError):
        jsoncodec.loads(b'{"type": "ADDED", "object": {')
    with pytest.raises(ValueError):
        jsoncodec.loads(b"")
