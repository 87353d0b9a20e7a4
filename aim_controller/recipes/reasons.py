"""Reason codes of the recipe engine: one set, shared by endpoint selection
(``status.recipe``, the RecipeSelected condition) and the AIMRecipe fit status."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CLOSEST", "STATIC_REJECTIONS", "Reason"]


class Reason(StrEnum):
    # Decision reasons (also the chosen candidate's reason).
    SELECTED = "Selected"
    STICKY = "Sticky"
    RESELECTED = "Reselected"
    ESTIMATED = "Estimated"
    NO_RECIPE = "NoRecipe"
    NO_FEASIBLE_CANDIDATE = "NoFeasibleCandidate"
    INVALID_SPEC = "InvalidSpec"
    # Feasible candidates that were not chosen.
    OUTSCORED = "Outscored"
    # Scores better than the chosen one, but precedence (namespace recipes before the
    # catalog, untainted pools before tainted) put it behind.
    OUTRANKED = "Outranked"
    PREVIOUS_KEPT = "PreviousKept"
    # Rejections.
    SHADOWED = "ShadowedByNamespaceRecipe"
    GPU_COUNT_MISMATCH = "GpuCountMismatch"
    PRECISION_MISMATCH = "PrecisionMismatch"
    BACKEND_MISMATCH = "BackendMismatch"
    HARDWARE_MISMATCH = "HardwareMismatch"
    DISABLED = "Disabled"
    INVALID_RECIPE = "InvalidRecipe"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGpuMemory"
    HARDWARE_NOT_PRESENT = "HardwareNotPresent"
    DOES_NOT_FIT_ON_ONE_NODE = "DoesNotFitOnOneNode"
    INSUFFICIENT_FREE_GPUS = "InsufficientFreeGPUs"
    QUOTA_EXCEEDED = "QuotaExceeded"
    # Moved away from when its pods stayed unschedulable; kept out for a backoff.
    UNSCHEDULABLE_BACKOFF = "UnschedulableBackoff"
    # AIMRecipe status: a configuration that fits now.
    FITS = "Fits"


# Rejections that say nothing about the cluster: such a candidate can never be kept.
STATIC_REJECTIONS = frozenset(
    {
        Reason.SHADOWED,
        Reason.GPU_COUNT_MISMATCH,
        Reason.PRECISION_MISMATCH,
        Reason.BACKEND_MISMATCH,
        Reason.HARDWARE_MISMATCH,
        Reason.DISABLED,
        Reason.INVALID_RECIPE,
        Reason.INSUFFICIENT_GPU_MEMORY,
    }
)
# Which rejection best explains "nothing fits" (most actionable first).
CLOSEST = (
    Reason.UNSCHEDULABLE_BACKOFF,
    Reason.QUOTA_EXCEEDED,
    Reason.INSUFFICIENT_FREE_GPUS,
    Reason.DOES_NOT_FIT_ON_ONE_NODE,
    Reason.INSUFFICIENT_GPU_MEMORY,
    Reason.HARDWARE_NOT_PRESENT,
    Reason.GPU_COUNT_MISMATCH,
    Reason.PRECISION_MISMATCH,
    Reason.BACKEND_MISMATCH,
    Reason.HARDWARE_MISMATCH,
    Reason.INVALID_RECIPE,
    Reason.DISABLED,
    Reason.SHADOWED,
)
