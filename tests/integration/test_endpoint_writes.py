"""What the way to Ready costs, on the real control plane: each child written once
(an apply that only creates: no read of its name first), the status written once per
stage a user watching it sees, never twice with the same stages; and a child whose
name is taken is read only then (ours after all: applied; somebody else's: left)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    GROUP,
    apply,
    cond_is,
    endpoint,
    get_json,
    running_operator,
    settled,
    wait_ready,
)
from support import eventually
from support.kube import RequestLog

from aim_controller.main import App

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

CHILDREN = ("configmaps", "services", "deployments")
# Per endpoint: the recipe chosen and children applied, then Ready. Under load more
# of the way may be seen on the way (a Deployment status with the pod not yet Ready).
MAX_STATUS_WRITES = 3
# The stages, as (RecipeSelected, ResourcesReady, Ready) statuses with Ready's reason.
STAGE = ("{.metadata.name}|{.status.observedGeneration}"
         "|{.status.conditions[?(@.type==\"RecipeSelected\")].status}"
         "|{.status.conditions[?(@.type==\"ResourcesReady\")].status}"
         "|{.status.conditions[?(@.type==\"Ready\")].status}"
         "|{.status.conditions[?(@.type==\"Ready\")].reason}\n")


@pytest.fixture(scope="module")
async def operator(crds: LocalCluster) -> AsyncIterator[App]:
    async with running_operator(crds, "--max-concurrent-reconciles", "4") as app:
        yield app


@pytest.fixture(scope="module")
def request_log(operator: App) -> RequestLog:
    return RequestLog(operator.api_client)


@pytest.fixture
def watched(crds: LocalCluster, namespace: str) -> Iterator[subprocess.Popen[str]]:
    """What a user sees with ``kubectl get -w``: one line per stored version."""
    proc = subprocess.Popen(
        [str(crds.bin_dir / "kubectl"), f"--kubeconfig={crds.kubeconfig}", "get", "-n",
         namespace, f"aimendpoints.{GROUP}", "--watch", "-o", f"jsonpath={STAGE}"],
        stdout=subprocess.PIPE, text=True)
    yield proc
    proc.terminate()
    proc.wait(10)


def _ours(requests: list[tuple[str, str]], namespace: str, method: str) -> list[str]:
    paths = [u.split("?")[0] for m, u in requests if m == method]
    return [p[p.find("/api"):] for p in paths if f"/namespaces/{namespace}/" in p]


async def test_the_way_to_ready_writes_each_child_once_and_each_stage_once(
    crds: LocalCluster, namespace: str, operator: App, request_log: RequestLog,
    watched: subprocess.Popen[str],
) -> None:
    names = ["w1", "w2", "w3"]
    mark = len(request_log)
    for name in names:
        apply(crds, endpoint(name), namespace)
    for name in names:
        await wait_ready(crds, namespace, name)
    await settled(operator, crds, namespace)
    sent = request_log.since(mark)

    # No read of a child's name before its create, nor of anything else.
    assert _ours(sent, namespace, "GET") == []
    patches = _ours(sent, namespace, "PATCH")
    for name in names:
        for plural in CHILDREN:
            child = name if plural != "configmaps" else f"{name}-config"
            assert sum(p.endswith(f"/{plural}/{child}") for p in patches) == 1, (
                plural, child, patches)
        status = sum(p.endswith(f"/aimendpoints/{name}/status") for p in patches)
        assert 2 <= status <= MAX_STATUS_WRITES, (name, status)

    # The user watching saw every stage: chosen and applied while not Ready yet, then
    # Ready; and no two versions in a row that look the same.
    watched.terminate()
    out, _ = await asyncio.to_thread(watched.communicate, timeout=10)
    for name in names:
        seen = [tuple(line.split("|")[1:]) for line in out.splitlines()
                if line.startswith(f"{name}|")]
        with_status = [s for s in seen if s[0]]
        assert with_status[-1] == ("1", "True", "True", "True", "Ready"), seen
        assert any(s[1:4] == ("True", "True", "False") for s in with_status), seen
        assert len(with_status) <= MAX_STATUS_WRITES, seen


async def test_a_child_whose_labels_a_user_removed_is_still_ours(
    crds: LocalCluster, namespace: str, operator: App, request_log: RequestLog,
) -> None:
    # Without our labels the child leaves the operator's caches: its name looks taken.
    # The create finds it, reads it once, sees it is this endpoint's and applies it.
    apply(crds, endpoint("relabel"), namespace)
    obj = await wait_ready(crds, namespace, "relabel")
    mark = len(request_log)
    crds.kubectl("label", "-n", namespace, "configmap", "relabel-config",
                 "app.kubernetes.io/managed-by-")

    def relabelled() -> bool:
        cm = get_json(crds, "-n", namespace, "configmap", "relabel-config") or {}
        return "app.kubernetes.io/managed-by" in (cm.get("metadata") or {}).get("labels", {})

    await eventually(relabelled, 60, what="the label applied again", blocking=True)
    await settled(operator, crds, namespace)
    assert not cond_is(crds, namespace, "relabel", "ResourcesReady", "False", "ChildConflict")
    cm = get_json(crds, "-n", namespace, "configmap", "relabel-config")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert _ours(request_log.since(mark), namespace, "GET") == [
        "/api/v1/namespaces/" + namespace + "/configmaps/relabel-config"]
