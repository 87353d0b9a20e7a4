"""The AIMEndpoint reconciler end to end on the real control plane: kube-apiserver,
etcd, kube-controller-manager (Deployments -> ReplicaSets -> Pods, garbage
collection), kube-scheduler and kwok GPU nodes (pods become Running and Ready).

The operator runs in-process through the same ``build_app`` as the CLI."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import LocalCluster, inventory_nodes  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    ReconcileLog,
    apply,
    cond_is,
    condition,
    endpoint,
    ep,
    get_json,
    recipe,
    running_operator,
    settled,
    wait_ready,
)
from support import eventually
from support.kube import RequestLog

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

SPEC_EXAMPLES = Path(__file__).parent / "spec_examples"


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, "--max-concurrent-reconciles", "4") as app:
        yield app


@pytest.fixture(scope="module")
def request_log(operator: App) -> RequestLog:
    return RequestLog(operator.api_client)


@pytest.fixture(scope="module")
def reconcile_log(operator: App) -> ReconcileLog:
    return ReconcileLog(operator)


def events(cluster: LocalCluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = get_json(cluster, "-n", ns, "events",
                   f"--field-selector=involvedObject.name={name}")
    return list((out or {}).get("items") or [])


# --- the main path -------------------------------------------------------------


async def test_endpoint_becomes_ready_with_owned_children_and_explained_choice(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("demo", service={"type": "NodePort"}), namespace)
    obj = await wait_ready(crds, namespace, "demo")
    # kubectl wait works on our conditions.
    crds.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=30s",
                 "aimendpoint/demo")

    st = obj["status"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    rec = st["recipe"]
    assert rec["recipeName"] and rec["hardware"] and rec["gpuCount"] >= 1
    assert rec["reason"] in ("Selected", "Estimated")
    assert rec["candidates"][0]["verdict"] == "Selected"
    assert "args" not in rec
    assert st["url"] == f"http://demo.{namespace}.svc.cluster.local:8000"
    assert st["selector"] and st["readyReplicas"] == 1
    for t in ("RecipeSelected", "ResourcesReady", "Available"):
        assert condition(obj, t)["status"] == "True", t  # type: ignore[index]
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]

    uid = obj["metadata"]["uid"]
    for kind, name in [("deployment", "demo"), ("service", "demo"),
                       ("configmap", "demo-config")]:
        child = get_json(crds, "-n", namespace, kind, name, "--show-managed-fields")
        assert child is not None, (kind, name)
        refs = child["metadata"]["ownerReferences"]
        assert [(r["uid"], r.get("controller")) for r in refs] == [(uid, True)]
        managers = {m["manager"] for m in child["metadata"].get("managedFields") or ()}
        assert "aim-controller" in managers
    svc = get_json(crds, "-n", namespace, "service", "demo")
    assert svc["spec"]["type"] == "NodePort"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
    dep = get_json(crds, "-n", namespace, "deployment", "demo")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["amd.com/gpu"] == str(rec["gpuCount"])
    # The pod really landed on a GPU node of the chosen hardware.
    pods = get_json(crds, "-n", namespace, "pods", "-l", "app.kubernetes.io/instance=demo")
    node = get_json(crds, "node", pods["items"][0]["spec"]["nodeName"])
    assert int(node["status"]["allocatable"]["amd.com/gpu"]) >= rec["gpuCount"]

    # Events are sent in the background: the selection's may come after Ready.
    await eventually(lambda: rec["reason"] in {e["reason"] for e in events(
        crds, namespace, "demo")}, 30, what=f"the {rec['reason']} Event", blocking=True)


async def test_converged_endpoint_costs_no_writes(
    crds: LocalCluster, namespace: str, operator: App, request_log: RequestLog,
    reconcile_log: ReconcileLog,
) -> None:
    key = f"{namespace}/quiet"
    apply(crds, endpoint("quiet"), namespace)
    await wait_ready(crds, namespace, "quiet")
    await settled(operator, crds, namespace)
    writes = list(request_log.writes(namespace))
    assert writes, "the endpoint was written at least once"
    # Getting there applied each child once: nothing the operator wrote differed from
    # what it read back (e.g. the selection record in the ConfigMap vs the status).
    child_writes = [u.split("?")[0] for m, u in writes
                    if m == "PATCH" and not u.split("?")[0].endswith("/status")
                    and "/aimendpoints/" not in u]
    assert child_writes and len(child_writes) == len(set(child_writes)), child_writes
    # Reconcile it again, several times: nothing is written.
    for _ in range(3):
        assert await reconcile_log.reconcile(key) == "success"
    await settled(operator, crds, namespace)
    assert request_log.writes(namespace) == writes


async def test_drift_is_repaired_and_foreign_fields_survive(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("drift"), namespace)
    await wait_ready(crds, namespace, "drift")
    dep = get_json(crds, "-n", namespace, "deployment", "drift")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    # Another manager changes a field we own, and adds one we do not.
    patch = {"metadata": {"annotations": {"team.example.com/owner": "ml-platform"}},
             "spec": {"template": {"spec": {"containers": [
                 {"name": dep["spec"]["template"]["spec"]["containers"][0]["name"],
                  "image": "busybox:evil"}]}}}}
    crds.kubectl("patch", "-n", namespace, "deployment", "drift", "--type=strategic",
                 "--field-manager=someone-else", "-p", json.dumps(patch))
    crds.kubectl("label", "-n", namespace, "service", "drift", "extra=kept")

    def repaired() -> Any:
        d = get_json(crds, "-n", namespace, "deployment", "drift")
        c = d["spec"]["template"]["spec"]["containers"][0]
        return d if c["image"] == image else None

    d = await eventually(repaired, 30, what="image restored", blocking=True)
    assert d["metadata"]["annotations"]["team.example.com/owner"] == "ml-platform"
    await settled(operator, crds, namespace)  # it has seen the label and reconciled since
    svc = get_json(crds, "-n", namespace, "service", "drift")
    assert svc["metadata"]["labels"]["extra"] == "kept"
    # A deleted child comes back.
    crds.kubectl("delete", "-n", namespace, "configmap", "drift-config")
    await eventually(lambda: get_json(crds, "-n", namespace, "configmap", "drift-config"), 30,
                     what="configmap recreated", blocking=True)


async def test_children_no_longer_desired_are_deleted_and_foreign_objects_untouched(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    spec = {"scaling": {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilization": 70},
            "security": {"serviceAccount": {"create": True}}}
    apply(crds, endpoint("prune", **spec), namespace)
    # Not ours: same labels, no ownerReference.
    crds.kubectl("create", "configmap", "-n", namespace, "prune-notes", "--from-literal=a=b")
    crds.kubectl("label", "-n", namespace, "configmap", "prune-notes",
                 "app.kubernetes.io/managed-by=aim-controller",
                 "app.kubernetes.io/instance=prune")
    await wait_ready(crds, namespace, "prune")
    hpa = get_json(crds, "-n", namespace, "hpa", "prune")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "AIMEndpoint"
    assert hpa["spec"]["maxReplicas"] == 3
    assert get_json(crds, "-n", namespace, "serviceaccount", "prune") is not None

    spec = {"scaling": {"minReplicas": 1, "maxReplicas": 1},
            "security": {"serviceAccount": {"create": False}}}
    apply(crds, endpoint("prune", **spec), namespace)
    await eventually(lambda: get_json(crds, "-n", namespace, "hpa", "prune") is None, 30,
                     what="HPA deleted", blocking=True)
    await eventually(lambda: get_json(crds, "-n", namespace, "serviceaccount", "prune") is None,
                     30, what="ServiceAccount deleted", blocking=True)
    await settled(operator, crds, namespace)
    assert get_json(crds, "-n", namespace, "configmap", "prune-notes") is not None
    await wait_ready(crds, namespace, "prune")


async def test_scale_subresource_drives_the_deployment(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("scaled", scaling={"minReplicas": 1, "maxReplicas": 4}), namespace)
    await wait_ready(crds, namespace, "scaled")
    crds.kubectl("scale", "-n", namespace, "aimendpoint/scaled", "--replicas=2")

    def two() -> Any:
        obj = ep(crds, namespace, "scaled")
        return obj if (obj.get("status") or {}).get("readyReplicas") == 2 else None

    await eventually(two, 90, what="2 ready replicas", blocking=True)
    dep = get_json(crds, "-n", namespace, "deployment", "scaled")
    assert dep["spec"]["replicas"] == 2
    scale = json.loads(crds.kubectl(
        "get", "--raw",
        f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/aimendpoints/scaled/scale").stdout)
    assert scale["status"]["replicas"] == 2 and scale["status"]["selector"]


async def test_recipe_change_rolls_the_pods(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    model = f"acme/roll-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("roll", model, "MI300X", 1), namespace)
    apply(crds, endpoint("roll", model), namespace)
    obj = await wait_ready(crds, namespace, "roll")
    assert obj["status"]["recipe"]["recipeNamespace"] == namespace
    dep = get_json(crds, "-n", namespace, "deployment", "roll")
    before = dep["spec"]["template"]["metadata"]["annotations"]
    gen = dep["metadata"]["generation"]

    apply(crds, recipe("roll", model, "MI300X", 1, "--enable-chunked-prefill"), namespace)

    def rolled() -> Any:
        d = get_json(crds, "-n", namespace, "deployment", "roll")
        return d if d["metadata"]["generation"] > gen else None

    d = await eventually(rolled, 30, what="new pod template", blocking=True)
    assert d["spec"]["template"]["metadata"]["annotations"] != before
    assert "--enable-chunked-prefill" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    await wait_ready(crds, namespace, "roll")


MI308X = {"deviceId": "74a2", "productName": "AMD_Instinct_MI308X_OAM", "family": "AI",
          "vram": "192G", "cuCount": "80"}
PRIVATE_TAINT = "amd.com/aim-test-private"


MI350X = {"deviceId": "75a0", "productName": "AMD_Instinct_MI350X_OAM", "family": "AI",
          "vram": "288G", "cuCount": "256"}


def private_nodes(crds: LocalCluster, namespace: str, short: str,
                  gpu: dict[str, str]) -> Iterator[list[str]]:
    inv = {"nodeGroups": [{"name": short, "prefix": f"{namespace}-{short}", "count": 2,
                           "gpus": 4, "gpu": gpu,
                           "taints": [{"key": PRIVATE_TAINT, "value": namespace,
                                       "effect": "NoSchedule"}]}]}
    nodes = list(inventory_nodes(inv))
    crds.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f", "-",
                 input=yaml.safe_dump_all(nodes))
    names = [n["metadata"]["name"] for n in nodes]
    yield names
    crds.kubectl("delete", "node", *names, "--wait=false", check=False)


@pytest.fixture
def private_mi308x(crds: LocalCluster, namespace: str) -> Iterator[list[str]]:
    """Two 4-GPU nodes of a GPU model no other test uses, so capacity numbers are exact."""
    yield from private_nodes(crds, namespace, "mi308x", MI308X)


@pytest.fixture
def private_mi350x(crds: LocalCluster, namespace: str) -> Iterator[list[str]]:
    """Like ``private_mi308x``, another model (a test's nodes outlive it a little)."""
    yield from private_nodes(crds, namespace, "mi350x", MI350X)


async def test_gpu_exhaustion_picks_smaller_configs_or_reports_then_recovers(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog,
    private_mi308x: list[str],
) -> None:
    model = f"acme/exhaust-{uuid.uuid4().hex[:6]}"
    small_model = f"acme/small-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("exhaust", model, "MI308X", 4), namespace)
    flexible = recipe("flexible", small_model, "MI308X", 4)
    flexible["spec"]["configurations"] += recipe("x", small_model, "MI308X", 1)["spec"][
        "configurations"]
    apply(crds, flexible, namespace)
    # Take 3 of the 4 GPUs on both private nodes.
    blocker = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "blocker"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "blocker"}},
                 "template": {"metadata": {"labels": {"app": "blocker"}}, "spec": {
                     "nodeSelector": {"amd.com/gpu.device-id": "74a2"},
                     "tolerations": [{"key": PRIVATE_TAINT, "operator": "Exists"}],
                     "topologySpreadConstraints": [{
                         "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": "blocker"}}}],
                     "containers": [{"name": "c", "image": "busybox", "resources": {
                         "limits": {"amd.com/gpu": "3"}}}]}}},
    }
    apply(crds, blocker, namespace)
    await eventually(lambda: (get_json(crds, "-n", namespace, "deployment", "blocker")
                              or {}).get("status", {}).get("readyReplicas") == 2, 60,
                     what="blocker running", blocking=True)

    # An endpoint with a smaller configuration takes it.
    apply(crds, endpoint("modest", small_model), namespace)
    obj = await wait_ready(crds, namespace, "modest")
    assert obj["status"]["recipe"]["gpuCount"] == 1
    verdicts = {(c["gpuCount"], c["reason"]) for c in obj["status"]["recipe"]["candidates"]}
    assert (4, "InsufficientFreeGPUs") in verdicts

    # One that has none says so, with the numbers.
    apply(crds, endpoint("hungry", model), namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "hungry", "RecipeSelected", "False",
                                           "NoFeasibleCandidate"), 30, what="no feasible",
                           blocking=True)
    assert condition(obj, "Degraded")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    cand = obj["status"]["recipe"]["candidates"][0]
    assert cand["reason"] == "InsufficientFreeGPUs" and "free" in cand["message"], cand
    assert get_json(crds, "-n", namespace, "deployment", "hungry") is None
    await eventually(lambda: any(e["type"] == "Warning" and e["reason"] == "NoFeasibleCandidate"
                                 for e in events(crds, namespace, "hungry")), 10,
                     what="warning event", blocking=True)
    # No hot loop: once the operator has settled, its last reconcile asked for no retry
    # (no error backoff, no requeue), so only a change brings the endpoint back.
    await settled(operator, crds, namespace)
    key = f"{namespace}/hungry"
    assert reconcile_log.outcomes(key)[-1] == "success", reconcile_log.outcomes(key)
    assert operator.controllers[0].queue.num_requeues(key) == 0

    # Capacity frees up: the waiting endpoint is re-evaluated without any spec change.
    crds.kubectl("delete", "-n", namespace, "deployment", "blocker")
    obj = await wait_ready(crds, namespace, "hungry", within=120)
    assert obj["status"]["recipe"]["gpuCount"] == 4
    # The running one was not disturbed.
    assert ep(crds, namespace, "modest")["status"]["recipe"]["gpuCount"] == 1


