"""The wording helpers every user-facing message of the recipe engine shares."""

from __future__ import annotations

from aim_controller.api.v1alpha1 import MAX_MESSAGE

__all__ = ["clip", "plural"]


def plural(n: int, word: str) -> str:
    """``1 GPU``, ``2 GPUs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
