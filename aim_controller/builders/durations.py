"""Durations as the API writes them: ``"300s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"7d"``."""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["parse_duration", "parse_duration_seconds"]

_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600),
         "d": Fraction(86400)}


def parse_duration(value: str) -> Fraction:
    """Exact seconds of one or more ``<number><unit>`` terms (the CRD's DURATION_PATTERN;
    Go's ``time.ParseDuration`` syntax for non-negative durations from ms to h, plus d).
    A bare integer is taken as seconds. ValueError on anything else."""
    text = value.strip()
    if text.isdigit():
        return Fraction(int(text))
    pos, total = 0, Fraction(0)
    for m in _TERM.finditer(text):
        if m.start() != pos:
            break
        total += Fraction(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {value!r}")
    return total


def parse_duration_seconds(value: str) -> int:
    """Whole seconds, rounded up (a "250ms" delay is not "no delay"); see
    :func:`parse_duration`."""
    return math.ceil(parse_duration(value))
