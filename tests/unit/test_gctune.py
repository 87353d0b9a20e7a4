"""The collector's tuning: thresholds, and the freeze once the first lists are cached."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from aim_controller.machinery import gctune


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_tune_raises_the_young_threshold_only() -> None:
    gc.set_threshold(700, 10, 10)
    gctune.tune(12345)
    assert gc.get_threshold() == (12345, 10, 10)


class Synced:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait_synced(self) -> None:
        await self.event.wait()


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_freezes_after_every_informer_synced_and_never_freezes_garbage() -> None:
    gc.unfreeze()
    a, b = Synced(), Synced()
    task = asyncio.create_task(gctune.freeze_when_synced([a, b]))  # type: ignore[list-item]
    garbage = Cycle()
    dead = weakref.ref(garbage)
    del garbage
    kept = [{"cached": "object"}]  # alive: frozen with the heap
    a.event.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done() and gc.get_freeze_count() == 0  # b has not listed yet
    b.event.set()
    await asyncio.wait_for(task, 10)
    assert gc.get_freeze_count() > 0
    assert dead() is None  # collected before the freeze, not frozen for good
    assert kept
