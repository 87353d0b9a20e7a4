"""The Helm chart (charts/aim-engine-operator) and manifests/default on the local control
plane: `helm install` with the spec's command line brings up the namespace, CRDs, RBAC,
Deployment, metrics Service and catalog (the pod cannot run here: no container runtime);
`helm upgrade` and `helm uninstall` work (the CRDs stay, as Helm keeps them); `kubectl
apply -k manifests/default` brings up the same objects; both render the same RBAC and
Deployment; `helm lint --strict` is clean; `DRY_RUN=1 make deploy` prints the kind
commands, and the cluster-side ones work on the local API server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, ensure_binaries, monitoring_crds

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aim-engine-operator"
RELEASE = NAMESPACE = "aim-engine-operator"
# The spec's command line, with the chart from this repository instead of its Helm repo.
SPEC_INSTALL = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                "--set", "image.repository=localhost:5000/aim-engine-operator",
                "--set", "image.tag=latest"]
CRDS = ["aimcaches.aim.engine.amd.com", "aimendpoints.aim.engine.amd.com",
        "aimrecipes.aim.engine.amd.com"]
CATALOG = [d for d in yaml.safe_load_all((ROOT / "manifests/catalog/recipes.yaml").read_text())
           if d]
ROLE = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "manifests/rbac/role.yaml").read_text())
        if d}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    """helm and kubectl, for what needs no cluster (render, lint)."""
    return ensure_binaries()


def helm(c: LocalCluster | Path, *args: str, check: bool = True,
         ) -> subprocess.CompletedProcess[str]:
    """helm against the cluster ``c``, or with no cluster when ``c`` is the bin directory."""
    bin_dir = c if isinstance(c, Path) else c.bin_dir
    kubeconfig = [] if isinstance(c, Path) else [f"--kubeconfig={c.kubeconfig}"]
    home = Path(tempfile.gettempdir()) / "aim-test-helm" if isinstance(c, Path) else c.state_dir
    res = subprocess.run([str(bin_dir / "helm"), *kubeconfig, *args],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, HELM_CACHE_HOME=str(home / "helm-cache"),
                                  HELM_CONFIG_HOME=str(home / "helm-config"),
                                  HELM_DATA_HOME=str(home / "helm-data")))
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def get(c: LocalCluster, *what: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(c.kubectl("get", *what, "-o", "json").stdout)
    return out


def absent(c: LocalCluster, *what: str) -> bool:
    res = c.kubectl("get", *what, check=False)
    return res.returncode != 0 and "NotFound" in res.stderr


def render_chart(c: Path, *sets: str) -> list[dict[str, Any]]:
    out = helm(c, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
               *[a for s in sets for a in ("--set", s)]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_kustomize(bin_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run([str(bin_dir / "kubectl"), "kustomize", str(ROOT / "manifests/default")],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in docs}


def assert_operator_objects(c: LocalCluster, image: str) -> None:
    """What an install must leave in the cluster (both ways, the same names)."""
    assert get(c, "namespace", NAMESPACE)["status"]["phase"] == "Active"
    for crd in CRDS:
        conds = {x["type"]: x["status"] for x in get(c, "crd", crd)["status"]["conditions"]}
        assert conds["Established"] == "True", crd
    assert get(c, "clusterrole", RELEASE)["rules"] == ROLE["ClusterRole"]["rules"]
    binding = get(c, "clusterrolebinding", RELEASE)
    assert binding["roleRef"]["name"] == RELEASE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE,
                                    "namespace": NAMESPACE}]
    role = get(c, "role", f"{RELEASE}-leader-election", "-n", NAMESPACE)
    assert role["rules"] == ROLE["Role"]["rules"]
    get(c, "rolebinding", f"{RELEASE}-leader-election", "-n", NAMESPACE)
    get(c, "serviceaccount", RELEASE, "-n", NAMESPACE)
    dep = get(c, "deployment", RELEASE, "-n", NAMESPACE)
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE
    [manager] = pod["containers"]
    assert manager["image"] == image
    assert {"name": "OPERATOR_IMAGE", "value": image} in manager["env"]
    assert f"--operator-namespace={NAMESPACE}" in manager["args"]
    svc = get(c, "service", f"{RELEASE}-metrics", "-n", NAMESPACE)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    recipes = get(c, "aimrecipes", "-n", NAMESPACE)["items"]
    assert sorted(r["metadata"]["name"] for r in recipes) == sorted(
        d["metadata"]["name"] for d in CATALOG)


def test_helm_install_upgrade_uninstall_with_the_spec_command_line(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c = make_cluster(full=False)
    out = helm(c, *SPEC_INSTALL).stdout
    # NOTES.txt: the spec's verify commands.
    assert f"kubectl get pods -n {NAMESPACE}" in out
    assert f"kubectl logs -f deployment/{RELEASE} -n {NAMESPACE}" in out
    assert_operator_objects(c, "localhost:5000/aim-engine-operator:latest")
    [rel] = json.loads(helm(c, "list", "-n", NAMESPACE, "-o", "json").stdout)
    assert (rel["name"], rel["status"], str(rel["revision"])) == (RELEASE, "deployed", "1")

    # Upgrade: values change the Deployment; with the Prometheus Operator's CRDs now
    # served, the ServiceMonitor is rendered (Capabilities read from the cluster).
    c.kubectl("apply", "--server-side", "-f", str(monitoring_crds()))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
              "crd/servicemonitors.monitoring.coreos.com")
    helm(c, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
         "--set", "logLevel=debug", "--set", "image.tag=v2", "--set", "watchNamespaces={a,b}",
         "--set", "metrics.serviceMonitor.enabled=true",
         "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack")
    [manager] = get(c, "deployment", RELEASE, "-n", NAMESPACE)["spec"]["template"]["spec"][
        "containers"]
    assert manager["image"] == "localhost:5000/aim-engine-operator:v2"
    assert {"--log-level=debug", "--namespace=a", "--namespace=b"} <= set(manager["args"])
    assert "--log-level=info" not in manager["args"]
    sm = get(c, "servicemonitor", RELEASE, "-n", NAMESPACE)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    svc = get(c, "service", f"{RELEASE}-metrics", "-n", NAMESPACE)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [rel] = json.loads(helm(c, "list", "-n", NAMESPACE, "-o", "json").stdout)
    assert str(rel["revision"]) == "2" and rel["status"] == "deployed"

    # Uninstall: the release's objects go; the CRDs stay (Helm never deletes crds/).
    helm(c, "uninstall", RELEASE, "--namespace", NAMESPACE)
    for what in (("deployment", RELEASE, "-n", NAMESPACE),
                 ("serviceaccount", RELEASE, "-n", NAMESPACE),
                 ("service", f"{RELEASE}-metrics", "-n", NAMESPACE),
                 ("servicemonitor", RELEASE, "-n", NAMESPACE),
                 ("role", f"{RELEASE}-leader-election", "-n", NAMESPACE),
                 ("clusterrole", RELEASE), ("clusterrolebinding", RELEASE)):
        assert absent(c, *what), what
    assert get(c, "aimrecipes", "-n", NAMESPACE)["items"] == []
    for crd in CRDS:
        get(c, "crd", crd)


def test_kustomize_default_brings_up_the_same_objects(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    c = make_cluster(full=False)
    # The README's three steps: the CRDs, wait until served, then the rest.
    c.kubectl("apply", "--server-side", "-k", str(ROOT / "manifests" / "crd"))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
              "-f", str(ROOT / "manifests" / "crd"))
    c.kubectl("apply", "--server-side", "-k", str(ROOT / "manifests" / "default"))
    assert_operator_objects(c, "aim-controller:dev")
    # manifests/default's namespace enforces the restricted Pod Security level.
    labels = get(c, "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def differences(chart: list[dict[str, Any]], kustomize: list[dict[str, Any]]) -> list[str]:
    """Where the two renderings' RBAC and Deployment differ (labels aside: Helm's)."""
    a, b = by_kind_name(chart), by_kind_name(kustomize)
    out = []
    # The same objects by kind, namespace and name; the Namespace is Helm's to create
    # (--create-namespace), so only manifests/default has one.
    kinds = set(a) ^ (set(b) - {("Namespace", "", NAMESPACE)})
    if kinds:
        out.append(f"objects only on one side: {sorted(kinds)}")
    for key in set(a) & set(b):
        kind = key[0]
        if kind in ("ClusterRole", "Role") and a[key]["rules"] != b[key]["rules"]:
            out.append(f"{key} rules: {a[key]['rules']} != {b[key]['rules']}")
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            for f in ("roleRef", "subjects"):
                if a[key][f] != b[key][f]:
                    out.append(f"{key} {f}: {a[key][f]} != {b[key][f]}")
        if kind == "Service":
            for f in ("ports", "type"):
                if a[key]["spec"].get(f, "ClusterIP") != b[key]["spec"].get(f, "ClusterIP"):
                    out.append(f"{key} {f}: {a[key]['spec'].get(f)} != {b[key]['spec'].get(f)}")
        if kind in ("CustomResourceDefinition", "AIMRecipe") and a[key]["spec"] != b[key]["spec"]:
            out.append(f"{key} spec differs")
        if kind == "Deployment":
            pa, pb = (x[key]["spec"]["template"]["spec"] for x in (a, b))
            if a[key]["spec"]["replicas"] != b[key]["spec"]["replicas"]:
                out.append(f"{key} replicas")
            for f in sorted((set(pa) | set(pb)) - {"containers"}):
                if pa.get(f) != pb.get(f):
                    out.append(f"{key} pod {f}: {pa.get(f)} != {pb.get(f)}")
            [ca], [cb] = pa["containers"], pb["containers"]
            for f in sorted(set(ca) | set(cb)):
                va, vb = ca.get(f), cb.get(f)
                if f == "args":  # the chart writes its value flags first
                    va, vb = sorted(va or []), sorted(vb or [])
                if f in ("env", "ports"):
                    va, vb = (sorted(v or [], key=lambda e: e["name"]) for v in (va, vb))
                if va != vb:
                    out.append(f"{key} container {f}: {va} != {vb}")
    return out


def test_chart_and_kustomize_render_the_same_rbac_and_deployment(bin_dir: Path) -> None:
    c = bin_dir
    kustomize = render_kustomize(c)
    # kustomize's image, so the image is not a difference (the chart's default tag is
    # its appVersion, manifests/default's aim-controller:dev, as make deploy builds it).
    same_image = ("image.repository=aim-controller", "image.tag=dev")
    assert differences(render_chart(c, *same_image), kustomize) == []
    # The comparison sees a difference when there is one.
    found = differences(render_chart(c, *same_image, "logLevel=debug", "replicaCount=1",
                                     "resources.limits.memory=1Gi"), kustomize)
    assert any("container args" in f and "--log-level=debug" in f for f in found), found
    assert any("replicas" in f for f in found) and any("resources" in f for f in found)
    assert differences(render_chart(c, *same_image, "catalog.install=false"), kustomize)


def test_helm_lint_is_clean(bin_dir: Path) -> None:
    for sets in ([], ["watchNamespaces={team-a,team-b}", "leaderElection.enabled=false",
                      "image.digest=sha256:" + "0" * 64, "unschedulableGrace=2m",
                      "gpuMetricsPrometheusUrl=http://prom.monitoring:9090",
                      "extraArgs={--max-concurrent-reconciles=20}", "nodeSelector.role=ops"]):
        res = helm(bin_dir, "lint", "--strict", str(CHART),
                   *[a for s in sets for a in ("--set", s)])
        assert "0 chart(s) failed" in res.stdout, res.stdout
    # values.schema.json: a value the operator would refuse fails the install at once
    # (instead of a crash-looping operator), and so does a misspelt key.
    for bad, says in (("logLevel=verbose", "/logLevel"), ("imageTag=v2", "imageTag")):
        res = helm(bin_dir, "template", RELEASE, str(CHART), "--set", bad, check=False)
        assert res.returncode != 0 and says in res.stderr, res.stderr


def test_the_servicemonitor_needs_the_prometheus_operator_api(bin_dir: Path) -> None:
    c = bin_dir
    on = ("metrics.serviceMonitor.enabled=true",)
    res = helm(c, "template", RELEASE, str(CHART), "--set", on[0], check=False)
    assert res.returncode != 0 and "does not serve monitoring.coreos.com/v1" in res.stderr
    docs = [d for d in yaml.safe_load_all(helm(
        c, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", on[0],
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor").stdout) if d]
    [sm] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not [d for d in render_chart(c) if d["kind"] == "ServiceMonitor"]


def make_deploy(env: dict[str, str], *args: str) -> list[str]:
    res = subprocess.run(["make", "-s", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return [line[2:] for line in res.stdout.splitlines() if line.startswith("+ ")]


def test_make_deploy_dry_run_prints_every_command(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path,
) -> None:
    c = make_cluster(full=False)
    helm_bin = str(c.bin_dir / "helm")
    # kind, docker, kubectl and helm that only record being run: a dry run runs none.
    tools = tmp_path / "tools"
    tools.mkdir()
    ran = tmp_path / "ran"
    for tool in ("kind", "docker", "kubectl", "helm"):
        (tools / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {ran}\n")
        (tools / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ['PATH']}")
    img = "localhost:5000/aim-engine-operator:latest"
    steps = make_deploy(env, "deploy", "DRY_RUN=1", f"IMG={img}", "HELM=helm")
    assert not ran.exists(), ran.read_text()
    chart = "charts/aim-engine-operator"
    assert steps == [
        "kind get clusters",
        "kind create cluster --name aim --config hack/kind-config.yaml --wait 120s",
        f"docker build -t {img} .",
        f"kind load docker-image {img} --name aim",
        f"kubectl --context kind-aim apply --server-side --force-conflicts -f {chart}/crds",
        f"kubectl --context kind-aim wait --for=condition=Established --timeout=60s"
        f" -f {chart}/crds",
        f"helm upgrade --install {RELEASE} {chart} --kube-context kind-aim --namespace {NAMESPACE}"
        " --create-namespace --set image.repository=localhost:5000/aim-engine-operator"
        " --set image.tag=latest --set image.pullPolicy=IfNotPresent",
        f"kubectl --context kind-aim -n {NAMESPACE} rollout status deployment/{RELEASE}"
        " --timeout=180s",
    ]
    kind_config = yaml.safe_load((ROOT / "hack" / "kind-config.yaml").read_text())
    assert (kind_config["apiVersion"], kind_config["kind"]) == ("kind.x-k8s.io/v1alpha4",
                                                                "Cluster")
    assert make_deploy(env, "undeploy", "DRY_RUN=1", "HELM=helm") == [
        f"helm uninstall {RELEASE} --kube-context kind-aim --namespace {NAMESPACE}"
        " --ignore-not-found"]

    # The cluster-side commands, run as printed against the local API server under a
    # context named as kind names it (kind and docker cannot run here; the rollout
    # cannot finish without a container runtime).
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(c.kubeconfig, kubeconfig)
    kenv = dict(os.environ, KUBECONFIG=str(kubeconfig),
                HELM_CACHE_HOME=str(tmp_path / "hc"), HELM_CONFIG_HOME=str(tmp_path / "hf"),
                HELM_DATA_HOME=str(tmp_path / "hd"))
    current = subprocess.run([str(c.bin_dir / "kubectl"), "config", "current-context"],
                             env=kenv, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([str(c.bin_dir / "kubectl"), "config", "rename-context", current, "kind-aim"],
                   env=kenv, check=True, capture_output=True)
    binaries = {"kubectl": str(c.bin_dir / "kubectl"), "helm": helm_bin}
    for step in steps:
        tool, *rest = step.split()
        if tool in binaries and "rollout" not in rest:
            res = subprocess.run([binaries[tool], *rest], cwd=ROOT, env=kenv,
                                 capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, (step, res.stdout + res.stderr)
    assert_operator_objects(c, img)
    # Again: an upgrade (helm upgrade --install of an installed release), then undeploy.
    [upgrade] = [s for s in steps if s.startswith("helm ")]
    subprocess.run([helm_bin, *upgrade.split()[1:]], cwd=ROOT, env=kenv, check=True,
                   capture_output=True, timeout=300)
    [uninstall] = make_deploy(env, "undeploy", "DRY_RUN=1", "HELM=helm")
    subprocess.run([helm_bin, *uninstall.split()[1:]], cwd=ROOT, env=kenv, check=True,
                   capture_output=True, timeout=300)
    assert absent(c, "deployment", RELEASE, "-n", NAMESPACE)
