"""`make install` and `make deploy-kustomize` (manifests/default; `make deploy` is the
chart on kind, tests/integration/test_chart.py) on a fresh API server: each applies the
CRDs, waits until they are Established and only then applies what uses them (the
catalog's AIMRecipes), and ends with everything it promises in the cluster."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from localcluster import LocalCluster

from aim_controller.api.v1alpha1 import AIM_RECIPE

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CATALOG = [d for d in yaml.safe_load_all((ROOT / "manifests/catalog/recipes.yaml").read_text())
           if d]


def make(target: str, c: LocalCluster) -> list[str]:
    """Runs ``make target`` against ``c`` (install: the local cluster's kubeconfig by
    STATE_DIR; deploy-kustomize: the current context, kubectl on PATH); returns the kubectl steps
    it ran, in order."""
    env = dict(os.environ, KUBECONFIG=str(c.kubeconfig),
               PATH=f"{c.bin_dir}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(["make", "-s", target, f"STATE_DIR={c.state_dir}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return [line[len("+ kubectl "):] for line in res.stdout.splitlines()
            if line.startswith("+ kubectl ")]


def step(steps: list[str], needle: str) -> int:
    return next(i for i, s in enumerate(steps) if needle in s)


@pytest.mark.parametrize(("target", "namespace"), [("install", "aim-system"),
                                                   ("deploy-kustomize", "aim-engine-operator")])
def test_make_target_waits_for_the_crds_before_the_catalog(
    make_cluster: Callable[..., LocalCluster], target: str, namespace: str
) -> None:
    c = make_cluster(full=False)
    steps = make(target, c)
    crds = step(steps, "manifests/crd")
    established = step(steps, "wait --for=condition=Established")
    catalog = step(steps, "manifests/catalog" if target == "install" else "-k ")
    assert crds < established < catalog, steps

    recipes = json.loads(c.kubectl("get", AIM_RECIPE.plural, "-n", namespace,
                                   "-o", "json").stdout)["items"]
    assert sorted(r["metadata"]["name"] for r in recipes) == sorted(
        d["metadata"]["name"] for d in CATALOG)
    if target == "deploy-kustomize":
        # The names the chart gives them (release aim-engine-operator).
        dep = json.loads(c.kubectl("get", "deployment", "aim-engine-operator", "-n", namespace,
                                   "-o", "json").stdout)
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "aim-engine-operator"
        # The AIMCache Jobs run the operator's own image (kustomize copies it).
        manager = dep["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "OPERATOR_IMAGE", "value": manager["image"]} in manager["env"]
        c.kubectl("get", "serviceaccount", "aim-engine-operator", "-n", namespace)
