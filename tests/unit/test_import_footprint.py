"""The operator never loads the Kubernetes client libraries (their generated models
alone cost ~60 MB of RSS); a fresh interpreter proves it, whatever tests imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = ("import json, sys, aim_controller.main; "
         "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
         "('kubernetes', 'kubernetes_asyncio'))))")


def test_the_entry_point_imports_no_kubernetes_client_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout) == []
