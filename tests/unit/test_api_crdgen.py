"""The CRD generator: committed manifests are current, and the schemas are structural,
documented and bounded (so the API server's CEL cost estimator accepts the rules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_controller.api import crdgen
from aim_controller.api.v1alpha1 import CATEGORY, GROUP, VERSION

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crd"
GENERATED = crdgen.generate()
CRDS = {name: yaml.safe_load(text) for name, text in GENERATED.items()}


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def all_nodes() -> list[Any]:
    return [
        pytest.param(path, node, id=f"{crd['spec']['names']['kind']}{path}")
        for crd in CRDS.values()
        for path, node in walk(schema_of(crd))
        if path != ".metadata"
    ]


def test_committed_manifests_are_current() -> None:
    stale = crdgen.check(CRD_DIR, GENERATED)
    assert not stale, (
        "manifests/crd is out of date with aim_controller/api/v1alpha1: run `make manifests` "
        "(python -m aim_controller.api.crdgen manifests/crd) and commit the result\n"
        + "".join(stale)
    )
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(GENERATED)


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == GENERATED


def test_file_names_and_identity() -> None:
    assert sorted(GENERATED) == [
        "aim.engine.amd.com_aimcaches.yaml",
        "aim.engine.amd.com_aimendpoints.yaml",
        "aim.engine.amd.com_aimrecipes.yaml",
    ]
    for crd in CRDS.values():
        names = crd["spec"]["names"]
        assert crd["metadata"]["name"] == f"{names['plural']}.{GROUP}"
        assert crd["metadata"]["labels"] == {"app.kubernetes.io/name": "aim-controller"}
        assert crd["spec"]["scope"] == "Namespaced"
        [version] = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
        assert "status" in version["subresources"]


def test_names_do_not_collide_with_amds_aim_operator() -> None:
    short = [s for crd in CRDS.values() for s in crd["spec"]["names"]["shortNames"]]
    assert sorted(short) == ["aich", "aiep", "airc"]
    for crd in CRDS.values():
        # AMD's AIM operator uses category `aim` and short names like `aimsvc`; `all`
        # would make `kubectl get all` list our objects.
        assert crd["spec"]["names"]["categories"] == [CATEGORY] == ["aim-engine"]


@pytest.mark.parametrize(("path", "node"), all_nodes())
def test_schema_node_is_structural_and_documented(path: str, node: dict[str, Any]) -> None:
    assert "$ref" not in node and "$defs" not in node
    assert "title" not in node and "nullable" not in node and "const" not in node
    assert "x-kubernetes-preserve-unknown-fields" not in node
    assert node.get("additionalProperties") is not False
    if node.get("x-kubernetes-int-or-string"):
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        assert "type" not in node
    else:
        assert "anyOf" not in node and "oneOf" not in node and "allOf" not in node
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}
    if node.get("type") == "object" and "additionalProperties" not in node and path:
        assert "properties" in node, f"{path}: an object without fields"
    if "properties" in node:
        assert not set(node["properties"]) & {"additionalProperties"}
    if path:  # everything but the root has help for `kubectl explain`
        assert node.get("description") or path.endswith(("[]", "[*]")), f"{path}: no description"
    # Bounded collections keep the CEL cost estimate within the API server's budget.
    if node.get("type") == "array":
        assert "maxItems" in node, f"{path}: unbounded list"
        assert node["x-kubernetes-list-type"] in {"atomic", "map", "set"}
    if isinstance(node.get("additionalProperties"), dict):
        assert "maxProperties" in node, f"{path}: unbounded map"


def test_required_fields() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: schema_of(crd) for crd in CRDS.values()}
    ep, rc, ch = by_kind["AIMEndpoint"], by_kind["AIMRecipe"], by_kind["AIMCache"]
    assert ep["required"] == ["spec"]
    assert ep["properties"]["spec"]["required"] == ["model"]
    assert ep["properties"]["spec"]["properties"]["model"]["required"] == ["id"]
    assert rc["properties"]["spec"]["required"] == ["configurations", "hardware", "modelId"]
    assert rc["properties"]["spec"]["properties"]["configurations"]["minItems"] == 1
    assert ch["properties"]["spec"]["required"] == ["storage"]
    for schema in by_kind.values():
        assert "required" not in schema["properties"]["status"]


def test_quantities_are_int_or_string_with_pattern() -> None:
    spec = schema_of(CRDS["aim.engine.amd.com_aimendpoints.yaml"])["properties"]["spec"]
    memory = spec["properties"]["resources"]["properties"]["memory"]
    assert memory["x-kubernetes-int-or-string"] is True
    assert memory["pattern"].startswith("^")
    assert memory["minimum"] == 0


def test_cel_rules_have_messages() -> None:
    rules = [
        (path, rule)
        for crd in CRDS.values()
        for path, node in walk(schema_of(crd))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 14
    for path, rule in rules:
        assert rule["message"], path
        assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression"}


def resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for part in json_path.split("[?")[0].strip(".").split("."):
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_printer_columns_point_at_schema_fields(name: str) -> None:
    crd = CRDS[name]
    schema = schema_of(crd)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns[:-1]:
        path = column["jsonPath"]
        node = resolve(schema, path)
        if "[?" in path:  # the Ready condition's status
            assert path.endswith(".status") and node["type"] == "array"
        else:
            assert node.get("type", "string") == column["type"], path


def test_printer_column_names() -> None:
    def names(crd_file: str) -> list[str]:
        crd = CRDS[crd_file]
        return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert names("aim.engine.amd.com_aimendpoints.yaml") == [
        "Model", "Recipe", "Hardware", "GPUs", "Ready", "Replicas", "Canary", "URL", "Age",
    ]
    assert names("aim.engine.amd.com_aimrecipes.yaml") == [
        "Model", "Hardware", "Precision", "Backend", "Valid", "Fits", "Age",
    ]
    assert names("aim.engine.amd.com_aimcaches.yaml") == [
        "Size", "Phase", "Models", "Used", "Ready", "Age",
    ]


def test_scale_subresource() -> None:
    crd = CRDS["aim.engine.amd.com_aimendpoints.yaml"]
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    schema = schema_of(crd)
    assert resolve(schema, ".spec.replicas")["type"] == "integer"
    # GET .../scale fails while spec.replicas is absent, so the server must default it.
    assert resolve(schema, ".spec.replicas")["default"] == 1
    assert resolve(schema, ".status.replicas")["type"] == "integer"
    assert resolve(schema, ".status.selector")["type"] == "string"
    for other in ("aim.engine.amd.com_aimrecipes.yaml", "aim.engine.amd.com_aimcaches.yaml"):
        assert "scale" not in CRDS[other]["spec"]["versions"][0]["subresources"]


def test_check_cli_reports_stale_and_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    target = tmp_path / "aim.engine.amd.com_aimcaches.yaml"
    target.write_text(target.read_text().replace("Phase", "Stage"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "-          name: Stage" in out.out and "+          name: Phase" in out.out
    assert "make manifests" in out.err


def test_non_structural_model_is_refused() -> None:
    from pydantic import Field

    from aim_controller.api.v1alpha1 import APIModel

    class Bad(APIModel):
        """A model with a union the API server cannot represent."""

        spec: int | str | None = Field(None)
        """Either."""

    with pytest.raises(crdgen.SchemaError):
        crdgen.openapi_schema(Bad)

    class Undocumented(APIModel):
        """A model with a field without a docstring."""

        spec: int = 1

    with pytest.raises(crdgen.SchemaError, match="no description"):
        crdgen.openapi_schema(Undocumented)
