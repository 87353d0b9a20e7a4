"""Operator-wide settings the builders need: :class:`OperatorSettings`.

Default images (pinned tags, overridable per backend with ``--backend-image``):

* vLLM: ``docker.io/rocm/vllm:rocm6.4.1_vllm_0.9.1_20250715``, AMD's validated
  ROCm 6.4.1 + vLLM 0.9.1 build (2025-07-15; MI200/MI300 series). vLLM 0.9.1 still
  exports ``vllm:gpu_cache_usage_perc``, which the dashboard uses.
* SGLang: ``docker.io/lmsysorg/sglang:v0.4.10-rocm630-mi30x``, the upstream ROCm 6.3
  build for MI300-class GPUs.

Tags, not digests: the tag names the ROCm and engine versions, which is what
recipes are validated against; pin a digest through ``--backend-image`` when
reproducibility across re-tags matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "DEFAULT_CACHE_MOUNT_PATH",
    "DEFAULT_IMAGES",
    "FIELD_MANAGER",
    "SGLANG_IMAGE",
    "VLLM_IMAGE",
    "OperatorSettings",
]

VLLM_IMAGE = "docker.io/rocm/vllm:rocm6.4.1_vllm_0.9.1_20250715"
SGLANG_IMAGE = "docker.io/lmsysorg/sglang:v0.4.10-rocm630-mi30x"
DEFAULT_IMAGES: Mapping[str, str] = MappingProxyType({"sglang": SGLANG_IMAGE, "vllm": VLLM_IMAGE})
FIELD_MANAGER = "aim-controller"
DEFAULT_CACHE_MOUNT_PATH = "/models"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Settings shared by every endpoint.

    Invariants: ``cache_mount_path`` is absolute; budgets are positive;
    ``images`` has an entry for every backend an endpoint may name (a missing one is
    a ValueError from :meth:`image_for`).
    """

    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    """Container image per backend."""
    field_manager: str = FIELD_MANAGER
    """Server-side apply field manager of every write."""
    cache_mount_path: str = DEFAULT_CACHE_MOUNT_PATH
    """Where the model cache PVC is mounted; HF_HOME is ``<path>/hf``."""
    startup_budget_seconds: int = 1800
    """How long an engine may take from container start to healthy (download + load
    of a large model): the startup probe allows this long."""
    image_pull_budget_seconds: int = 1200
    """Allowance for pulling the (8-20 GB) ROCm engine image, on top of the startup
    budget, in the Deployment's progress deadline."""
    shm_size_limit: str = "16Gi"
    """Upper bound of the memory-backed /dev/shm (RCCL and the engine's worker IPC)."""
    monitoring_labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels on ServiceMonitors and PrometheusRules so a Prometheus with a
    selector picks them up (e.g. ``release: kube-prometheus-stack``)."""
    gpu_metrics_prometheus_url: str | None = None
    """The Prometheus of KEDA ScaledObjects' GPU triggers (``--gpu-metrics-prometheus-url``);
    None: no ScaledObject is built."""

    def __post_init__(self) -> None:
        if not self.cache_mount_path.startswith("/"):
            raise ValueError("cache_mount_path must be absolute")
        if self.startup_budget_seconds <= 0 or self.image_pull_budget_seconds < 0:
            raise ValueError("budgets must be positive")
        object.__setattr__(self, "images", MappingProxyType(dict(self.images)))
        labels = dict(sorted(self.monitoring_labels.items()))
        object.__setattr__(self, "monitoring_labels", MappingProxyType(labels))

    def image_for(self, backend: str) -> str:
        """The default image of ``backend``."""
        try:
            return self.images[backend]
        except KeyError:
            raise ValueError(f"no image configured for backend {backend!r}") from None

    @property
    def hf_home(self) -> str:
        return f"{self.cache_mount_path.rstrip('/')}/hf"

    @property
    def progress_deadline_seconds(self) -> int:
        """>= the startup budget: a rollout only counts as stuck after the image pull
        and the full startup probe window have both been allowed for."""
        return self.startup_budget_seconds + self.image_pull_budget_seconds
