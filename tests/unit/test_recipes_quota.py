"""GPU quota: ``requests.amd.com/gpu`` judged by the quota's status, the bare
``amd.com/gpu`` key (which Kubernetes neither enforces nor counts) by the
namespace's pods, and both honoured by selection."""

from __future__ import annotations

from typing import Any

from recipes_fixtures import container, endpoint, gpu_node, pod, quota, recipe

from aim_controller.recipes import Decision, GpuQuota, Reason, Verdict, build_inventory, select
from aim_controller.recipes.quota import gpu_quota, namespace_gpu_requests, needs_pod_count

NS = "aim"
NOT_ENFORCED = "Kubernetes does not enforce the bare amd.com/gpu quota key"


def bare(hard: int, *, name: str = "bare", scopes: tuple[str, ...] = ()) -> dict[str, Any]:
    """A quota on the bare key as the API server stores it: status.used never has it."""
    q = quota(hard, name=name, key="amd.com/gpu", scopes=scopes)
    q["status"]["used"].pop("amd.com/gpu")
    return q


def test_requests_key_is_judged_by_its_status_used() -> None:
    q = gpu_quota([quota(8, 3)], namespace_used=7)
    assert q == GpuQuota(8, 3, "gpu-quota", enforced=True)
    assert q.describe() == "ResourceQuota gpu-quota leaves 5 amd.com/gpu (hard 8, used 3)"
    assert q.caveat() == ""


def test_bare_key_is_judged_by_the_namespace_pods_and_says_it_is_not_enforced() -> None:
    q = gpu_quota([bare(8)], namespace_used=6)
    assert q == GpuQuota(8, 6, "bare", enforced=False)
    assert q.room == 2
    assert q.describe().startswith(
        "ResourceQuota bare leaves 2 amd.com/gpu (hard 8, used 6 by the namespace's pods); "
        + NOT_ENFORCED)
    assert q.caveat().startswith("ResourceQuota bare limits amd.com/gpu: " + NOT_ENFORCED)
    assert "requests.amd.com/gpu" in q.caveat()


def test_owned_gpus_are_given_back_under_both_keys() -> None:
    assert gpu_quota([quota(8, 6)], owned=4) == GpuQuota(8, 2, "gpu-quota")
    assert gpu_quota([bare(8)], owned=4, namespace_used=6) == GpuQuota(8, 2, "bare", False)
    assert gpu_quota([bare(8)], owned=9, namespace_used=6) == GpuQuota(8, 0, "bare", False)


def test_tightest_across_both_keys_and_the_enforced_one_on_a_tie() -> None:
    both = [quota(8, 4, name="tracked"), bare(16, name="loose")]
    assert gpu_quota(both, namespace_used=10) == GpuQuota(8, 4, "tracked")
    assert gpu_quota(both, namespace_used=14) == GpuQuota(16, 14, "loose", False)
    tie = [bare(8, name="a"), quota(8, 4, name="z")]
    assert gpu_quota(tie, namespace_used=4) == GpuQuota(8, 4, "z")


def test_pods_are_counted_only_when_an_applicable_quota_uses_the_bare_key() -> None:
    assert not needs_pod_count([quota(8)])
    assert not needs_pod_count([])
    assert needs_pod_count([quota(8), bare(8)])
    assert not needs_pod_count([bare(8, scopes=("Terminating",))])
    assert needs_pod_count([bare(8, scopes=("NotTerminating",))])


def test_namespace_gpu_requests_counts_live_pods_pending_included() -> None:
    pods = [
        pod("running", "n1", 2),
        pod("pending", None, 4, phase="Pending"),
        pod("done", "n1", 8, phase="Succeeded"),
        pod("failed", "n1", 8, phase="Failed"),
        pod("cpu-only", "n1"),
        pod("limits", "n1", containers=[container(gpus=1, limits_only=True)]),
        pod("two", "n1", containers=[container("a", 1), container("b", 2)]),
        # A partition is not the whole-GPU key the quota names.
        pod("part", "n1", containers=[container(gpus=1, resource="amd.com/gpu-cpx")]),
    ]
    assert namespace_gpu_requests(pods) == 2 + 4 + 1 + 3


def _select(quotas: list[dict[str, Any]], min_replicas: int, **kw: Any) -> Decision:
    inv = build_inventory([gpu_node("a", "MI300X"), gpu_node("b", "MI300X")], [])
    return select(endpoint(min_replicas=min_replicas), NS, [recipe("r", counts=(4,))], [], inv,
                  quotas, **kw)


def test_selection_honours_the_bare_key_with_the_namespace_use() -> None:
    # 10 GPUs allowed, 6 taken by the namespace's pods: two 4-GPU replicas do not fit.
    d = _select([bare(10)], 2, namespace_quota_gpus=6)
    assert d.reason is Reason.NO_FEASIBLE_CANDIDATE
    (c,) = d.candidates
    assert (c.verdict, c.reason) == (Verdict.REJECTED, Reason.QUOTA_EXCEEDED)
    assert c.message.startswith(
        "needs 2x4=8 amd.com/gpu; ResourceQuota bare leaves 4 amd.com/gpu (hard 10, used 6 by "
        "the namespace's pods); " + NOT_ENFORCED)
    assert NOT_ENFORCED in d.message
    # One replica fits; the choice says the quota binds only the operator.
    ok = _select([bare(10)], 1, namespace_quota_gpus=6)
    assert ok.reason is Reason.SELECTED and ok.chosen is not None
    assert "ResourceQuota bare limits amd.com/gpu: " + NOT_ENFORCED in ok.message
    # The endpoint's own pods are in the namespace's use: given back when re-judged.
    again = _select([bare(10)], 2, namespace_quota_gpus=6, owned_quota_gpus=4)
    assert again.reason is Reason.SELECTED


def test_selection_judges_the_requests_key_by_status_and_says_nothing_of_enforcement() -> None:
    d = _select([quota(10, 6)], 2, namespace_quota_gpus=0)
    (c,) = d.candidates
    assert c.reason is Reason.QUOTA_EXCEEDED
    assert c.message == (
        "needs 2x4=8 amd.com/gpu; ResourceQuota gpu-quota leaves 4 amd.com/gpu (hard 10, used 6)")
    ok = _select([quota(10, 6)], 1)
    assert ok.reason is Reason.SELECTED and "enforce" not in ok.message
