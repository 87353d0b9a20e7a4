"""The one-line JSON summary both commands end with: on stdout, and in a report file that
defaults to the pod's termination log, so the reconciler reads it from the container's
``state.terminated.message`` without reading logs.

The kubelet keeps at most 4096 bytes of a termination message; summaries are clipped to
``REPORT_LIMIT`` bytes: long lists lose their tail (``<list>Omitted`` says how many went)
and the message is shortened, so the line is always valid JSON.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REPORT_LIMIT = 4000
TERMINATION_LOG = "/dev/termination-log"
MESSAGE_LIMIT = 1024
"""The status' per-model message holds 1024 characters."""


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"), ensure_ascii=False)


def clip(summary: dict[str, Any], lists: Sequence[str] = (), limit: int = REPORT_LIMIT) -> str:
    """``summary`` as one JSON line of at most ``limit`` UTF-8 bytes. The lists named in
    ``lists`` lose items from their end, the first named last, and the ``message`` is
    shortened if that is not enough."""
    out = dict(summary)
    if isinstance(out.get("message"), str) and len(out["message"]) > MESSAGE_LIMIT:
        out["message"] = out["message"][: MESSAGE_LIMIT - 1] + "…"

    def size() -> int:
        return len(dumps(out).encode())

    for key in reversed(lists):
        items = out.get(key)
        if not isinstance(items, list) or size() <= limit:
            continue
        items = list(items)
        omitted = 0
        while items and size() > limit:  # a few hundred items at most: one at a time
            items.pop()
            omitted += 1
            out[key], out[key + "Omitted"] = items, omitted
    message = out.get("message")
    while isinstance(message, str) and message and size() > limit:
        message = message[: max(0, len(message) - max(16, size() - limit))]
        out["message"] = message + "…" if message else ""
    return dumps(out)


def default_report_file() -> str | None:
    """The termination log when this runs in a pod (it exists and is writable), else None."""
    if os.path.exists(TERMINATION_LOG) and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def emit(summary: dict[str, Any], report_file: str | None, lists: Sequence[str] = ()) -> str:
    """Print the clipped summary on stdout and write it to ``report_file`` (None or "":
    stdout only). A report file that cannot be written is logged, never fatal: the
    command's exit code still tells success from failure."""
    line = clip(summary, lists)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if report_file:
        try:
            with open(report_file, "w", encoding="utf-8") as f:
                f.write(line)
        except OSError as e:
            log.warning("cannot write the report file", path=report_file, error=str(e))
    return line
