"""Writes kubeconform's JSON schemas from a kube-apiserver's OpenAPI v3 (``/openapi/v3``).

kubeconform fetches its schemas from GitHub by default, which our machines cannot
reach; the API server the tests start serves the same types (and our CRDs, and the
monitoring CRDs when they are installed), so the schemas come from there instead.

One file per kind, named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json``
template names it (``deployment-apps-v1.json``, ``configmap-v1.json``,
``aimendpoint-aim-v1alpha1.json``): run kubeconform with
``-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`` (see
:func:`schema_location`). Each file is standalone: the definitions it refers to are
copied into it. Strict, like the ``-strict`` schemas upstream: an object schema with
properties and no ``additionalProperties`` (and no
``x-kubernetes-preserve-unknown-fields``) refuses unknown fields.

Usage: ``kubeconform_schemas.py --kubectl '<kubectl> --kubeconfig <file>' --out <dir>``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REF_PREFIX = "#/components/schemas/"
LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"


def schema_location(out: Path) -> str:
    """kubeconform's ``-schema-location`` for the schemas written to ``out``."""
    return f"{out}/{LOCATION}"


def kind_file(group: str, version: str, kind: str) -> str:
    """The file name kubeconform's template gives (group, version, kind)."""
    api_version = f"{group}/{version}" if group else version
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower()
    if len(parts) > 1:
        suffix += "-" + parts[1].lower()
    return f"{kind.lower()}{suffix}.json"


def _walk_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            yield ref[len(REF_PREFIX):]
        for v in node.values():
            yield from _walk_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_refs(v)


def _closure(name: str, schemas: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    todo = [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in schemas:
            continue
        seen.append(n)
        todo.extend(_walk_refs(schemas[n]))
    return sorted(seen)


def _convert(node: Any) -> Any:
    """OpenAPI v3 -> JSON Schema: refs into ``definitions``, ``nullable`` as a type, and
    strict objects."""
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        out["$ref"] = "#/definitions/" + ref[len(REF_PREFIX):]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def schemas_of(doc: dict[str, Any], group: str, version: str) -> dict[str, dict[str, Any]]:
    """(file name -> standalone schema) of the kinds of one group-version document."""
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    out: dict[str, dict[str, Any]] = {}
    for name, schema in schemas.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            if (gvk.get("group", ""), gvk.get("version")) != (group, version):
                continue
            if not name.endswith("." + gvk["kind"]):
                continue  # e.g. DeleteOptions, registered in every group
            body = _convert(schema)
            body["definitions"] = {n: _convert(schemas[n]) for n in _closure(name, schemas)
                                   if n != name}
            out[kind_file(group, version, gvk["kind"])] = body
    return out


def write_schemas(get_raw: Callable[[str], dict[str, Any]], out: Path) -> list[str]:
    """Every kind the API server serves, written into ``out``; returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for path in sorted(get_raw("/openapi/v3").get("paths", {})):
        parts = path.strip("/").split("/")
        if parts[:1] == ["api"] and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[:1] == ["apis"] and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            continue
        for fname, schema in schemas_of(get_raw(f"/openapi/v3/{path.strip('/')}"),
                                        group, version).items():
            (out / fname).write_text(json.dumps(schema, sort_keys=True))
            written.append(fname)
    return sorted(written)


def kubectl_raw(kubectl: list[str]) -> Callable[[str], dict[str, Any]]:
    def get(path: str) -> dict[str, Any]:
        res = subprocess.run([*kubectl, "get", "--raw", path], check=True,
                             stdout=subprocess.PIPE, text=True)
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc
    return get


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubectl", required=True,
                    help="the kubectl command line, e.g. 'kubectl --kubeconfig k.yaml'")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    names = write_schemas(kubectl_raw(shlex.split(args.kubectl)), args.out)
    print(f"{len(names)} schemas in {args.out}; kubeconform -schema-location "
          f"'{schema_location(args.out)}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
