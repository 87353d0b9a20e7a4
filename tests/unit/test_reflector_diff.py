"""The relist diff (what a reflector delivers after a relist), its backoff, and how
it recognises an expired resourceVersion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FakeClock

from aim_controller.machinery.handlers import KubeObject
from aim_controller.machinery.kubeclient import ApiException
from aim_controller.machinery.reflector import (
    BackoffManager,
    Delta,
    _is_gone,
    diff_relist,
    strip_managed_fields,
)
from aim_controller.machinery.resource import CONFIGMAPS, _event, api_exception


def cm(name: str, rv: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "d", "resourceVersion": rv}, "data": data}


def by_key(*objs: dict[str, Any]) -> dict[str, KubeObject]:
    return {f"d/{o['metadata']['name']}": o for o in objs}


def test_initial_list_is_all_adds() -> None:
    listed = by_key(cm("a", "1"), cm("b", "2"))
    assert diff_relist({}, listed) == [Delta("add", None, listed["d/a"]),
                                       Delta("add", None, listed["d/b"])]


def test_adds_updates_and_deletes_with_last_known_state() -> None:
    a1, b1, c1 = cm("a", "1"), cm("b", "2", k="old"), cm("c", "3", k="last")
    b2, d1 = cm("b", "7", k="new"), cm("d", "8")
    deltas = diff_relist(by_key(a1, b1, c1), by_key(a1, b2, d1))
    assert deltas == [
        Delta("update", b1, b2),
        Delta("add", None, d1),
        Delta("delete", c1, None),  # the state we last knew: the real final one was missed
    ]


def test_unchanged_resource_version_is_not_an_update() -> None:
    # Same RV, different object identity (a fresh decode): nothing to deliver.
    assert diff_relist(by_key(cm("a", "5")), by_key(cm("a", "5"))) == []


def test_everything_gone_is_all_deletes() -> None:
    old = by_key(cm("a", "1"), cm("b", "2"))
    assert [(d.type, d.old) for d in diff_relist(old, {})] == [
        ("delete", old["d/a"]), ("delete", old["d/b"])]


states = st.dictionaries(st.sampled_from("abcdef"), st.sampled_from(["1", "2", "3"]))


@given(states, states)
def test_applying_the_diff_reproduces_the_list(
    before: dict[str, str], after: dict[str, str]
) -> None:
    current = by_key(*(cm(n, rv) for n, rv in before.items()))
    listed = by_key(*(cm(n, rv) for n, rv in after.items()))
    store = dict(current)
    for d in diff_relist(current, listed):
        if d.type == "delete":
            assert d.old is not None and d.new is None
            key = f"d/{d.old['metadata']['name']}"
            assert store.pop(key) is d.old
        else:
            assert d.new is not None
            key = f"d/{d.new['metadata']['name']}"
            assert (d.old is None) == (key not in store)
            if d.old is not None:
                assert d.old is store[key]
                assert d.old["metadata"]["resourceVersion"] != d.new["metadata"]["resourceVersion"]
            store[key] = d.new
    assert {k: v["metadata"]["resourceVersion"] for k, v in store.items()} == {
        k: v["metadata"]["resourceVersion"] for k, v in listed.items()}


def test_strip_managed_fields() -> None:
    o = {"metadata": {"name": "a", "managedFields": [{"manager": "x"}], "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}}}
    assert strip_managed_fields(o) == {"metadata": {"name": "a", "annotations": {"keep": "me"}}}
    assert strip_managed_fields({"metadata": {"name": "b"}}) == {"metadata": {"name": "b"}}


def test_backoff_grows_caps_and_resets_after_a_healthy_period() -> None:
    clock = FakeClock()
    b = BackoffManager(initial=0.8, factor=2, cap=30, jitter=0, reset_after=120,
                       clock=clock, rand=lambda: 0.5)
    delays = [b.next() for _ in range(8)]
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30]
    clock.advance(121)
    assert b.next() == 0.8


def test_backoff_jitter_stays_within_bounds() -> None:
    hi = BackoffManager(initial=0.8, jitter=1.0, clock=FakeClock(), rand=lambda: 0.999)
    lo = BackoffManager(initial=0.8, jitter=1.0, clock=FakeClock(), rand=lambda: 0.0)
    his, los = [hi.next() for _ in range(10)], [lo.next() for _ in range(10)]
    assert all(0.8 <= x <= 30 for x in his + los)
    assert his[0] > 1.5 and los[0] == 0.8 and his[-1] == 30


# -- 410 Gone arrives two ways: an HTTP status, or an ERROR event in a 200 stream
def test_error_event_becomes_api_exception_recognised_as_gone() -> None:
    line = json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
        "message": "too old resource version: 5 (10)", "code": 410}}).encode()
    with pytest.raises(ApiException) as info:
        _event(CONFIGMAPS, line)
    assert info.value.status == 410 and _is_gone(info.value)


def test_http_410_and_legacy_500_too_old_are_gone_others_are_not() -> None:
    assert _is_gone(api_exception(410, b'{"reason": "Gone"}'))
    assert _is_gone(api_exception(500, b'{"message": "too old resource version: 1 (2)"}'))
    assert not _is_gone(api_exception(500, b'{"message": "etcdserver: leader changed"}'))
    assert not _is_gone(RuntimeError("410"))


def test_list_items_get_api_version_and_kind_like_watch_events() -> None:
    ev = _event(CONFIGMAPS, b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}')
    assert (ev.type, ev.object["apiVersion"], ev.object["kind"]) == ("ADDED", "v1", "ConfigMap")
    bookmark = _event(CONFIGMAPS, b'{"type": "BOOKMARK", "object": {"metadata": '
                                  b'{"resourceVersion": "9"}}}')
    assert bookmark.type == "BOOKMARK" and "kind" not in bookmark.object
