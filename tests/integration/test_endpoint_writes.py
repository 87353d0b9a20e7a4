"""What the way to Ready costs, on the real control plane: each child created by an
apply that only creates (no read of its name first); the status written once per stage
a user watching it sees, with replica counts that agree with it (a stage the
Deployment has not counted yet is not written twice); a pod still loading shows as
such; and a child whose name is taken is read only then (ours after all: applied)."""

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
# The stages, as observedGeneration, (RecipeSelected, ResourcesReady, Ready) statuses,
# Ready's reason, and the replica counts beside them.
STAGE = ("{.metadata.name}|{.status.observedGeneration}"
         "|{.status.conditions[?(@.type==\"RecipeSelected\")].status}"
         "|{.status.conditions[?(@.type==\"ResourcesReady\")].status}"
         "|{.status.conditions[?(@.type==\"Ready\")].status}"
         "|{.status.conditions[?(@.type==\"Ready\")].reason}"
         "|{.status.replicas}|{.status.readyReplicas}\n")


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


def _ours(requests: list[tuple[str, str]], namespace: str) -> list[tuple[str, str]]:
    """(method, path) of the requests about objects in ``namespace``, in order."""
    out = []
    for m, u in requests:
        path = u.split("?")[0]
        if f"/namespaces/{namespace}/" in path:
            out.append((m, path[path.find("/api"):]))
    return out


def _status_story(log: RequestLog, mark: int, namespace: str, name: str) -> list[str]:
    """What each status write of ``name`` changed, for a failure message: its answer,
    then each condition and top-level field that differs from the write before."""
    story, before = [], {}
    for answer, body in log.sent_to(
            mark, f"/namespaces/{namespace}/aimendpoints/{name}/status"):
        status = dict((body or {}).get("status") or {})
        now = {str(c.get("type")): (c.get("status"), c.get("reason"), c.get("message"))
               for c in status.pop("conditions", None) or ()}
        now.update(status)
        story.append(f"[{answer}] " + "; ".join(
            f"{k}={v}" for k, v in now.items() if before.get(k) != v))
        before = now
    return story


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

    # Each child's first request is its create: no read of its name before. (A read
    # may follow, if a reconcile ran before the create's watch event and found the
    # name taken: by this endpoint.)
    mine = _ours(sent, namespace)
    for name in names:
        for plural in CHILDREN:
            child = name if plural != "configmaps" else f"{name}-config"
            about = [m for m, p in mine if p.endswith(f"/{plural}/{child}")]
            assert about[:1] == ["PATCH"], (plural, child, about)
        status = sum(m == "PATCH" and p.endswith(f"/aimendpoints/{name}/status")
                     for m, p in mine)
        assert 2 <= status <= MAX_STATUS_WRITES, "\n".join(
            [f"{name}: {status} status writes", *_status_story(request_log, mark, namespace, name)])

    # The user watching saw every stage: chosen and applied while not Ready yet, then
    # Ready, with replica counts that agree: no write told Ready before the Deployment
    # had counted the Ready pod (a count-only write would follow it at once).
    watched.terminate()
    out, _ = await asyncio.to_thread(watched.communicate, timeout=10)
    for name in names:
        seen = [tuple(line.split("|")[1:]) for line in out.splitlines()
                if line.startswith(f"{name}|")]
        with_status = [s for s in seen if s[0]]
        assert with_status[-1] == ("1", "True", "True", "True", "Ready", "1", "1"), seen
        assert any(s[1:4] == ("True", "True", "False") for s in with_status), seen
        first_ready = next(s for s in with_status if s[3] == "True")
        assert first_ready[5:] == ("1", "1"), seen
        assert len(with_status) <= MAX_STATUS_WRITES, seen


async def test_a_pod_still_loading_shows_as_such(
    crds: LocalCluster, namespace: str, operator: App,
) -> None:
    # kwok leaves a pod with an annotation value it has no stage for bound and not
    # Ready, as a model that takes minutes to load: that stage is written, not held.
    apply(crds, endpoint("loading", podTemplate={"annotations": {
        "aim.engine.amd.com/kwok-simulate": "loading"}}), namespace)

    def loading() -> bool:
        obj = cond_is(crds, namespace, "loading", "Ready", "False",
                      "MinimumReplicasUnavailable")
        return bool(obj and obj["status"].get("replicas") == 1
                    and obj["status"].get("readyReplicas") == 0)

    await eventually(loading, 60, what="replicas 1, none Ready", blocking=True)
    await settled(operator, crds, namespace)
    assert loading()

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
    assert [p for m, p in _ours(request_log.since(mark), namespace) if m == "GET"] == [
        f"/api/v1/namespaces/{namespace}/configmaps/relabel-config"]
