"""The engine invocation: image, command, args and environment of the inference server.

:func:`render_engine` turns the endpoint spec and the chosen recipe into an
:class:`EngineConfig`, which both the ConfigMap (a readable record) and the
Deployment (the container) are built from, so the two never disagree.

Invariants of the rendered args:

* the engine listens on :data:`CONTAINER_PORT` (the container port named ``http``
  that the Service's targetPort and the probes use): an existing ``--port`` is
  rewritten, a missing one appended;
* the tensor-parallel size equals the GPUs per replica: an existing flag is
  rewritten; a missing one is appended when more than one GPU is used (1 is the
  engines' default);
* the model is always named (``--model``/``--model-path`` appended when the recipe
  lacks it), and a pinned ``spec.model.version`` (anything but "latest") becomes
  ``--revision`` when the recipe does not set one;
* every other argument is kept verbatim and in order;
* with a :class:`~.inputs.SharedCache` (an AIMCache holds the model Ready) the model
  argument is the cached directory (an existing one is rewritten), the model keeps
  its id as the API name (``--served-model-name``, unless the recipe names it), no
  ``--revision`` is added, ``HF_HUB_OFFLINE=1`` forbids any download and the own
  cache's ``HF_HOME`` is not set (that volume is not mounted).

The ROCm devices (``/dev/kfd``, ``/dev/dri``) and ``HIP_VISIBLE_DEVICES``-style
isolation come from the AMD device plugin with the ``amd.com/gpu`` request; the
builders add neither.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint

from .inputs import ChosenRecipe, SharedCache
from .settings import OperatorSettings

__all__ = [
    "BACKENDS",
    "CONTAINER_NAME",
    "CONTAINER_PORT",
    "METRICS_PATH",
    "PORT_NAME",
    "SERVED_MODEL_NAME_FLAG",
    "BackendProfile",
    "EngineConfig",
    "config_checksum",
    "effective_gpu_count",
    "engine_config_data",
    "render_engine",
    "selection_record_json",
    "set_flag",
]

CONTAINER_NAME = "engine"
CONTAINER_PORT = 8000
PORT_NAME = "http"
METRICS_PATH = "/metrics"  # both engines serve Prometheus metrics here
# Both engines name the model in the OpenAI API after this flag (default: the model arg).
SERVED_MODEL_NAME_FLAG = "--served-model-name"


@dataclass(frozen=True, slots=True)
class BackendProfile:
    """How to start one engine and where it answers.

    ``required_flags`` are appended (with their value, if any) when absent.
    """

    command: tuple[str, ...]
    model_flags: tuple[str, ...]
    port_flags: tuple[str, ...]
    tp_flags: tuple[str, ...]
    revision_flags: tuple[str, ...]
    required_flags: tuple[tuple[str, str | None], ...]
    health_path: str


BACKENDS: Mapping[str, BackendProfile] = {
    # The rocm/vllm images have no entrypoint that serves; the OpenAI server module
    # takes --model (not a positional like `vllm serve`). vLLM binds all interfaces
    # by default (IPv4 and IPv6), so no --host.
    "vllm": BackendProfile(
        command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
        model_flags=("--model",),
        port_flags=("--port",),
        tp_flags=("--tensor-parallel-size", "-tp"),
        revision_flags=("--revision",),
        required_flags=(),
        health_path="/health",
    ),
    # SGLang binds 127.0.0.1 and serves no metrics unless told to.
    "sglang": BackendProfile(
        command=("python3", "-m", "sglang.launch_server"),
        model_flags=("--model-path", "--model"),
        port_flags=("--port",),
        tp_flags=("--tp-size", "--tensor-parallel-size", "--tp"),
        revision_flags=("--revision",),
        required_flags=(("--host", "0.0.0.0"), ("--enable-metrics", None)),
        health_path="/health",
    ),
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The fully rendered engine invocation. ``env`` is sorted by name."""

    backend: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    gpu_count: int
    profile: BackendProfile

    def as_dict(self) -> dict[str, Any]:
        return {
            "args": list(self.args),
            "backend": self.backend,
            "command": list(self.command),
            "env": dict(self.env),
            "gpuCount": self.gpu_count,
            "image": self.image,
        }


def _flag_positions(args: Sequence[str], names: Sequence[str]) -> list[int]:
    return [
        i for i, a in enumerate(args)
        if a in names or any(a.startswith(f"{n}=") for n in names)
    ]


