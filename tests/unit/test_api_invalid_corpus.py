"""The pydantic models agree with the CRD schema on the invalid-object corpus: every case
the schema itself rejects (not a CEL rule) fails model validation at the same field.

The same corpus runs against the real API server in
tests/integration/test_crd_admission.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from aim_controller.api.v1alpha1 import AIMCache, AIMEndpoint, AIMRecipe

MODELS: dict[str, type[BaseModel]] = {
    "AIMEndpoint": AIMEndpoint,
    "AIMRecipe": AIMRecipe,
    "AIMCache": AIMCache,
}


def _load_corpus() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "integration" / "invalid_objects" / "__init__.py"
    spec = importlib.util.spec_from_file_location("invalid_objects", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("invalid_objects", module)
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()
CASES = corpus.load_cases()


def k8s_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location in the API server's notation: a.b[0].c"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CASES) >= 25
    assert {c.kind for c in CASES} == set(MODELS)
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cel_only for c in CASES) >= 10


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.cel_only and c.updated is None], ids=lambda c: c.id
)
def test_schema_level_case_rejected_by_model_at_same_field(case: Any) -> None:
    with pytest.raises(ValidationError) as info:
        MODELS[case.kind].model_validate(case.obj)
    paths = [k8s_path(e["loc"]) for e in info.value.errors()]
    assert any(
        p == case.field_path or p.startswith((case.field_path + ".", case.field_path + "["))
        for p in paths
    ), f"{case.id}: expected an error at {case.field_path}, got {paths}"


@pytest.mark.parametrize("case", [c for c in CASES if c.updated is not None], ids=lambda c: c.id)
def test_transition_case_starts_from_a_valid_object(case: Any) -> None:
    assert MODELS[case.kind].model_validate(case.obj).metadata.name == case.obj["metadata"]["name"]
    # The update is only invalid relative to the old object: on its own it is fine.
    updated = MODELS[case.kind].model_validate(case.updated)
    assert updated != MODELS[case.kind].model_validate(case.obj)
