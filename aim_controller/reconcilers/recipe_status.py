"""AIMRecipe status: is the recipe valid, and how many replicas of each
configuration fit on the cluster's free GPUs right now.

Level-triggered on three shared informers (AIMRecipes, Nodes, Pods in all
namespaces). Recipe events enqueue the recipe. Node and Pod events enqueue
nothing directly: GPU pods come and go all the time, so a change that can
alter the GPU inventory (see :mod:`.gpu_fingerprint`)
only marks the inventory stale and schedules ONE delayed re-evaluation of
every recipe; further changes before it runs ride along, and while changes keep
coming each re-evaluation waits longer (:func:`next_refresh_delay`). The inventory is
rebuilt (reusing per-object parses) only when marked stale.

The status is written with server-side apply only when it differs from the
observed one after normalisation, so a steady cluster costs no writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import structlog
from pydantic import ValidationError

from aim_controller.api.v1alpha1.recipe import AIMRecipeStatus
from aim_controller.machinery.builder import on_generation_change
from aim_controller.machinery.controller import Controller, Result
from aim_controller.machinery.events import WARNING
from aim_controller.machinery.handlers import KubeObject
from aim_controller.machinery.informer import InformerLike
from aim_controller.machinery.kubeclient import ApiException
from aim_controller.machinery.workqueue import RateLimitingQueue
from aim_controller.recipes import GpuInventory

from . import conditions
from .context import AIM_RECIPES, ControllerContext
from .recipe_fit import CONDITION_VALID, recipe_fit_status

__all__ = [
    "CONTROLLER_NAME",
    "REFRESH_DELAY",
    "REFRESH_MAX_DELAY",
    "next_refresh_delay",
    "register",
]

CONTROLLER_NAME: Final = "aimrecipe"
# How long GPU usage changes are coalesced before every recipe is re-evaluated.
REFRESH_DELAY: Final = 10.0
# While GPU usage keeps changing (a burst of endpoints starting), each refresh waits
# twice as long as the one before, up to this: a sustained burst rewrites every
# recipe's status a few times, not every REFRESH_DELAY (each write costs the API
# server about as much as a status write of ten endpoints).
REFRESH_MAX_DELAY: Final = 40.0

log = structlog.get_logger(__name__)


def next_refresh_delay(previous: float | None, since_last_fire: float | None,
                       base: float, cap: float) -> float:
    """How long a refresh poked now waits.

    ``previous`` is the last refresh's delay and ``since_last_fire`` the time since it
    fired (None before the first). A poke within ``previous`` of the last refresh
    means changes are still arriving: back off (double, up to ``cap``). A quieter
    poke starts again at ``base``.
    """
    if previous is None or since_last_fire is None or since_last_fire >= previous:
        return base
    return max(base, min(previous * 2, cap))


class _Refresher:
    """Coalesces inventory changes into one re-evaluation of every recipe, some time later.

    Invariant: after ``poke()`` at time t, a refresh fires after t (at most ``cap``
    later) and enqueues every recipe cached when it fires, so each of their
    reconciles reads caches newer than t. Pokes while a refresh is pending cost
    nothing. The wait is :func:`next_refresh_delay`: ``delay`` after a quiet
    spell, growing while changes keep coming.
    """

    def __init__(self, queue: RateLimitingQueue[str], recipes: InformerLike, delay: float,
                 cap: float | None = None) -> None:
        self._queue = queue
        self._recipes = recipes
        self._delay = delay
        self._cap = cap if cap is not None else delay  # next_refresh_delay clamps to delay
        self._timer: asyncio.TimerHandle | None = None
        self._last_delay: float | None = None
        self._last_fire: float | None = None

    @property
    def pending(self) -> bool:
        return self._timer is not None

    @property
    def last_delay(self) -> float | None:
        """The wait of the refresh pending or last fired."""
        return self._last_delay

    def poke(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            since = None if self._last_fire is None else loop.time() - self._last_fire
            delay = next_refresh_delay(self._last_delay, since, self._delay, self._cap)
            self._last_delay = delay
            self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last_fire = asyncio.get_running_loop().time()
        # Listed now, not at poke time: a recipe added meanwhile may have been
        # reconciled against the older inventory.
        for key in self._recipes.store.list_keys():
            self._queue.add(key)  # a no-op once the queue is shut down


def _normalized(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The status as the API server would store it (schema defaults filled in),
    or None when it does not parse (then it is rewritten)."""
    try:
        model = AIMRecipeStatus.model_validate(status)
    except ValidationError:
        return None
    return model.model_dump(mode="json", exclude_none=True)


def desired_status(obj: KubeObject, inventory: GpuInventory, now: str) -> dict[str, Any]:
    """The status to write: the computed fit with conditions merged into the observed ones."""
    fit = recipe_fit_status(obj, inventory)
    observed = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation") or 0
    desired = [conditions.Cond(**c) for c in fit["conditions"]]
    fit["conditions"] = conditions.merge_conditions(
        observed.get("conditions"), desired, generation, now
    )
    return fit


def register(ctx: ControllerContext, *, refresh_delay: float = REFRESH_DELAY,
             refresh_max_delay: float = REFRESH_MAX_DELAY) -> Controller:
    """Set up the AIMRecipe status controller on ``ctx``'s shared informers.

    The caller runs it (``controller.run()``); it waits for its own caches only.
    """
    builder = ctx.builder(CONTROLLER_NAME)
    # Its own status write coming back must not re-evaluate it: the inventory has
    # usually moved on meanwhile, so it would write again, and again, for as long as
    # GPU usage keeps changing. The coalesced refresh covers the inventory.
    recipes = builder.for_(AIM_RECIPES, enqueue=on_generation_change)
    gpus = ctx.gpu_view()
    builder.uses(gpus)
    refresh = _Refresher(builder.queue, recipes, refresh_delay, refresh_max_delay)
    gpus.on_capacity_change(refresh.poke)

    async def reconcile(key: str) -> Result | None:
        obj = recipes.store.get(key)
        if obj is None:
            return None  # deleted: nothing to report on
        status = desired_status(obj, gpus.inventory(), conditions.now_rfc3339())
        observed = obj.get("status") or {}
        if _normalized(status) == _normalized(observed):
            return None
        meta = obj.get("metadata") or {}
        try:
            await ctx.writer.apply_status(
                {
                    "apiVersion": AIM_RECIPES.api_version,
                    "kind": AIM_RECIPES.kind,
                    "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                    "status": status,
                }
            )
        except ApiException as e:
            if e.status == 404:
                return None  # deleted since the cache saw it
            raise
        log.info("status updated", summary=status.get("summary"), valid=status.get("valid"))
        await _report_invalid(ctx, obj, status)
        return None

    return builder.complete(reconcile)


async def _report_invalid(
    ctx: ControllerContext, obj: KubeObject, status: Mapping[str, Any]
) -> None:
    """A Warning Event when the recipe turns invalid or its problem changes, not on every write."""
    new = conditions.find(status.get("conditions"), CONDITION_VALID)
    if new is None or new.get("status") != conditions.FALSE:
        return
    old = conditions.find((obj.get("status") or {}).get("conditions"), CONDITION_VALID)
    if old is not None and (old.get("status"), old.get("message")) == (
        new.get("status"),
        new.get("message"),
    ):
        return
    ctx.recorder.emit(
        dict(obj), WARNING, str(new.get("reason")), str(new.get("message") or "")
    )
