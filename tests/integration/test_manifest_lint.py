"""The manifests users install and the objects the operator creates pass schema
validation (kubeconform, strict) and a Kubernetes policy linter (checkov) with zero
findings; every check checkov skips has its reason written (.checkov.yaml, or an
inline checkov.io/skip annotation on the one object it concerns).

Linted: ``kubectl kustomize`` of manifests/ and manifests/default, the chart rendered
as the spec installs it (CRDs and the operator's ServiceMonitor included), and the
children the builders produce for every AIMEndpoint and AIMCache example of the spec.

kubeconform's schemas come from the OpenAPI v3 of a local kube-apiserver serving our
CRDs and the Prometheus Operator's (hack/kubeconform_schemas.py): GitHub, where
kubeconform looks by default, is out of reach. Both linters are pinned and built or
installed by hack/install-linters.sh (cached by version). ``make lint-manifests``
runs this module alone.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, monitoring_crds  # type: ignore[import-not-found]

from aim_controller.api.v1alpha1 import AIMCache
from aim_controller.builders import desired_children
from aim_controller.builders.cache_objects import (
    CacheJobSettings,
    build_cache_volume_claim,
    build_cleanup_cronjob,
    build_download_job,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))  # the builders' example helpers
from kubeconform_schemas import schema_location, write_schemas  # noqa: E402
from test_builders_support import (  # noqa: E402
    NAMESPACE,
    SETTINGS,
    SPEC_EXAMPLES,
    UID,
    chosen,
    spec_example_endpoints,
)

pytestmark = pytest.mark.cluster

CHART = ROOT / "charts" / "aim-engine-operator"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
# The spec's example that runs as root (security.podSecurityContext.runAsUser: 0): the
# operator applies it as asked, with a PodSecurityNotRestricted Warning Event.
ROOT_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_23=the spec's example asks for root (runAsUser 0); the"
                        " operator runs it as asked and warns (PodSecurityNotRestricted)",
    "checkov.io/skip2": "CKV_K8S_40=the same example's uid 0, as asked",
}


@pytest.fixture(scope="module")
def linters() -> dict[str, str]:
    res = subprocess.run(["bash", str(ROOT / "hack" / "install-linters.sh")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return dict(line.split("=", 1) for line in res.stdout.split())


@pytest.fixture(scope="module")
def schemas(api_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """kubeconform's -schema-location, written from the API server's OpenAPI with our
    CRDs and the monitoring CRDs served."""
    c = api_cluster
    c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f",
              str(ROOT / "manifests" / "crd"), "-f", str(monitoring_crds()))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def get_raw(path: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(c.kubectl("get", "--raw", path).stdout)
        return doc

    # A CRD's OpenAPI is published a moment after it is Established.
    served = ("apis/aim.engine.amd.com/v1alpha1", "apis/monitoring.coreos.com/v1")
    deadline = time.monotonic() + 60
    while not all(p in get_raw("/openapi/v3")["paths"] for p in served):
        assert time.monotonic() < deadline, "the CRDs' OpenAPI was never published"
        time.sleep(0.5)
    out = tmp_path_factory.mktemp("kubeconform-schemas")
    names = write_schemas(get_raw, out)
    for want in ("aimendpoint-aim-v1alpha1.json", "servicemonitor-monitoring-v1.json",
                 "deployment-apps-v1.json"):
        assert want in names, (want, len(names))
    return schema_location(out)


def kubeconform(linters: dict[str, str], location: str, text: str) -> None:
    res = subprocess.run(
        [linters["kubeconform"], "-strict", "-summary", "-output", "json",
         "-schema-location", location, "-"],
        input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    report = json.loads(res.stdout)
    bad = [r for r in report.get("resources") or () if r.get("status") != "statusValid"]
    summary = report["summary"]
    assert res.returncode == 0 and not bad, json.dumps(bad, indent=1)[:6000]
    assert summary["valid"] > 0 and summary["skipped"] == 0, summary


def checkov(linters: dict[str, str], files: dict[str, str], tmp: Path) -> None:
    """Zero failed checks and zero parsing errors over ``files`` (name -> YAML)."""
    d = tmp / "checkov"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    res = subprocess.run(
        [linters["checkov"], "--framework", "kubernetes", "--config-file", str(CHECKOV_CONFIG),
         "-d", str(d), "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True)
    reports = json.loads(res.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})"
              for r in reports for f in (r.get("results") or {}).get("failed_checks") or ()]
    assert failed == [], "\n".join(failed)
    summary = [r["summary"] for r in reports]
    assert all(s["parsing_errors"] == 0 for s in summary), (summary, res.stderr[-3000:])
    assert sum(s["passed"] for s in summary) > 0, summary


def kubectl_kustomize(c: LocalCluster, path: Path) -> str:
    return str(c.kubectl("kustomize", str(path)).stdout)


def rendered_chart(c: LocalCluster) -> str:
    """The chart as the spec installs it, CRDs and the operator's ServiceMonitor
    included (helm template needs the API version said, having no cluster to ask)."""
    helm = c.bin_dir / "helm"
    res = subprocess.run(
        [str(helm), "template", "aim-engine-operator", str(CHART),
         "--namespace", "aim-engine-operator", "--include-crds",
         "--set", "metrics.serviceMonitor.enabled=true",
         "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
        check=True, stdout=subprocess.PIPE, text=True)
    return res.stdout


def _is_root_example(obj: dict[str, Any]) -> bool:
    psc = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "securityContext") or {}
    return psc.get("runAsUser") == 0


def endpoint_children() -> Iterator[dict[str, Any]]:
    """Every child of every AIMEndpoint example (monitoring on), the root example's
    Deployment with its written checkov exceptions."""
    for _, ep in spec_example_endpoints():
        for obj in desired_children(ep, chosen(), SETTINGS, monitoring_available=True):
            if obj["kind"] == "Deployment" and _is_root_example(obj):
                obj = copy.deepcopy(obj)
                obj["metadata"].setdefault("annotations", {}).update(ROOT_SKIPS)
            yield obj


def cache_children() -> Iterator[dict[str, Any]]:
    """The PVC, a download Job per model and the cleanup CronJob of every AIMCache
    example."""
    settings = CacheJobSettings(image="registry.example/aim-controller:1.2.3")
    for path in sorted(SPEC_EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "AIMCache":
                continue
            doc["metadata"] |= {"namespace": NAMESPACE, "uid": UID}
            cache = AIMCache.model_validate(doc)
            yield build_cache_volume_claim(cache)
            for model in cache.spec.models:
                yield build_download_job(cache, model, settings, 10 * 2**30)
            if cache.spec.cleanup.enabled and cache.spec.cleanup.schedule:
                yield build_cleanup_cronjob(cache, settings, "{}", 500 * 2**30)


def sources(c: LocalCluster) -> dict[str, str]:
    out = {"kustomize-manifests.yaml": kubectl_kustomize(c, ROOT / "manifests")}
    if (ROOT / "manifests" / "default").is_dir():
        out["kustomize-default.yaml"] = kubectl_kustomize(c, ROOT / "manifests" / "default")
    if CHART.is_dir():
        out["chart.yaml"] = rendered_chart(c)
    children = list(endpoint_children())
    assert {o["kind"] for o in children} >= {
        "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ServiceAccount",
        "PersistentVolumeClaim"}
    out["endpoint-children.yaml"] = yaml.safe_dump_all(children)
    caches = list(cache_children())
    assert {o["kind"] for o in caches} == {"PersistentVolumeClaim", "Job", "CronJob"}
    out["cache-children.yaml"] = yaml.safe_dump_all(caches)
    return out


def test_the_chart_is_there_to_lint() -> None:
    # The chart is linted below with everything else; this says so if it goes missing.
    assert (CHART / "Chart.yaml").is_file()


def test_every_manifest_passes_kubeconform_and_checkov(
    api_cluster: LocalCluster, linters: dict[str, str], schemas: str, tmp_path: Path
) -> None:
    files = sources(api_cluster)
    for name, text in files.items():
        kubeconform(linters, schemas, text)
        assert name  # each source validated on its own, so a failure names it
    checkov(linters, files, tmp_path)


def test_the_linters_do_find_problems(
    api_cluster: LocalCluster, linters: dict[str, str], schemas: str, tmp_path: Path
) -> None:
    """The gate has teeth: an unknown field, a wrong type and a privileged container."""
    bad = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "replicas": "two",
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                     {"name": "c", "image": "i:1", "unknownField": 1,
                      "securityContext": {"privileged": True}}]}}}})
    with pytest.raises(AssertionError, match="unknownField"):
        kubeconform(linters, schemas, bad)
    with pytest.raises(AssertionError, match="CKV_K8S_16"):  # privileged container
        checkov(linters, {"bad.yaml": bad}, tmp_path)
