"""The rendered engine invocation, the config ConfigMap and the config checksum."""

from __future__ import annotations

import json
import shlex

import pytest
from test_builders_support import (
    SETTINGS,
    chosen,
    chosen_1gpu,
    endpoint,
    flag_value,
)

from aim_controller.builders import (
    OperatorSettings,
    build_config_map,
    config_checksum,
    render_engine,
)
from aim_controller.builders.engine import set_flag


class TestArgs:
    def test_keeps_recipe_args_in_order_when_already_consistent(self) -> None:
        c = chosen()
        eng = render_engine(endpoint(), c, SETTINGS)
        assert eng.args == c.args
        assert eng.command == ("python3", "-m", "vllm.entrypoints.openai.api_server")

    def test_adds_port_and_no_tp_for_one_gpu(self) -> None:
        eng = render_engine(endpoint(), chosen_1gpu(), SETTINGS)
        args = list(eng.args)
        assert flag_value(args, "--port") == "8000"
        assert "--tensor-parallel-size" not in args
        assert args[:4] == ["--model", "Qwen/Qwen2.5-7B-Instruct", "--max-model-len", "8192"]

    @pytest.mark.parametrize(
        "args",
        [("--port", "9000"), ("--port=9000",), ("--port",)],
    )
    def test_rewrites_port(self, args: tuple[str, ...]) -> None:
        eng = render_engine(endpoint(), chosen_1gpu(args=args), SETTINGS)
        assert flag_value(list(eng.args), "--port") == "8000"
        assert sum(a.startswith("--port") for a in eng.args) == 1

    @pytest.mark.parametrize(
        "args",
        [(), ("--tensor-parallel-size", "2"), ("-tp", "8"), ("--tensor-parallel-size=1",)],
    )
    def test_tensor_parallel_size_equals_gpu_count(self, args: tuple[str, ...]) -> None:
        eng = render_engine(endpoint(), chosen(args=args), SETTINGS)
        values = [flag_value(list(eng.args), f) for f in ("--tensor-parallel-size", "-tp")]
        assert [v for v in values if v is not None] == ["4"]

    def test_resources_gpu_count_overrides_tp(self) -> None:
        ep = endpoint({"resources": {"gpuCount": 8}})
        eng = render_engine(ep, chosen(), SETTINGS)
        assert flag_value(list(eng.args), "--tensor-parallel-size") == "8"
        assert eng.gpu_count == 8

    def test_adds_model_and_pinned_revision(self) -> None:
        ep = endpoint({"model": {"id": "Qwen/Qwen3-32B", "version": "abc123"}})
        eng = render_engine(ep, chosen(args=("--dtype", "bfloat16")), SETTINGS)
        assert flag_value(list(eng.args), "--model") == "Qwen/Qwen3-32B"
        assert flag_value(list(eng.args), "--revision") == "abc123"

    def test_latest_is_no_revision(self) -> None:
        ep = endpoint({"model": {"id": "Qwen/Qwen3-32B", "version": "latest"}})
        assert "--revision" not in render_engine(ep, chosen(), SETTINGS).args

    def test_sglang_profile(self) -> None:
        eng = render_engine(endpoint(), chosen(backend="sglang", args=()), SETTINGS)
        args = list(eng.args)
        assert eng.command == ("python3", "-m", "sglang.launch_server")
        assert flag_value(args, "--model-path") == "Qwen/Qwen2.5-7B-Instruct"
        assert flag_value(args, "--tp-size") == "4"
        assert flag_value(args, "--host") == "0.0.0.0"
        assert "--enable-metrics" in args
        assert eng.image == SETTINGS.image_for("sglang")

    def test_set_flag_switch_and_dangling(self) -> None:
        assert set_flag(["--x"], ["--enable"], None) == ["--x", "--enable"]
        assert set_flag(["--enable"], ["--enable"], None) == ["--enable"]
        assert set_flag(["--a", "1"], ["--b"], "2", add=False) == ["--a", "1"]


