"""The writer's ``fieldValidation`` directive on the real API server.

A server-side apply with a field the kind's schema does not declare is refused
whatever the directive (the server builds a typed patch from the schema first), for
built-in kinds and our custom resources alike, objects and status: so for the applies,
which are nearly all of the operator's writes, ``Ignore`` (the default) loses nothing
and saves the second, strict parse of every body that the server's own default,
``Warn``, makes to find duplicate keys (a JSON body built from a dict has none).
For the other writes, a create (Events) and a merge patch, ``Strict`` (what the
operator runs with in the tests) refuses the unknown field and ``Ignore`` drops it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from localcluster import LocalCluster  # type: ignore[import-not-found]
from support.kube import api_client

from aim_controller.machinery.kubeclient import ApiException, KubeClient
from aim_controller.machinery.resource import CONFIGMAPS, EVENTS, Obj
from aim_controller.machinery.writer import ObjectWriter, RESTMapper
from aim_controller.reconcilers.context import AIM_ENDPOINTS, API_VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.fullcluster]

MAPPER = [CONFIGMAPS, EVENTS, AIM_ENDPOINTS]


@pytest.fixture
async def api(crds: LocalCluster) -> AsyncIterator[KubeClient]:
    client = await api_client(crds)
    try:
        yield client
    finally:
        await client.close()


def writer(api: KubeClient, validation: str) -> ObjectWriter:
    return ObjectWriter(api, RESTMapper(MAPPER), "aim-test", field_validation=validation)


def config_map(name: str, ns: str, **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}, **extra}


def aim_endpoint(name: str, ns: str, **spec: Any) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "AIMEndpoint",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"model": {"id": "Qwen/Qwen2.5-7B-Instruct"}, **spec}}


def event(ns: str, **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"fv.{uuid.uuid4().hex[:12]}", "namespace": ns},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": ns},
            "reason": "Test", "message": "m", "type": "Normal", **extra}


def unknown(e: ApiException, field: str) -> bool:
    return e.status in (400, 500) and field in (e.body or "")


@pytest.mark.parametrize("validation", ["Ignore", "Strict"])
async def test_an_apply_with_an_unknown_field_is_refused_whatever_the_directive(
        api: KubeClient, namespace: str, validation: str) -> None:
    w = writer(api, validation)
    with pytest.raises(ApiException) as e:
        await w.apply(config_map("c", namespace, bogusField="x"))
    assert unknown(e.value, "bogusField"), e.value.body
    with pytest.raises(ApiException) as e:
        await w.apply(aim_endpoint("a", namespace, bogusSpec="x"))
    assert unknown(e.value, "bogusSpec"), e.value.body
    with pytest.raises(ApiException) as e:
        await w.apply_new(aim_endpoint("b", namespace, bogusSpec="x"))
    assert unknown(e.value, "bogusSpec"), e.value.body
    ep = await w.apply(aim_endpoint("ep", namespace))
    with pytest.raises(ApiException) as e:
        await w.apply_status({**ep, "status": {"observedGeneration": 1, "bogusStatus": 1}})
    assert unknown(e.value, "bogusStatus"), e.value.body

    # the same writes without the unknown field go through
    assert (await w.apply(config_map("c", namespace)))["data"] == {"k": "v"}
    assert await w.apply_new(aim_endpoint("b", namespace)) is not None
    stored = await w.apply_status({**ep, "status": {"observedGeneration": 1}})
    assert stored["status"] == {"observedGeneration": 1}


async def test_strict_refuses_unknown_fields_in_creates_and_merge_patches(
        api: KubeClient, namespace: str) -> None:
    w = writer(api, "Strict")
    with pytest.raises(ApiException) as e:
        await w.create(event(namespace, bogusField="x"))
    assert e.value.status == 400 and "bogusField" in (e.value.body or ""), e.value.body
    ep = await w.apply(aim_endpoint("ep", namespace))
    with pytest.raises(ApiException) as e:
        await w.patch_merge(ep, {"spec": {"bogusSpec": True, "replicas": 2}})
    assert e.value.status == 422 and 'unknown field \\"spec.bogusSpec' in (e.value.body or ""), \
        e.value.body

    assert (await w.create(event(namespace)))["reason"] == "Test"
    assert (await w.patch_merge(ep, {"spec": {"replicas": 2}}))["spec"]["replicas"] == 2


async def test_ignore_the_default_drops_unknown_fields_in_creates_and_merge_patches(
        api: KubeClient, namespace: str) -> None:
    w = ObjectWriter(api, RESTMapper(MAPPER), "aim-test")
    assert w.field_validation == "Ignore"
    created = await w.create(event(namespace, bogusField="x"))
    assert created["reason"] == "Test" and "bogusField" not in created
    ep = await w.apply(aim_endpoint("ep", namespace))
    patched = await w.patch_merge(ep, {"spec": {"bogusSpec": True, "replicas": 2}})
    assert patched["spec"]["replicas"] == 2 and "bogusSpec" not in patched["spec"]


def test_an_unknown_directive_is_refused() -> None:
    with pytest.raises(ValueError, match="field_validation"):
        ObjectWriter(None, RESTMapper(MAPPER), "aim-test",  # type: ignore[arg-type]
                     field_validation="strict")
