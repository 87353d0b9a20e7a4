"""Generate the CustomResourceDefinition manifests from the v1alpha1 models.

    python -m aim_controller.api.crdgen manifests/crd          # (re)write the YAML
    python -m aim_controller.api.crdgen --check manifests/crd  # exit 1 + diff if stale

The schema is pydantic's `model_json_schema()` made structural (the form the API server
requires): `$ref`s inlined, `Optional` unwrapped (an absent field, not a null one),
int-or-string quantities rewritten to the one `anyOf` shape Kubernetes allows, every
list given an `x-kubernetes-list-type`, titles dropped. The output is deterministic
(sorted keys) so the committed YAML can be checked for staleness.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aim_controller.api.v1alpha1 import (
    AIM_CACHE,
    AIM_ENDPOINT,
    AIM_RECIPE,
    CATEGORY,
    CONDITION_READY,
    GROUP,
    VERSION,
    AIMCache,
    AIMEndpoint,
    AIMRecipe,
    ResourceNames,
)
from aim_controller.api.v1alpha1.common import APIModel

Schema = dict[str, Any]

CRD_LABELS = {"app.kubernetes.io/name": "aim-controller"}
HEADER = (
    "# Generated from aim_controller/api/v1alpha1 by\n"
    "#   python -m aim_controller.api.crdgen manifests/crd\n"
    "# DO NOT EDIT.\n"
)

_INT_OR_STRING = "x-kubernetes-int-or-string"
_VALIDATIONS = "x-kubernetes-validations"
# Constraints of an int-or-string's branches that move up to the node itself (OpenAPI
# applies each only to values of its own type).
_HOISTED = ("pattern", "minLength", "maxLength", "minimum", "maximum")
_ENVELOPE = ("apiVersion", "kind", "metadata")


class SchemaError(ValueError):
    """The models produced a schema the API server would not accept as structural."""


def _age_column() -> Schema:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class CRDSource:
    """One kind to generate: its names, its top-level model and its CRD extras."""

    names: ResourceNames
    model: type[APIModel]
    printer_columns: tuple[Schema, ...]
    scale: Schema | None = None
    extra_subresources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{GROUP}_{self.names.plural}.yaml"


SOURCES: tuple[CRDSource, ...] = (
    CRDSource(
        names=AIM_ENDPOINT,
        model=AIMEndpoint,
        printer_columns=(
            {"name": "Model", "type": "string", "jsonPath": ".spec.model.id"},
            {"name": "Recipe", "type": "string", "jsonPath": ".status.recipe.recipeName"},
            {"name": "Hardware", "type": "string", "jsonPath": ".status.recipe.hardware",
             "description": "GPU model of the selected recipe"},
            {"name": "GPUs", "type": "integer", "jsonPath": ".status.recipe.gpuCount",
             "description": "GPUs per replica of the selected recipe"},
            {"name": "Ready", "type": "string",
             "jsonPath": f'.status.conditions[?(@.type=="{CONDITION_READY}")].status'},
            {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas",
             "description": "Ready replicas"},
            {"name": "Canary", "type": "string", "jsonPath": ".status.canary.phase"},
            {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
            _age_column(),
        ),
        # `kubectl scale` and an HPA act on spec.replicas, a field the operator only
        # reads, so neither fights the reconciler.
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    ),
    CRDSource(
        names=AIM_RECIPE,
        model=AIMRecipe,
        printer_columns=(
            {"name": "Model", "type": "string", "jsonPath": ".spec.modelId"},
            {"name": "Hardware", "type": "string", "jsonPath": ".spec.hardware"},
            {"name": "Precision", "type": "string", "jsonPath": ".spec.precision"},
            {"name": "Backend", "type": "string", "jsonPath": ".spec.backend"},
            {"name": "Valid", "type": "boolean", "jsonPath": ".status.valid"},
            {"name": "Fits", "type": "string", "jsonPath": ".status.summary"},
            _age_column(),
        ),
    ),
    CRDSource(
        names=AIM_CACHE,
        model=AIMCache,
        printer_columns=(
            {"name": "Size", "type": "string", "jsonPath": ".spec.storage.size"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Models", "type": "string", "jsonPath": ".status.modelsReady",
             "description": "Ready models of the spec / all of them"},
            {"name": "Used", "type": "string", "jsonPath": ".status.used",
             "description": "Space the cached models take"},
            {"name": "Ready", "type": "string",
             "jsonPath": f'.status.conditions[?(@.type=="{CONDITION_READY}")].status'},
            _age_column(),
        ),
    ),
)


def _resolve(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """Inline a `$ref` and unwrap `X | None`, repeatedly, until neither is left at the top.

    Keys next to a `$ref` (the field's description, default, rules) win over the
    referenced model's, except CEL rules, which add up.
    """
    while True:
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node = _merge(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]), rest)
            continue
        branches = node.get("anyOf")
        if branches and {"type": "null"} in branches:
            others = [b for b in branches if b != {"type": "null"}]
            if len(others) != 1:
                raise SchemaError(f"cannot make a union structural: {branches}")
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                del rest["default"]
            node = _merge(copy.deepcopy(others[0]), rest)
            continue
        return node


def _merge(base: Schema, over: Schema) -> Schema:
    out = dict(base)
    for key, value in over.items():
        if key == _VALIDATIONS:
            out[key] = [*base.get(key, []), *value]
        else:
            out[key] = value
    return out


def _structural(node: Schema, defs: Mapping[str, Schema], where: str) -> Schema:
    node = _resolve(node, defs)
    node.pop("title", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "description" in node:
        node["description"] = " ".join(node["description"].split())

    if node.get(_INT_OR_STRING):
        for branch in node.pop("anyOf"):
            branch = _resolve(branch, defs)
            for key in _HOISTED:
                if key in branch:
                    node[key] = branch[key]
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "anyOf" in node or "oneOf" in node or "allOf" in node:
        raise SchemaError(f"{where}: only int-or-string may use anyOf, got {node}")
    elif "type" not in node:
        raise SchemaError(f"{where}: no type")

    if "properties" in node:
        node["properties"] = {
            name: _structural(sub, defs, f"{where}.{name}")
            for name, sub in node["properties"].items()
        }
        for name, sub in node["properties"].items():
            if not sub.get("description"):
                raise SchemaError(f"{where}.{name}: no description (add a field docstring)")
        if "required" in node:
            node["required"] = sorted(node["required"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(
            node["additionalProperties"], defs, f"{where}[*]"
        )
    if node.get("type") == "array":
        node["items"] = _structural(node["items"], defs, f"{where}[]")
        node.setdefault("x-kubernetes-list-type", "atomic")
    return node


def openapi_schema(model: type[APIModel]) -> Schema:
    """The structural openAPIV3Schema of a top-level kind model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs, model.__name__)
    props = schema["properties"]
    props["apiVersion"] = {
        "type": "string",
        "description": (
            "APIVersion defines the versioned schema of this representation of an object."
        ),
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object"
        " represents.",
    }
    props["metadata"] = {"type": "object"}
    schema["required"] = sorted(r for r in schema.get("required", []) if r not in _ENVELOPE)
    return schema