async def test_reselection_counts_the_endpoints_own_gpus_as_free(
    crds: LocalCluster, namespace: str, operator: App, private_mi350x: list[str],
) -> None:
    """Its own running pods are not competition: an endpoint filling every GPU of its
    pool that is re-selected (its selection inputs changed) keeps its recipe."""
    model = f"acme/own-{uuid.uuid4().hex[:6]}"
    apply(crds, recipe("own", model, "MI350X", 4), namespace)
    apply(crds, endpoint("full", model, replicas=2,
                         scaling={"minReplicas": 2, "maxReplicas": 2}), namespace)
    obj = await eventually(lambda: (o := cond_is(crds, namespace, "full", "Ready", "True"))
                           and o["status"].get("readyReplicas") == 2 and o, 90,
                           what="both replicas ready", blocking=True)
    assert obj["status"]["recipe"]["gpuCount"] == 4
    # Both private nodes are now full, with the endpoint's own pods.
    crds.kubectl("patch", "-n", namespace, f"aimendpoints.{GROUP}/full", "--type=merge",
                 "-p", json.dumps({"spec": {"recipe": {"optimizeFor": "latency"}}}))

    def reselected() -> Any:
        o = ep(crds, namespace, "full")
        rec = (o or {}).get("status", {}).get("recipe") or {}
        return o if rec.get("optimizeFor") == "latency" else None

    obj = await eventually(reselected, 30, what="re-selection for latency", blocking=True)
    assert obj["status"]["recipe"].get("recipeName") == "own", obj["status"]["recipe"]
    assert condition(obj, "RecipeSelected")["status"] == "True"  # type: ignore[index]
    await wait_ready(crds, namespace, "full")

