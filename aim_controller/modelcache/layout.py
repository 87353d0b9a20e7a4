"""Where things live on the cache volume. The one contract between the download and
cleanup commands (which write it) and the builders (which mount and point at it).

    <root>/models/<dir>/              one model, complete (renamed into place atomically)
    <root>/models/<dir>/.aim-model.json   its manifest (see manifest.py)
    <root>/.tmp/<dir>-<random>/       a download in progress, never read by endpoints
"""

from __future__ import annotations

import re

CACHE_MOUNT_PATH = "/cache"
"""Where Jobs and endpoint pods mount the cache PVC."""
MODELS_DIR = "models"
TMP_DIR = ".tmp"
MANIFEST_NAME = ".aim-model.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def model_dir_name(model_id: str) -> str:
    """The directory of a model id: "Qwen/Qwen3-32B" -> "Qwen--Qwen3-32B".

    Injective for the ids Hugging Face allows (org/name of [A-Za-z0-9._-]); anything
    else is replaced by "_" so a hostile id can never leave the models directory."""
    name = _UNSAFE.sub("_", model_id.replace("/", "--"))
    return "_" + name if name in {"", ".", ".."} or name.startswith(".") else name


def model_path(model_id: str, root: str = CACHE_MOUNT_PATH) -> str:
    """Absolute path of a model's directory under the cache root."""
    return f"{root.rstrip('/')}/{MODELS_DIR}/{model_dir_name(model_id)}"
