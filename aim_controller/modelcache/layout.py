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


# Paths and names the commands share. Additions only: the contract above is unchanged.

DOWNLOAD_MARKER = ".aim-download.json"
"""In a ``.tmp`` entry: who started the download, of which model and revision."""
DOWNLOAD_LOCK = ".aim-download.lock"
"""In a ``.tmp`` entry: held (flock) by the live process downloading into it."""
DOWNLOAD_FILES = "files"
"""In a ``.tmp`` entry: the model's files as they arrive; renamed to models/<dir> when done."""
DELETING_SUFFIX = ".deleting"
"""A ``.tmp`` entry with this suffix is a model being deleted: removed on sight."""
_TMP_TOKEN = re.compile(r"[0-9a-f]{12}")


def models_root(root: str) -> str:
    return f"{root.rstrip('/')}/{MODELS_DIR}"


def tmp_root(root: str) -> str:
    return f"{root.rstrip('/')}/{TMP_DIR}"


def manifest_path(model_dir: str) -> str:
    return f"{model_dir.rstrip('/')}/{MANIFEST_NAME}"


def tmp_entry_name(model_id: str, token: str) -> str:
    """``<dir>-<token>``: a download of ``model_id`` in progress (token: 12 hex digits)."""
    if not _TMP_TOKEN.fullmatch(token):
        raise ValueError(f"tmp token must be 12 hex digits, got {token!r}")
    return f"{model_dir_name(model_id)}-{token}"


def is_tmp_entry_of(name: str, model_id: str) -> bool:
    """Whether ``name`` (in ``.tmp``) is a download of ``model_id``. Exact: the entries of
    "org/llama" never match those of "org/llama-2" (its token would not be 12 hex digits)."""
    prefix = model_dir_name(model_id) + "-"
    return name.startswith(prefix) and _TMP_TOKEN.fullmatch(name[len(prefix):]) is not None