async def test_model_without_recipe_or_size_is_a_condition_not_a_crash(
    crds: LocalCluster, namespace: str, operator: App, reconcile_log: ReconcileLog
) -> None:
    apply(crds, endpoint("nosuch", "acme/mystery-model"), namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "nosuch", "RecipeSelected", "False",
                                           "NoRecipe"), 30, what="NoRecipe", blocking=True)
    assert "acme/mystery-model" in condition(obj, "RecipeSelected")["message"]  # type: ignore[index]
    # No backoff loop: once the operator has settled, its last reconcile asked for no
    # retry. (Capacity changes made by other tests may re-evaluate it: cheap, no writes.)
    await settled(operator, crds, namespace)
    key = f"{namespace}/nosuch"
    assert reconcile_log.outcomes(key)[-1] == "success", reconcile_log.outcomes(key)
    assert operator.controllers[0].queue.num_requeues(key) == 0


async def test_deleting_an_endpoint_while_pods_start_leaves_nothing_behind(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("gone", cache={"enabled": True, "size": "10Gi",
                                        "retainOnDelete": False},
                         scaling={"minReplicas": 1, "maxReplicas": 2},
                         security={"serviceAccount": {"create": True}}), namespace)
    await eventually(lambda: get_json(crds, "-n", namespace, "deployment", "gone"), 60,
                     what="deployment", blocking=True)
    crds.kubectl("delete", "-n", namespace, "aimendpoint", "gone", "--wait=true",
                 "--timeout=60s")
    selector = "app.kubernetes.io/instance=gone"

    def nothing_left() -> bool:
        out = get_json(crds, "-n", namespace,
                       "deployments,replicasets,pods,services,configmaps,serviceaccounts,pvc,hpa",
                       "-l", selector)
        return out is not None and not out["items"]

    await eventually(nothing_left, 90, what="every child collected", blocking=True)