class TestImageAndEnv:
    def test_image_precedence(self) -> None:
        assert render_engine(endpoint(), chosen(), SETTINGS).image == SETTINGS.image_for("vllm")
        assert render_engine(endpoint(), chosen(image="r/recipe:1"), SETTINGS).image == "r/recipe:1"
        ep = endpoint({"image": "mirror.local/vllm:pinned"})
        assert render_engine(ep, chosen(image="r/recipe:1"), SETTINGS).image == (
            "mirror.local/vllm:pinned"
        )
        custom = OperatorSettings(images={"vllm": "mirror/vllm:2"})
        assert render_engine(endpoint(), chosen(), custom).image == "mirror/vllm:2"

    def test_hf_home_on_the_cache_wins_over_recipe_env(self) -> None:
        c = chosen(env={"HF_HOME": "/tmp/hf", "VLLM_USE_TRITON_FLASH_ATTN": "0"})
        with_cache = render_engine(endpoint({"cache": {"enabled": True}}), c, SETTINGS)
        assert dict(with_cache.env) == {"HF_HOME": "/models/hf", "VLLM_USE_TRITON_FLASH_ATTN": "0"}
        without = render_engine(endpoint(), c, SETTINGS)
        assert dict(without.env)["HF_HOME"] == "/tmp/hf"
        assert [k for k, _ in with_cache.env] == sorted(k for k, _ in with_cache.env)

    def test_unknown_backend(self) -> None:
        with pytest.raises(ValueError, match="tgi"):
            render_engine(endpoint(), chosen(backend="tgi"), SETTINGS)


class TestConfigMap:
    def test_contents(self) -> None:
        c = chosen()
        cm = build_config_map(endpoint({"cache": {"enabled": True}}, name="e1"), c, SETTINGS)
        assert cm["metadata"]["name"] == "e1-config"
        data = cm["data"]
        assert list(data) == sorted(data)
        assert set(data) == {"args", "args.json", "command", "env.json", "image", "recipe.json",
                             "selection.json"}
        assert shlex.split(data["args"]) == json.loads(data["args.json"]) == list(c.args)
        assert shlex.split(data["command"])[:3] == ["python3", "-m",
                                                    "vllm.entrypoints.openai.api_server"]
        assert json.loads(data["env.json"]) == {"HF_HOME": "/models/hf"}
        assert json.loads(data["selection.json"]) == dict(c.selection_record)
        assert json.loads(data["recipe.json"])["recipeName"] == "qwen-32b-mi300x-bf16"

    def test_args_are_shell_safe(self) -> None:
        c = chosen(args=("--chat-template", "{{ x }}; rm -rf /", "--served-model-name", "a b"))
        data = build_config_map(endpoint(), c, SETTINGS)["data"]
        assert shlex.split(data["args"]) == json.loads(data["args.json"])


class TestChecksum:
    def _sum(self, **overrides: object) -> str:
        c = chosen(**overrides)
        return config_checksum(render_engine(endpoint(), c, SETTINGS), c)

    def test_stable(self) -> None:
        assert self._sum() == self._sum()
        assert len(self._sum()) == 64

    @pytest.mark.parametrize(
        "overrides",
        [
            {"recipe_name": "other-recipe"},
            {"source": "builtin", "recipe_namespace": None},
            {"precision": "fp8"},
            {"args": (*chosen().args, "--enable-prefix-caching")},
            {"env": {"NCCL_DEBUG": "INFO"}},
            {"image": "mirror/vllm:2"},
            {"estimated": True},
        ],
    )
    def test_changes_with_the_recipe(self, overrides: dict[str, object]) -> None:
        assert self._sum(**overrides) != self._sum()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"selection_record": {"selectedAt": "2025-01-01T00:00:00Z", "score": 0.3}},
            {"tolerations": ()},
            {"device_ids": ("74a1",)},
            {"requests": {"cpu": "1"}},
        ],
    )
    def test_ignores_what_does_not_change_the_engine(self, overrides: dict[str, object]) -> None:
        # Tolerations, affinity and resources change the pod template by themselves.
        assert self._sum(**overrides) == self._sum()