def set_flag(
    args: Sequence[str], names: Sequence[str], value: str | None, *, add: bool = True
) -> list[str]:
    """``args`` with every occurrence of the flag (any of ``names``, as ``--f v`` or
    ``--f=v``) set to ``value``; appended as ``names[0] value`` when absent and
    ``add``. ``value`` None is a switch: only presence is ensured."""
    out = list(args)
    hits = _flag_positions(out, names)
    if not hits:
        if add:
            out += [names[0]] if value is None else [names[0], value]
        return out
    if value is None:
        return out
    for i in reversed(hits):
        flag = out[i]
        if "=" in flag:
            out[i] = f"{flag.split('=', 1)[0]}={value}"
        elif i + 1 < len(out) and not out[i + 1].startswith("-"):
            out[i + 1] = value
        else:  # a dangling flag without its value
            out.insert(i + 1, value)
    return out


def _has_flag(args: Sequence[str], names: Sequence[str]) -> bool:
    return bool(_flag_positions(args, names))


def effective_gpu_count(endpoint: AIMEndpoint, chosen: ChosenRecipe) -> int:
    """GPUs per replica: ``spec.resources.gpuCount`` when set (it narrows selection,
    so it normally equals the recipe's), else the recipe's."""
    res = endpoint.spec.resources
    if res is not None and res.gpu_count is not None:
        return res.gpu_count
    return chosen.gpu_count


def render_engine(
    endpoint: AIMEndpoint, chosen: ChosenRecipe, settings: OperatorSettings,
    shared: SharedCache | None = None,
) -> EngineConfig:
    """The engine invocation for ``endpoint`` under ``chosen`` (see the module invariants).

    Image precedence: ``spec.image`` > the recipe's image > the backend default.
    Environment: the recipe's, plus ``HF_HOME`` on the cache volume when the cache is
    enabled (ours wins: downloads must land on the PVC).
    """
    spec = endpoint.spec
    backend = chosen.backend
    profile = BACKENDS.get(backend)
    if profile is None:
        raise ValueError(f"unknown backend {backend!r}")
    gpus = effective_gpu_count(endpoint, chosen)

    args = list(chosen.args)
    if shared is not None:
        args = _load_from_cache(args, profile, spec.model.id, shared)
    elif not _has_flag(args, profile.model_flags):
        args += [profile.model_flags[0], spec.model.id]
    version = spec.model.version
    if (shared is None and version and version != "latest"
            and not _has_flag(args, profile.revision_flags)):
        args += [profile.revision_flags[0], version]
    args = set_flag(args, profile.port_flags, str(CONTAINER_PORT))
    args = set_flag(args, profile.tp_flags, str(gpus), add=gpus > 1)
    for flag, value in profile.required_flags:
        if not _has_flag(args, (flag,)):
            args += [flag] if value is None else [flag, value]

    env = dict(chosen.env)
    if shared is not None:
        env["HF_HUB_OFFLINE"] = "1"
    elif spec.cache.enabled:
        env["HF_HOME"] = settings.hf_home
    image = spec.image or chosen.image or settings.image_for(backend)
    return EngineConfig(
        backend=backend,
        image=image,
        command=profile.command,
        args=tuple(args),
        env=tuple(sorted(env.items())),
        gpu_count=gpus,
        profile=profile,
    )


def _load_from_cache(
    args: list[str], profile: BackendProfile, model_id: str, shared: SharedCache
) -> list[str]:
    """The model argument pointed at the cached directory, the API name kept."""
    args = set_flag(args, profile.model_flags, shared.model_path)
    if not _has_flag(args, (SERVED_MODEL_NAME_FLAG,)):
        args += [SERVED_MODEL_NAME_FLAG, model_id]
    return args


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"


def engine_config_data(engine: EngineConfig, chosen: ChosenRecipe) -> dict[str, str]:
    """The ConfigMap data that describes how the engine runs (no selection record)."""
    return {
        "args": shlex.join(engine.args),
        "args.json": _json(list(engine.args)),
        "command": shlex.join((*engine.command, *engine.args)),
        "env.json": _json(dict(engine.env)),
        "image": engine.image,
        "recipe.json": _json(chosen.identity()),
    }


def selection_record_json(chosen: ChosenRecipe) -> str:
    return _json(dict(chosen.selection_record))


def config_checksum(engine: EngineConfig, chosen: ChosenRecipe) -> str:
    """sha256 over the engine config and the chosen recipe's identity.

    Stamped on the pod template, so a different recipe (or args, env, image) rolls
    the pods even when nothing else in the template changes. The selection record is
    deliberately excluded: re-selecting the same configuration must not restart pods
    that took half an hour to load a model.
    """
    payload = json.dumps(
        {"engine": engine.as_dict(), "recipe": chosen.identity()},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
