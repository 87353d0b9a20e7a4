"""Waiting for a fact instead of for a number of seconds."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(
    fn: Callable[[], Any],
    within: float = 60.0,
    *,
    what: str = "",
    interval: float | None = None,
    blocking: bool = False,
) -> Any:
    """Poll ``fn`` until it returns something truthy, and return that.

    ``fn`` may be sync or async. ``blocking=True`` runs a sync ``fn`` in a
    worker thread (kubectl, sync HTTP), so the loop, and any operator running
    on it, keeps going meanwhile; otherwise ``fn`` runs on the loop and sees
    its state between steps. ``interval`` defaults to 0.05 s, or 0.5 s with
    ``blocking`` (each poll then costs a thread and usually a process).
    ``within`` (seconds) only bounds a failing test: it is never what a test asserts.
    Raises AssertionError naming ``what`` and the last value seen.
    """
    if interval is None:
        interval = 0.5 if blocking else 0.05
    last: Any = None
    bound = asyncio.timeout(within)
    try:
        async with bound:
            while True:
                last = await asyncio.to_thread(fn) if blocking else fn()
                if inspect.isawaitable(last):
                    last = await last
                if last:
                    return last
                await asyncio.sleep(interval)
    except TimeoutError:
        if not bound.expired():
            raise
        raise AssertionError(
            f"timed out after {within:g}s waiting for {what or _name(fn)}; last: {last!r}"
        ) from None


def _name(fn: Callable[[], Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