async def test_cache_pvc_is_retained_by_default_and_readopted(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("keep", cache={"enabled": True, "size": "10Gi"}), namespace)
    pvc = await eventually(lambda: get_json(crds, "-n", namespace, "pvc", "keep-cache"), 60,
                           what="pvc", blocking=True)
    assert not pvc["metadata"].get("ownerReferences")
    crds.kubectl("delete", "-n", namespace, "aimendpoint", "keep", "--wait=true",
                 "--timeout=60s")
    await eventually(lambda: get_json(crds, "-n", namespace, "deployment", "keep") is None, 60,
                     what="deployment collected", blocking=True)
    again = get_json(crds, "-n", namespace, "pvc", "keep-cache")
    assert again is not None and again["metadata"]["uid"] == pvc["metadata"]["uid"]
    # A new endpoint of the same name mounts the same claim.
    apply(crds, endpoint("keep", cache={"enabled": True, "size": "10Gi"}), namespace)
    dep = await eventually(lambda: get_json(crds, "-n", namespace, "deployment", "keep"), 60,
                           what="deployment again", blocking=True)
    claims = [v["persistentVolumeClaim"]["claimName"]
              for v in dep["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["keep-cache"]
    assert get_json(crds, "-n", namespace, "pvc", "keep-cache")["metadata"]["uid"] \
        == pvc["metadata"]["uid"]


async def test_quota_and_invalid_recipes_are_explained(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    crds.kubectl("create", "quota", "-n", namespace, "gpus", "--hard=requests.amd.com/gpu=0")
    # A choice made before the quota is seen is sticky (its pods would hold the
    # GPUs): apply the endpoint once the operator's cache has the quota.
    await eventually(lambda: any(inf.resource.plural == "resourcequotas"
                                 and inf.store.get(f"{namespace}/gpus") is not None
                                 for inf in operator.manager.informers.informers()),
                     10, interval=0.1, what="quota cached")
    apply(crds, endpoint("capped"), namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "capped", "RecipeSelected", "False",
                                           "NoFeasibleCandidate"), 30, what="quota", blocking=True)
    assert "QuotaExceeded" in condition(obj, "RecipeSelected")["message"]  # type: ignore[index]
    # A recipe whose args contradict its GPU count.
    model = f"acme/bad-{uuid.uuid4().hex[:6]}"
    bad = recipe("bad", model, "MI300X", 2)
    bad["spec"]["configurations"][0]["args"][3] = "4"  # --tensor-parallel-size 4 on 2 GPUs
    apply(crds, bad, namespace)
    apply(crds, endpoint("confused", model), namespace)
    obj = await eventually(lambda: cond_is(crds, namespace, "confused", "RecipeSelected",
                                           "False"), 30, what="invalid recipe", blocking=True)
    cands = obj["status"]["recipe"]["candidates"]
    assert [c["reason"] for c in cands] == ["InvalidRecipe"], cands


async def test_metrics_endpoint_serves_controller_and_client_metrics(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    apply(crds, endpoint("demo"), namespace)
    await wait_ready(crds, namespace, "demo")
    port = operator.manager.serving.metrics_port

    def scrape() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) \
            .read().decode()

    def ready_lines(text: str) -> list[str]:
        return [line for line in text.splitlines()
                if line.startswith('aim_endpoint_condition{aimendpoint="demo",condition="Ready"')]

    # The condition metric is computed from the operator's cache at scrape time: the
    # Ready status kubectl saw stored reaches the cache with the next watch event.
    def scraped_ready() -> str | None:
        text = scrape()
        return text if any('status="true"} 1.0' in line for line in ready_lines(text)) else None

    text = await eventually(scraped_ready, within=30,
                            what="Ready=true in aim_endpoint_condition", blocking=True)
    for name in ("workqueue_depth{", "workqueue_adds_total{", "workqueue_retries_total{",
                 "workqueue_queue_duration_seconds_bucket{",
                 "workqueue_work_duration_seconds_bucket{",
                 "workqueue_unfinished_work_seconds{",
                 "workqueue_longest_running_processor_seconds{",
                 'controller_runtime_reconcile_total{controller="aimendpoint",result="success"}',
                 "controller_runtime_reconcile_time_seconds_bucket{",
                 'controller_runtime_max_concurrent_reconciles{controller="aimendpoint"} 4.0',
                 "controller_runtime_active_workers{",
                 'rest_client_requests_total{code="200"',
                 "rest_client_request_duration_seconds_bucket{",
                 'aim_endpoint_condition{aimendpoint="demo",condition="Ready",',
                 "aim_endpoint_info{"):
        assert name in text, name
    ready = ready_lines(text)
    assert any('status="true"} 1.0' in line for line in ready), ready
    assert all(line.endswith(" 0.0") for line in ready if 'status="true"' not in line), ready


def example_docs(*files: str) -> list[dict[str, Any]]:
    docs = []
    for f in files:
        for doc in yaml.safe_load_all((SPEC_EXAMPLES / f).read_text()):
            if doc:
                doc["metadata"].pop("namespace", None)
                docs.append(doc)
    return docs


async def test_spec_example_basic_demo_is_ready_on_mi300x_with_the_builtin_recipe(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    for doc in example_docs("usage-basic-qwen-7b-demo.yaml"):
        apply(crds, doc, namespace)
    obj = await wait_ready(crds, namespace, "qwen-7b-demo")
    rec = obj["status"]["recipe"]
    assert (rec["hardware"], rec["source"]) == ("MI300X", "builtin"), rec
    pods = get_json(crds, "-n", namespace, "pods", "-l",
                    "app.kubernetes.io/instance=qwen-7b-demo")
    node = get_json(crds, "node", pods["items"][0]["spec"]["nodeName"])
    assert node["metadata"]["labels"]["amd.com/gpu.device-id"] == "74a1"


async def test_spec_example_production_uses_the_custom_recipe_behind_an_hpa(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    for doc in example_docs("usage-production-recipe.yaml", "usage-production-endpoint.yaml",
                            "resourcequota-aim-engine-quota.yaml"):
        apply(crds, doc, namespace)
    obj = await wait_ready(crds, namespace, "qwen-32b-production", within=120)
    rec = obj["status"]["recipe"]
    assert (rec["recipeName"], rec.get("recipeNamespace"), rec["gpuCount"]) == (
        "qwen-32b-production", namespace, 4), rec
    assert obj["status"]["readyReplicas"] == 2
    hpa = get_json(crds, "-n", namespace, "hpa", "qwen-32b-production")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    svc = get_json(crds, "-n", namespace, "service", "qwen-32b-production")
    assert svc["spec"]["type"] == "LoadBalancer"


async def test_spec_example_multi_model_serves_both(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    for doc in example_docs("usage-multi-model.yaml"):
        apply(crds, doc, namespace)
    a = await wait_ready(crds, namespace, "qwen-7b-chat", within=120)
    b = await wait_ready(crds, namespace, "qwen-32b-inference", within=120)
    assert a["status"]["url"] != b["status"]["url"]


async def test_spec_examples_all_reconcile_to_an_explained_outcome(
    crds: LocalCluster, namespace: str, operator: App
) -> None:
    names = []
    for doc in example_docs("aimrecipe-qwen-32b-mi300x-bf16.yaml",
                            "aimendpoint-qwen-32b-production.yaml",
                            "advanced-auto-scaling-endpoint.yaml",
                            "advanced-canary-endpoint.yaml",
                            "aimcache-global-model-cache.yaml"):
        if doc["kind"] == "AIMEndpoint":
            names.append(doc["metadata"]["name"])
        apply(crds, doc, namespace)
    assert names
    for name in names:
        obj = await eventually(
            lambda n=name: (o := ep(crds, namespace, n)) and condition(o, "RecipeSelected")
            and (o["status"]["observedGeneration"] == o["metadata"]["generation"]) and o,
            60, what=f"{name} reconciled", blocking=True)
        sel = condition(obj, "RecipeSelected")
        assert sel is not None
        # Every example either gets a recipe and its children, or says exactly why not.
        if sel["status"] == "True":
            await eventually(lambda n=name: cond_is(crds, namespace, n, "ResourcesReady",
                                                    "True"), 30, what=f"{name} applied",
                             blocking=True)
        else:
            assert sel["reason"] in ("NoFeasibleCandidate", "NoRecipe"), sel
            assert sel["message"]
