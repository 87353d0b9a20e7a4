"""Helpers shared by the unit and integration tests.

Importable as ``support`` because ``tests/`` is on ``sys.path`` (tests/conftest.py
puts it there). Cluster fixtures stay in tests/conftest.py, where pytest finds them.
"""

from support.clock import FakeClock
from support.waiting import eventually

__all__ = ["FakeClock", "eventually"]
