"""What every reconciler is given: shared informers, the writer, events, settings.

Reconcilers read only from the informers' caches and write only through
``writer`` (one field manager). A controller declares what it watches with
:meth:`ControllerContext.builder`, which also maps those kinds for the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aim_controller.api.v1alpha1.groupversion import (
    API_VERSION,
    GROUP,
    KIND_AIM_CACHE,
    KIND_AIM_ENDPOINT,
    KIND_AIM_RECIPE,
    PLURAL_AIM_CACHES,
    PLURAL_AIM_ENDPOINTS,
    PLURAL_AIM_RECIPES,
    VERSION,
)
from aim_controller.builders.settings import OperatorSettings
from aim_controller.machinery.builder import ControllerBuilder
from aim_controller.machinery.events import EventRecorder
from aim_controller.machinery.informer import InformerFactory
from aim_controller.machinery.metrics import MachineryMetrics
from aim_controller.machinery.resource import NODES, PODS, Resource
from aim_controller.machinery.writer import ObjectWriter
from aim_controller.recipes.selection import DEFAULT_RESELECT_AFTER

from .canary_metrics import Thresholds
from .gpu_view import GpuView
from .pod_slim import slim_pod

AIM_ENDPOINTS = Resource(GROUP, VERSION, PLURAL_AIM_ENDPOINTS, KIND_AIM_ENDPOINT)
AIM_RECIPES = Resource(GROUP, VERSION, PLURAL_AIM_RECIPES, KIND_AIM_RECIPE)
AIM_CACHES = Resource(GROUP, VERSION, PLURAL_AIM_CACHES, KIND_AIM_CACHE)
RESOURCE_QUOTAS = Resource("", "v1", "resourcequotas", "ResourceQuota")

assert AIM_ENDPOINTS.api_version == API_VERSION


@dataclass
class ControllerContext:
    informers: InformerFactory
    writer: ObjectWriter
    recorder: EventRecorder
    metrics: MachineryMetrics
    settings: OperatorSettings
    operator_namespace: str
    max_concurrent_reconciles: int = 10
    unschedulable_grace: timedelta = DEFAULT_RESELECT_AFTER
    # How long an endpoint waits for an AIMCache to download its model.
    cache_wait_timeout: timedelta = timedelta(minutes=15)
    # Prometheus for the canaries' metric analysis (None: pod health alone).
    canary_prometheus_url: str | None = None
    canary_thresholds: Thresholds = field(default_factory=Thresholds)
    # Background loops a controller needs (run by the manager while it leads).
    runnables: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    _gpu_view: GpuView | None = None

    def builder(self, name: str) -> ControllerBuilder:
        """A controller named ``name`` on the shared informers, mapping what it
        declares for the writer."""
        return ControllerBuilder(name, self.informers, self.writer.mapper, metrics=self.metrics,
                                 max_concurrent_reconciles=self.max_concurrent_reconciles)

    def gpu_view(self) -> GpuView:
        """The process's one GPU inventory over the shared Node and Pod informers
        (selector-free, so every controller can share them; pods slim, see
        :mod:`.pod_slim`)."""
        if self._gpu_view is None:
            self._gpu_view = GpuView(self.informers.informer(NODES),
                                     self.informers.informer(PODS, None, transform=slim_pod))
        return self._gpu_view
