"""An operator restarted in the middle of a canary resumes it from the endpoint's status:
the same analysis clock (analysisStartTime), never promoted before ``duration`` of
healthy time. Its own module: no other operator runs meanwhile."""

from __future__ import annotations

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    ReconcileLog,
    apply,
    running_operator,
)
from test_canary import V2, canary_ep, canary_status, deployment, events, image_of, phase, serving

from aim_controller.recipes.backoff import parse_time

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]


async def test_an_operator_restarted_mid_canary_resumes_from_the_status(
    crds: LocalCluster, namespace: str
) -> None:
    async with running_operator(crds):
        await serving(crds, namespace, "resume", duration="30s")
        apply(crds, canary_ep("resume", image=V2, duration="30s"), namespace)
        first = await phase(crds, namespace, "resume", "Analyzing")
    started = first["analysisStartTime"]
    async with running_operator(crds) as app:
        # The new operator's first reconcile of it: still analyzing, on the same clock.
        await ReconcileLog(app).reconcile(f"{namespace}/resume")
        again = canary_status(crds, namespace, "resume")
        assert again["phase"] == "Analyzing" and again["analysisStartTime"] == started
        assert deployment(crds, namespace, "resume-canary") is not None
        done = await phase(crds, namespace, "resume", "Succeeded", within=120)
    assert done["analysisStartTime"] == started
    assert done["startTime"] == first["startTime"]
    found = events(crds, namespace, "resume", "CanaryPromoted")
    assert len(found) == 1, [(e.get("message"), e.get("count"), e.get("firstTimestamp"),
                              e.get("reportingInstance"), e.get("source")) for e in found]
    [promoted] = found
    when = parse_time(promoted.get("lastTimestamp") or promoted.get("eventTime"))
    since = parse_time(started)
    assert when is not None and since is not None
    assert (when - since).total_seconds() >= 30  # never promoted before 30 s healthy
    assert image_of(deployment(crds, namespace, "resume")) == V2