def crd(source: CRDSource) -> Schema:
    """The CustomResourceDefinition object for one kind."""
    names = source.names
    subresources: Schema = {"status": {}, **source.extra_subresources}
    if source.scale is not None:
        subresources["scale"] = dict(source.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.crd_name, "labels": dict(CRD_LABELS)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": names.kind,
                "listKind": names.list_kind,
                "plural": names.plural,
                "singular": names.singular,
                "shortNames": list(names.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(source.model)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [dict(c) for c in source.printer_columns],
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key, like kubectl and controller-gen output."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(obj: Schema) -> str:
    body = yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100,
        allow_unicode=True,
    )
    return f"{HEADER}---\n{body}"


def generate(sources: Sequence[CRDSource] = SOURCES) -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {s.filename: render(crd(s)) for s in sources}


def check(out_dir: Path, generated: Mapping[str, str]) -> list[str]:
    """Unified diffs between the files in `out_dir` and `generated`; empty when up to date."""
    diffs = []
    for name, want in sorted(generated.items()):
        path = out_dir / name
        have = path.read_text() if path.exists() else ""
        if have != want:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        have.splitlines(keepends=True),
                        want.splitlines(keepends=True),
                        fromfile=f"{path} (committed)",
                        tofile=f"{path} (generated)",
                    )
                )
                or f"{path}: differs\n"
            )
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aim_controller.api.crdgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", nargs="?", default="manifests/crd", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 with a diff if stale"
    )
    args = parser.parse_args(argv)
    generated = generate()
    if args.check:
        diffs = check(args.out_dir, generated)
        if diffs:
            sys.stdout.write("".join(diffs))
            sys.stderr.write(
                f"CRD manifests in {args.out_dir} are stale: run "
                f"`python -m aim_controller.api.crdgen {args.out_dir}` (make manifests)\n"
            )
            return 1
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (args.out_dir / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
