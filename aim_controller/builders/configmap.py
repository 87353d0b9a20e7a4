"""The ConfigMap (v1) ``<name>-config``: the rendered engine configuration and the
recipe selection record.

Keys (sorted): ``args`` (shell-quoted), ``args.json``, ``command`` (the full
shell-quoted command line, for copy-paste debugging), ``env.json``, ``image``,
``recipe.json`` (the chosen recipe's identity) and ``selection.json`` (the
selection record, with every candidate considered).

The pods do not mount it: the Deployment carries the same args and env itself
(rendered from the same :class:`~.engine.EngineConfig`), and the pod template's
config checksum covers everything here except ``selection.json``.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .engine import engine_config_data, render_engine, selection_record_json
from .inputs import ChosenRecipe, SharedCache
from .meta import endpoint_ref, object_meta
from .settings import OperatorSettings

__all__ = ["build_config_map", "config_map_name"]


def config_map_name(name: str) -> str:
    return f"{name}-config"


def build_config_map(
    endpoint: AIMEndpoint, chosen: ChosenRecipe, settings: OperatorSettings,
    shared: SharedCache | None = None,
) -> dict[str, Any]:
    engine = render_engine(endpoint, chosen, settings, shared)
    data = engine_config_data(engine, chosen) | {"selection.json": selection_record_json(chosen)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(endpoint, config_map_name(endpoint_ref(endpoint).name)),
        "data": dict(sorted(data.items())),
    }
