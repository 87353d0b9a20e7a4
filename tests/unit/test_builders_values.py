"""Value types and small parsers of the builders: ChosenRecipe, OperatorSettings,
quantities and durations."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_builders_support import chosen

from aim_controller.builders import DEFAULT_IMAGES, OperatorSettings
from aim_controller.builders.durations import parse_duration_seconds
from aim_controller.builders.quantity import format_quantity, parse_quantity, try_parse_quantity
from aim_controller.builders.settings import VLLM_IMAGE


class TestChosenRecipe:
    def test_normalizes_device_ids_and_freezes_mappings(self) -> None:
        c = chosen(device_ids=("0x74B5", "74a1", "74a1"), requests={"memory": "1Gi", "cpu": 4})
        assert c.device_ids == ("74a1", "74b5")
        assert dict(c.requests) == {"cpu": "4", "memory": "1Gi"}
        with pytest.raises(TypeError):
            c.requests["cpu"] = "8"  # type: ignore[index]

    def test_caller_mutation_does_not_leak_in(self) -> None:
        requests = {"cpu": "4"}
        c = chosen(requests=requests)
        requests["cpu"] = "400"
        assert c.requests["cpu"] == "4"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"source": "catalog"},
            {"source": "builtin"},  # keeps recipe_namespace from the namespace default
            {"recipe_namespace": None},
            {"gpu_count": 0},
            {"gpu_count": True},
            {"recipe_name": ""},
            {"args": ("--port", 8000)},
            {"requests": {"cpu": 1.5}},
        ],
    )
    def test_rejects_broken_invariants(self, overrides: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            chosen(**overrides)

    def test_ref_and_identity(self) -> None:
        c = chosen()
        assert c.id.ref == "aim-engine/qwen-32b-mi300x-bf16"
        builtin = chosen(source="builtin", recipe_namespace=None)
        assert builtin.id.ref == "builtin/qwen-32b-mi300x-bf16"
        assert builtin.identity()["source"] == "builtin"
        assert "selection_record" not in c.identity()


class TestOperatorSettings:
    def test_defaults(self) -> None:
        s = OperatorSettings()
        assert s.image_for("vllm") == VLLM_IMAGE == DEFAULT_IMAGES["vllm"]
        assert VLLM_IMAGE.startswith("docker.io/rocm/vllm:rocm6.4.1_vllm_0.9.1_")
        assert s.field_manager == "aim-controller"
        assert s.hf_home == "/models/hf"
        assert s.progress_deadline_seconds >= s.startup_budget_seconds

    def test_unknown_backend_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="tgi"):
            OperatorSettings(images={"vllm": "x"}).image_for("tgi")

    @pytest.mark.parametrize(
        "kw", [{"cache_mount_path": "models"}, {"startup_budget_seconds": 0}]
    )
    def test_rejects_bad_values(self, kw: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            OperatorSettings(**kw)  # type: ignore[arg-type]


class TestQuantity:
    @pytest.mark.parametrize(
        ("a", "b"),
        [("1000m", "1"), ("0.5", "500m"), ("1Gi", "1073741824"), ("1e3", "1k"), (4, "4"),
         (".5", "0.5"), ("1.5Gi", "1536Mi")],
    )
    def test_equal_values(self, a: object, b: object) -> None:
        assert parse_quantity(a) == parse_quantity(b)

    @pytest.mark.parametrize("bad", ["", "1.2.3", "4 Gi", "Gi", "1gi", True, 1.5, None])
    def test_rejects(self, bad: object) -> None:
        assert try_parse_quantity(bad) is None
        with pytest.raises(ValueError):
            parse_quantity(bad)

    @pytest.mark.parametrize(
        ("value", "binary", "text"),
        [(Fraction(16 * 2**30), True, "16Gi"), (Fraction(3, 2), False, "1500m"),
         (Fraction(10**10), True, "10G"), (Fraction(0), False, "0"), (Fraction(8), False, "8")],
    )
    def test_format(self, value: Fraction, binary: bool, text: str) -> None:
        assert format_quantity(value, binary=binary) == text

    @given(st.integers(min_value=0, max_value=10**21), st.integers(0, 9), st.booleans())
    def test_format_round_trips(self, n: int, nano_exp: int, binary: bool) -> None:
        value = Fraction(n, 10**nano_exp)
        assert parse_quantity(format_quantity(value, binary=binary)) == value


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("300s", 300), ("5m", 300), ("1h30m", 5400), ("250ms", 1), ("1.5h", 5400),
         ("7d", 604800), ("60", 60), ("0s", 0)],
    )
    def test_parse(self, text: str, seconds: int) -> None:
        assert parse_duration_seconds(text) == seconds

    @pytest.mark.parametrize("bad", ["", "5x", "m5", "5m 3s", "-5s", "1h30", "1.s"])
    def test_rejects(self, bad: str) -> None:
        with pytest.raises(ValueError):
            parse_duration_seconds(bad)
