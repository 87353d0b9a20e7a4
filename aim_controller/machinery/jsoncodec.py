"""JSON on the wire: every watch event and API response is decoded here, every request
body encoded here.

orjson, because JSON is the operator's largest single CPU cost while endpoints
converge: decoding watch events of Pods, Deployments and our own objects. orjson
decodes them about twice as fast as the standard library and encodes request bodies
about ten times as fast. Hashes and other text whose exact bytes must stay stable
(the applied hash of children) keep the standard library's encoder.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError  # a subclass of json.JSONDecodeError


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """The value of one JSON document."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value`` (dicts with str keys, lists, tuples, scalars)."""
    return orjson.dumps(value)
