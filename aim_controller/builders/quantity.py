"""Kubernetes resource quantities: exact parsing and a canonical spelling.

The builders may not import the recipe engine, so this is a small, separate
parser (same grammar as apimachinery's ``resource.Quantity``). Values are
:class:`~fractions.Fraction` so that ``"0.5"``, ``"500m"`` and ``"1Gi"`` vs
``"1073741824"`` compare exactly, never through floats.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["format_quantity", "parse_quantity", "try_parse_quantity"]

_BINARY: tuple[tuple[str, int], ...] = (
    ("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10),
)
_DECIMAL: tuple[tuple[str, Fraction], ...] = (
    ("E", Fraction(10**18)), ("P", Fraction(10**15)), ("T", Fraction(10**12)),
    ("G", Fraction(10**9)), ("M", Fraction(10**6)), ("k", Fraction(10**3)),
    ("", Fraction(1)), ("m", Fraction(1, 10**3)), ("u", Fraction(1, 10**6)),
    ("n", Fraction(1, 10**9)),
)
_SUFFIX: dict[str, Fraction] = {s: Fraction(v) for s, v in _BINARY} | dict(_DECIMAL)
_RE = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity (``int`` or string); ValueError when malformed."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid quantity {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    m = _RE.match(value)
    if m is None:
        raise ValueError(f"invalid quantity {value!r}")
    number, exponent, suffix = m.groups()
    if exponent:
        return Fraction(number) * Fraction(10) ** int(exponent[1:])
    return Fraction(number) * _SUFFIX[suffix or ""]


def try_parse_quantity(value: object) -> Fraction | None:
    """Like :func:`parse_quantity` but None instead of raising."""
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def format_quantity(value: Fraction | int, *, binary: bool = False) -> str:
    """A short exact spelling of a non-negative quantity.

    Decimal: the largest decimal suffix that keeps an integer mantissa (``1500m``,
    ``10G``). With ``binary``, a binary suffix (``16Gi``) is used instead when the
    value is a whole number of KiB and that spelling is no longer. Invariant:
    ``parse_quantity(format_quantity(v)) == v`` for every ``v`` that is a whole number
    of nano-units.
    """
    q = Fraction(value)
    if q < 0:
        raise ValueError(f"negative quantity {value!r}")
    if q == 0:
        return "0"
    decimal = None
    for suffix, dec in _DECIMAL:
        mantissa = q / dec
        if mantissa.denominator == 1:
            decimal = f"{mantissa.numerator}{suffix}"
            break
    if decimal is None:
        raise ValueError(f"quantity {value!r} is finer than a nano-unit")
    if binary and q.denominator == 1:
        for suffix, scale in _BINARY:
            if q.numerator % scale == 0:
                spelled = f"{q.numerator // scale}{suffix}"
                return spelled if len(spelled) <= len(decimal) else decimal
    return decimal
