"""The builders with a SharedCache: an AIMCache holds the model Ready, so the pods mount
its PVC read-only and the engine loads the cached directory, offline."""

from __future__ import annotations

import json

import pytest
from test_builders_support import (
    SETTINGS,
    by_kind,
    chosen,
    chosen_1gpu,
    container_of,
    endpoint,
    flag_value,
    structural_problems,
)

from aim_controller.builders import (
    ANNOTATION_CONFIG_CHECKSUM,
    SharedCache,
    build_config_map,
    build_deployment,
    desired_children,
    render_engine,
)
from aim_controller.modelcache.layout import CACHE_MOUNT_PATH, model_path

MODEL = "Qwen/Qwen2.5-7B-Instruct"
SHARED = SharedCache("models", "models-pvc", model_path(MODEL), CACHE_MOUNT_PATH)


def test_the_engine_loads_the_cached_directory_under_the_model_id() -> None:
    ep = endpoint({"cache": {"enabled": True}})
    args = list(render_engine(ep, chosen_1gpu(), SETTINGS, SHARED).args)
    # The recipe's --model is rewritten, not duplicated; the API name is the model id.
    assert args.count("--model") == 1
    assert flag_value(args, "--model") == "/cache/models/Qwen--Qwen2.5-7B-Instruct"
    assert flag_value(args, "--served-model-name") == MODEL
    env = dict(render_engine(ep, chosen_1gpu(), SETTINGS, SHARED).env)
    # Offline; the own cache's HF_HOME is not set (that volume is not mounted).
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_HOME" not in env


def test_sglang_and_a_recipe_that_names_the_model_itself() -> None:
    c = chosen_1gpu(backend="sglang", args=("--model-path", MODEL, "--served-model-name", "x"))
    args = list(render_engine(endpoint(), c, SETTINGS, SHARED).args)
    assert flag_value(args, "--model-path") == SHARED.model_path
    assert flag_value(args, "--served-model-name") == "x"  # the recipe's choice stands
    bare = chosen_1gpu(args=("--max-model-len", "8192"))
    assert flag_value(list(render_engine(endpoint(), bare, SETTINGS, SHARED).args),
                      "--model") == SHARED.model_path


def test_no_revision_with_a_shared_cache() -> None:
    ep = endpoint({"model": {"id": MODEL, "version": "main"}})
    assert flag_value(list(render_engine(ep, chosen_1gpu(), SETTINGS).args), "--revision")
    assert "--revision" not in render_engine(ep, chosen_1gpu(), SETTINGS, SHARED).args


@pytest.mark.parametrize("own", [False, True])
def test_the_deployment_mounts_the_aim_cache_pvc_read_only(own: bool) -> None:
    ep = endpoint({"cache": {"enabled": own}})
    d = build_deployment(ep, chosen(), SETTINGS, SHARED)
    assert structural_problems(d) == []
    pod = d["spec"]["template"]["spec"]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "aim-cache", "persistentVolumeClaim": {
        "claimName": "models-pvc", "readOnly": True}}]
    mounts = [m for m in container_of(d)["volumeMounts"] if m["name"] == "aim-cache"]
    assert mounts == [{"name": "aim-cache", "mountPath": "/cache", "readOnly": True}]
    assert all(m["name"] != "model-cache" for m in container_of(d)["volumeMounts"])


def test_switching_to_the_cache_rolls_the_pods_and_the_config_map_agrees() -> None:
    ep = endpoint({"cache": {"enabled": True}})
    own = build_deployment(ep, chosen(), SETTINGS)
    shared = build_deployment(ep, chosen(), SETTINGS, SHARED)
    checksum = [d["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_CHECKSUM]
                for d in (own, shared)]
    assert checksum[0] != checksum[1]
    cm = build_config_map(ep, chosen(), SETTINGS, SHARED)
    assert json.loads(cm["data"]["args.json"]) == container_of(shared)["args"]
    assert build_deployment(ep, chosen(), SETTINGS, None) == own  # unchanged without one


def test_the_own_pvc_is_not_created_for_a_shared_cache_but_an_existing_one_stays() -> None:
    ep = endpoint({"cache": {"enabled": True}})
    kinds = [o["kind"] for o in desired_children(ep, chosen(), SETTINGS,
                                                 monitoring_available=False,
                                                 shared_cache=SHARED)]
    assert "PersistentVolumeClaim" not in kinds
    kept = desired_children(ep, chosen(), SETTINGS, monitoring_available=False,
                            existing_cache_access_modes=["ReadWriteOnce"], shared_cache=SHARED)
    assert by_kind(kept, "PersistentVolumeClaim")["metadata"]["name"] == "qwen-demo-cache"


def test_shared_cache_invariants() -> None:
    with pytest.raises(ValueError):
        SharedCache("c", "", "/cache/models/x", "/cache")
    with pytest.raises(ValueError):
        SharedCache("c", "pvc", "/elsewhere/x", "/cache")
