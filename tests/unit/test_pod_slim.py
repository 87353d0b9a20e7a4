"""The slim pod (the Pod cache's transform): every reader of cached pods answers the
same from the sliver as from the full pod, over generated pods; what it drops; and
that the one shared Pod informer is made with it."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_controller.builders.canary import is_canary_pod
from aim_controller.machinery.handlers import key_of
from aim_controller.machinery.informer import InformerFactory
from aim_controller.machinery.kubeclient import KubeClient
from aim_controller.machinery.reflector import resource_version_of, strip_managed_fields
from aim_controller.machinery.resource import PODS
from aim_controller.machinery.store import index_by_controller_owner_uid, index_by_namespace
from aim_controller.recipes.inventory import pod_device_requests
from aim_controller.recipes.quota import namespace_gpu_requests
from aim_controller.reconcilers.context import ControllerContext
from aim_controller.reconcilers.endpoint import EndpointReconciler
from aim_controller.reconcilers.endpoint_canary import container_restarts
from aim_controller.reconcilers.endpoint_observe import index_pod_by_endpoint, pods_state
from aim_controller.reconcilers.gpu_fingerprint import pod_gpu_fingerprint
from aim_controller.reconcilers.pod_slim import slim_pod
from aim_controller.reconcilers.reservations import ReservationBook

CHECKSUM = "aim.engine.amd.com/config-checksum"
BENCH = Path(__file__).resolve().parents[2] / "bench"
TEMPLATES = BENCH / "aimbench" / "pod_templates.json"

# -- generated pods: every field a reader looks at, in the shapes the API serves -----
texts = st.sampled_from([
    "", "0/3 nodes are available: 3 Insufficient amd.com/gpu.",
    "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
    "pod has unbound immediate PersistentVolumeClaims", "Back-off pulling image \"x\": "
    "ErrImagePull: not found", "x" * 1200])
times = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "not a time"])
quantities = st.sampled_from(["0", "1", "2", "8", "500m", "bad", 4])
resource_names = st.sampled_from([
    "amd.com/gpu", "amd.com/cpx_nps4", "amd.com/other", "cpu", "memory", "nvidia.com/gpu"])
resources = st.fixed_dictionaries({}, optional={
    "requests": st.dictionaries(resource_names, quantities, max_size=3),
    "limits": st.dictionaries(resource_names, quantities, max_size=3),
})
container_names = st.sampled_from(["engine", "proxy", "init", "sidecar"])


def containers(init: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "resources": resources, "image": st.just("registry.example.com/x:1"),
        "env": st.just([{"name": "A", "value": "b"}])}
    if init:
        optional["restartPolicy"] = st.sampled_from(["Always", "Never", "OnFailure"])
    return st.lists(st.fixed_dictionaries({"name": container_names}, optional=optional),
                    max_size=3)


reasons = st.sampled_from(["CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                           "InvalidImageName", "CreateContainerConfigError",
                           "CreateContainerError", "RunContainerError", "ContainerCreating",
                           "OOMKilled", "Error", "Completed"])
# Container states as the API has them: exitCode is the one field a termination always has.
states = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"waiting": st.fixed_dictionaries(
        {}, optional={"reason": reasons, "message": texts})}),
    st.fixed_dictionaries({"running": st.fixed_dictionaries({}, optional={"startedAt": times})}),
    st.fixed_dictionaries({"terminated": st.fixed_dictionaries(
        {"exitCode": st.sampled_from([0, 1, 137])},
        optional={"reason": reasons, "message": texts, "startedAt": times,
                  "finishedAt": times, "containerID": st.just("containerd://abc"),
                  "signal": st.just(9)})}),
)
container_statuses = st.lists(st.fixed_dictionaries(
    {"name": container_names},
    optional={"ready": st.booleans(), "restartCount": st.integers(0, 3), "state": states,
              "lastState": states, "image": st.just("x:1"), "imageID": st.just("sha256:1"),
              "started": st.booleans()}), max_size=3)
condition = st.fixed_dictionaries(
    {"type": st.sampled_from(["PodScheduled", "Ready", "Initialized", "ContainersReady"]),
     "status": st.sampled_from(["True", "False", "Unknown"])},
    optional={"reason": st.sampled_from(["Unschedulable", "PodCompleted", "Other"]),
              "message": texts, "lastTransitionTime": times,
              "lastProbeTime": st.none()})
unschedulable = st.fixed_dictionaries(
    {"type": st.just("PodScheduled"), "status": st.just("False"),
     "reason": st.just("Unschedulable"), "message": texts, "lastTransitionTime": times})
conditions = st.lists(st.one_of(condition, unschedulable), max_size=4)
labels = st.dictionaries(
    st.sampled_from(["app.kubernetes.io/managed-by", "aim.engine.amd.com/endpoint",
                     "app.kubernetes.io/instance", "pod-template-hash", "app", "team",
                     "aim.engine.amd.com/model"]),
    st.sampled_from(["aim-controller", "ep", "other", "abc123"]), max_size=6)
annotations = st.dictionaries(
    st.sampled_from([CHECKSUM, "aim.engine.amd.com/recipe",
                     "kubectl.kubernetes.io/last-applied-configuration", "prometheus.io/port"]),
    st.sampled_from(["t1", "t2", "{}"]), max_size=3)
owner_refs = st.lists(st.fixed_dictionaries(
    {"apiVersion": st.just("apps/v1"), "kind": st.sampled_from(["ReplicaSet", "Job"]),
     "name": st.just("rs"), "uid": st.sampled_from(["u1", "u2"])},
    optional={"controller": st.booleans(), "blockOwnerDeletion": st.booleans()}), max_size=2)


@st.composite
def pods(draw: st.DrawFn, name: str = "p") -> dict[str, Any]:
    meta = draw(st.fixed_dictionaries(
        {"name": st.just(name), "namespace": st.sampled_from(["aim", "other"]),
         "uid": st.just(f"uid-{name}"), "resourceVersion": st.sampled_from(["1", "2"])},
        optional={"labels": labels, "annotations": annotations, "ownerReferences": owner_refs,
                  "deletionTimestamp": times, "generation": st.just(1),
                  "creationTimestamp": times, "generateName": st.just("p-"),
                  "managedFields": st.just([{"manager": "kubelet", "fieldsV1": {"f:x": {}}}])}))
    spec = draw(st.fixed_dictionaries({}, optional={
        "nodeName": st.sampled_from(["", "n1", "n2"]), "containers": containers(False),
        "initContainers": containers(True),
        "overhead": st.dictionaries(resource_names, quantities, max_size=2),
        "tolerations": st.just([{"key": "amd.com/gpu", "operator": "Exists"}]),
        "volumes": st.just([{"name": "v", "emptyDir": {}}])}))
    status = draw(st.fixed_dictionaries({}, optional={
        "phase": st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
        "conditions": conditions, "containerStatuses": container_statuses,
        "initContainerStatuses": container_statuses, "podIP": st.just("10.0.0.1"),
        "qosClass": st.just("Burstable")}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


deployments = st.one_of(st.none(), st.fixed_dictionaries({"spec": st.fixed_dictionaries({
    "template": st.fixed_dictionaries({
        "metadata": st.fixed_dictionaries({"annotations": st.dictionaries(
            st.just(CHECKSUM), st.sampled_from(["t1", "t2"]))}),
        "spec": st.fixed_dictionaries({"containers": st.just(
            [{"name": "engine", "resources": {"limits": {"memory": "8Gi"}}}])}),
    })})}))


# -- the readers ---------------------------------------------------------------------
def _endpoint_of_pod(waiting: bool) -> Callable[[dict[str, Any]], Any]:
    # The reconciler's event mapping, on a stand-in for its state (it reads no more).
    me = SimpleNamespace(_waiting={"aim/ep"} if waiting else set(),
                         reservations=ReservationBook())
    return lambda pod: EndpointReconciler._endpoint_of_pod(me, pod)  # type: ignore[arg-type]


ONE_POD_READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "key_of": key_of,
    "resource_version_of": resource_version_of,
    "index_by_namespace": index_by_namespace,
    "index_by_controller_owner_uid": index_by_controller_owner_uid,
    "index_pod_by_endpoint": index_pod_by_endpoint,
    "pod_device_requests": pod_device_requests,
    "pod_device_requests(pending too)": lambda p: pod_device_requests(p, bound_only=False),
    "pod_gpu_fingerprint": pod_gpu_fingerprint,
    "endpoint_of_pod": _endpoint_of_pod(False),
    "endpoint_of_pod(waiting)": _endpoint_of_pod(True),
    "uid": lambda p: p["metadata"].get("uid"),  # InventoryCache's key, with name and RV
    "is_canary_pod": is_canary_pod,
}
try:  # failure detection (item 2): its readers, once they are in
    failures = importlib.import_module("aim_controller.reconcilers.pod_failures")
except ImportError:
    failures = None
else:
    for name in ("is_ready", "is_failing", "reported_on"):
        if hasattr(failures, name):
            ONE_POD_READERS[name] = getattr(failures, name)


def read_all(pod: dict[str, Any]) -> dict[str, Any]:
    return {name: reader(pod) for name, reader in ONE_POD_READERS.items()}


@settings(max_examples=400)
@given(pods())
def test_each_reader_answers_the_same_from_the_slim_pod(pod: dict[str, Any]) -> None:
    full = copy.deepcopy(pod)
    slim = slim_pod(pod)
    assert pod == full  # the transform leaves its argument alone
    assert read_all(slim) == read_all(full)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 1_000_000), min_size=1, max_size=4, unique=True).flatmap(
    lambda ids: st.tuples(*(pods(f"p{i}") for i in ids))), deployments)
def test_pod_lists_read_the_same_from_slim_pods(
    some: tuple[dict[str, Any], ...], deployment: dict[str, Any] | None
) -> None:
    full = [copy.deepcopy(p) for p in some]
    slim = [slim_pod(p) for p in some]
    assert pods_state(slim, deployment) == pods_state(full, deployment)
    assert namespace_gpu_requests(slim) == namespace_gpu_requests(full)
    assert container_restarts(slim, deployment) == container_restarts(full, deployment)
    if failures is not None and hasattr(failures, "first_failure"):
        limits = failures.memory_limits(((deployment or {}).get("spec") or {}).get("template"))
        assert failures.first_failure(slim, limits) == failures.first_failure(full, limits)


def test_captured_pods_keep_only_what_is_read() -> None:
    ours, other = sorted(json.loads(TEMPLATES.read_text()),
                         key=lambda p: p["metadata"]["namespace"])
    slim = slim_pod(copy.deepcopy(ours))
    assert read_all(slim) == read_all(ours)
    meta = slim["metadata"]
    assert set(meta) == {"name", "namespace", "uid", "resourceVersion", "generation",
                         "labels", "annotations", "ownerReferences"}
    assert set(meta["labels"]) == {"app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
                                   "aim.engine.amd.com/endpoint", "pod-template-hash"}
    assert set(meta["annotations"]) == {CHECKSUM}
    assert meta["ownerReferences"] == [{k: v for k, v in ours["metadata"]["ownerReferences"][0]
                                        .items() if k != "blockOwnerDeletion"}]
    # The engine asks for one GPU (request and limit): the request says it all.
    assert slim["spec"] == {"nodeName": ours["spec"]["nodeName"], "containers": [
        {"name": "engine", "resources": {"requests": {"amd.com/gpu": "1"}}}]}
    assert set(slim["status"]) == {"phase", "conditions", "containerStatuses"}
    # Somebody else's pod: no GPU, none of our labels: little more than its identity.
    slim_other = slim_pod(copy.deepcopy(other))
    assert slim_other["spec"] == {"nodeName": other["spec"]["nodeName"]}
    assert set(slim_other["metadata"]["labels"]) == {"pod-template-hash"}
    assert "annotations" not in slim_other["metadata"]
    assert len(json.dumps(slim)) * 4 < len(json.dumps(ours))


def test_the_shared_pod_informer_is_slim_whoever_asks_first() -> None:
    factory = InformerFactory(cast(KubeClient, None))
    ctx = ControllerContext(informers=factory, writer=None, recorder=None,  # type: ignore[arg-type]
                            metrics=None, settings=None,  # type: ignore[arg-type]
                            operator_namespace="aim-system")
    ctx.gpu_view()
    pods_informer = factory.informer(PODS, None, transform=slim_pod)  # as the endpoint asks
    assert pods_informer.reflector.transform is slim_pod


def test_the_cache_holds_a_slim_pod_in_a_fraction_of_the_memory() -> None:
    sys.path.insert(0, str(BENCH))
    from aimbench.podcache import store_bytes_per_pod  # what make bench prints

    assert store_bytes_per_pod(slim_pod, 400) * 5 < store_bytes_per_pod(strip_managed_fields, 400)
