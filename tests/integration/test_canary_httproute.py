"""The canary's exact traffic split through the Gateway API, on a private control
plane with the upstream HTTPRoute CRD (pinned in hack/versions.env, fetched through the
Go module proxy by hack/fetch-crds.sh gateway-api, never copied into the repository).

Without the CRD, ``spec.service.gateway`` is refused in ``GatewayRouted=False``; once
it is installed (after the operator started) the operator follows it: the HTTPRoute
attaches the endpoint to the Gateway, a canary gets weights ``100 - trafficSplit`` /
``trafficSplit`` over the endpoint's Service (stable pods only) and the canary's
Service, and after the promotion the route sends everything to the endpoint's Service
again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from localcluster import LocalCluster, gateway_api_crds  # type: ignore[import-not-found]
from operator_harness import (  # type: ignore[import-not-found]
    apply,
    cond_is,
    endpoint,
    get_json,
    running_operator,
    wait_ready,
)
from support import eventually
from support.kube import install_crds

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

NS = "routed"
V2 = "docker.io/rocm/vllm:canary-v2"


@pytest.fixture
def gpu_cluster(make_cluster: Callable[..., LocalCluster]) -> Iterator[LocalCluster]:
    c = make_cluster(full=True)
    c.apply_inventory()
    install_crds(c)
    c.kubectl("create", "namespace", NS)
    yield c


def routed_ep(image: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "service": {"gateway": {"name": "public", "namespace": "gateways"}},
        "deployment": {"canary": {"enabled": True, "trafficSplit": 20, "duration": "5s"}},
    }
    if image:
        spec["image"] = image
    return endpoint("web", **spec)


def backends(c: LocalCluster) -> list[tuple[str, Any]] | None:
    """(Service, weight) of the route's backends; the API server defaults a weight to 1."""
    route = get_json(c, "-n", NS, "httproutes.gateway.networking.k8s.io/web")
    if route is None:
        return None
    return [(b["name"], b.get("weight")) for b in route["spec"]["rules"][0]["backendRefs"]]


async def test_the_httproute_splits_a_canary_by_weight(gpu_cluster: LocalCluster) -> None:
    c = gpu_cluster
    async with running_operator(c):
        apply(c, routed_ep(), NS)
        obj = await eventually(
            lambda: cond_is(c, NS, "web", "GatewayRouted", "False", "GatewayAPINotServed"),
            60, what="GatewayRouted False", blocking=True)
        assert "HTTPRoute is not served" in next(
            x for x in obj["status"]["conditions"] if x["type"] == "GatewayRouted")["message"]
        await wait_ready(c, NS, "web")

        c.kubectl("apply", "--server-side", "--field-manager=aim-tests", "-f",
                  str(gateway_api_crds()))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/httproutes.gateway.networking.k8s.io")
        await eventually(lambda: backends(c) == [("web", 1)], 60,
                         what="the HTTPRoute to the endpoint's Service", blocking=True)
        route = get_json(c, "-n", NS, "httproutes.gateway.networking.k8s.io/web")
        assert route["spec"]["parentRefs"][0]["name"] == "public"
        assert route["spec"]["parentRefs"][0]["namespace"] == "gateways"
        assert route["metadata"]["ownerReferences"][0]["kind"] == "AIMEndpoint"
        await eventually(lambda: cond_is(c, NS, "web", "GatewayRouted", "True"), 60,
                         what="GatewayRouted True", blocking=True)

        apply(c, routed_ep(V2), NS)
        await eventually(lambda: backends(c) == [("web", 80), ("web-canary", 20)], 60,
                         what="the route's weights 80/20", blocking=True)
        svc = get_json(c, "-n", NS, "service/web-canary")
        canary = get_json(c, "-n", NS, "deployment/web-canary")
        labels = canary["spec"]["template"]["metadata"]["labels"]
        assert set(svc["spec"]["selector"].items()) <= set(labels.items())
        stable_svc = get_json(c, "-n", NS, "service/web")
        assert not set(stable_svc["spec"]["selector"].items()) <= set(labels.items())
        # The status follows the children's apply (its own write, maybe a moment later).
        record = await eventually(
            lambda: ((get_json(c, "-n", NS, "aiep/web") or {}).get("status") or {}).get(
                "canary"), 60, what="status.canary", blocking=True)
        assert record["weight"] == 20 and "HTTPRoute" in record["message"]

        await eventually(lambda: (get_json(c, "-n", NS, "aiep/web")["status"]["canary"]
                                  ["phase"] == "Succeeded"), 120,
                         what="the canary promoted", blocking=True)
        await eventually(lambda: backends(c) == [("web", 1)], 60,
                         what="the route back to the endpoint's Service", blocking=True)
        await eventually(lambda: get_json(c, "-n", NS, "service/web-canary") is None, 60,
                         what="the canary's Service gone", blocking=True)
