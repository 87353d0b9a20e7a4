"""Kubernetes resource quantities (``"8"``, ``"500m"``, ``"64Gi"``, ``"1e3"``).

Only what the recipe engine needs: exact parsing to :class:`~fractions.Fraction`
and a count helper for integer resources such as ``amd.com/gpu``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["gpu_count", "parse_quantity"]

_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")
_CACHE: dict[str, Fraction] = {}


def parse_quantity(value: object) -> Fraction:
    """Parse a quantity; raises ValueError on malformed input."""
    if isinstance(value, bool):
        raise ValueError(f"invalid quantity {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"invalid quantity {value!r}")
        return Fraction(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid quantity {value!r}")
    hit = _CACHE.get(value)
    if hit is not None:
        return hit
    m = _RE.match(value.strip())
    if m is None:
        raise ValueError(f"invalid quantity {value!r}")
    number, exponent, suffix = m.groups()
    q = Fraction(number)
    q *= Fraction(10) ** int(exponent[1:]) if exponent else _SUFFIX[suffix or ""]
    if len(_CACHE) < 4096:  # the same few strings repeat across thousands of pods
        _CACHE[value] = q
    return q


def gpu_count(value: object) -> int:
    """An integer device count; fractional values round up like the scheduler's milli-units."""
    q = parse_quantity(value)
    if q < 0:
        raise ValueError(f"negative device count {value!r}")
    return math.ceil(q)
