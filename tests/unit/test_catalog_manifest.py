"""The catalog manifest: committed file up to date, one AIMRecipe per catalog entry."""

from __future__ import annotations

from pathlib import Path

import yaml

from aim_controller.api.v1alpha1.recipe import AIMRecipe
from aim_controller.recipes.catalog import load_builtin_catalog
from aim_controller.recipes.catalog_manifest import main, render

COMMITTED = Path(__file__).resolve().parents[2] / "manifests" / "catalog" / "recipes.yaml"


def test_committed_manifest_is_up_to_date() -> None:
    # If this fails: make manifests (python -m aim_controller.recipes.catalog_manifest ...).
    assert main([str(COMMITTED), "--check"]) == 0


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "recipes.yaml"
    assert main([str(out), "--check"]) == 1  # missing
    assert main([str(out)]) == 0
    assert main([str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("MI300X", "MI325X", 1))
    assert main([str(out), "--check"]) == 1


def test_every_catalog_recipe_is_an_object_in_the_namespace_with_the_labels() -> None:
    docs = [d for d in yaml.safe_load_all(render("ops")) if d is not None]
    catalog = {d["metadata"]["name"]: d for d in load_builtin_catalog()}
    assert [d["metadata"]["name"] for d in docs] == sorted(catalog)
    for d in docs:
        AIMRecipe.model_validate(d)
        meta = d["metadata"]
        assert meta["namespace"] == "ops"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "aim-engine"
        assert meta["labels"]["aim.engine.amd.com/catalog"] == "builtin"
        assert d["spec"] == catalog[meta["name"]]["spec"]
    assert render("ops") == render("ops")
