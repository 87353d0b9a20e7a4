"""The informer cache: keys, indexes, replace."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aim_controller.machinery.store import (
    CONTROLLER_OWNER_UID_INDEX,
    DEFAULT_INDEXERS,
    NAMESPACE_INDEX,
    Indexer,
    Store,
    index_by_controller_owner_uid,
    index_by_field,
    index_by_label,
    index_by_namespace,
)


def obj(name: str, ns: str | None = "default", rv: str = "1", **meta: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "resourceVersion": rv, **meta}
    if ns:
        m["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m}


def owned(name: str, uid: str, *, controller: bool = True, ns: str = "default") -> dict[str, Any]:
    ref = {"apiVersion": "v1", "kind": "X", "name": "o", "uid": uid, "controller": controller}
    return obj(name, ns, ownerReferences=[ref])


def test_keys_namespaced_and_cluster_scoped() -> None:
    s = Store()
    s.add(obj("a"))
    s.add(obj("n1", ns=None))
    assert sorted(s.list_keys()) == ["default/a", "n1"]
    assert s.get("default/a") is not None and "n1" in s and len(s) == 2
    assert s.get("other/a") is None


def test_add_returns_replaced_and_delete_returns_removed() -> None:
    s = Store()
    first = obj("a", rv="1")
    assert s.add(first) is None
    assert s.add(obj("a", rv="2")) is first
    gone = s.delete("default/a")
    assert gone is not None and gone["metadata"]["resourceVersion"] == "2"
    assert s.delete("default/a") is None
    assert len(s) == 0


def test_replace_sets_content_and_resource_version() -> None:
    s = Indexer(DEFAULT_INDEXERS)
    s.add(obj("a"))
    s.add(obj("b", ns="x"))
    s.replace([obj("c", ns="x"), obj("d", ns="y")], "42")
    assert sorted(s.list_keys()) == ["x/c", "y/d"]
    assert s.resource_version == "42"
    assert s.index_keys(NAMESPACE_INDEX, "x") == ["x/c"]
    assert s.index_keys(NAMESPACE_INDEX, "default") == []


def test_indexes_follow_updates_and_deletes() -> None:
    s = Indexer({"app": index_by_label("app")})
    s.add(obj("a", labels={"app": "one"}))
    s.add(obj("b", labels={"app": "one"}))
    assert s.index_keys("app", "one") == ["default/a", "default/b"]
    s.update(obj("a", labels={"app": "two"}))
    assert s.index_keys("app", "one") == ["default/b"]
    assert [o["metadata"]["name"] for o in s.by_index("app", "two")] == ["a"]
    s.delete("default/b")
    assert s.index_keys("app", "one") == []
    assert s.list_index_values("app") == ["two"]


def test_indexers_added_later_index_existing_objects() -> None:
    s = Indexer()
    s.add(owned("a", "u1"))
    s.add(owned("b", "u2", controller=False))
    s.add_indexers({CONTROLLER_OWNER_UID_INDEX: index_by_controller_owner_uid})
    assert s.index_keys(CONTROLLER_OWNER_UID_INDEX, "u1") == ["default/a"]
    assert s.index_keys(CONTROLLER_OWNER_UID_INDEX, "u2") == []  # not a controller ref


def test_readding_an_indexer_is_idempotent_but_conflicts_are_rejected() -> None:
    s = Indexer({"ns": index_by_namespace})
    s.add_indexers({"ns": index_by_namespace})
    with pytest.raises(ValueError):
        s.add_indexers({"ns": index_by_label("x")})


def test_unknown_index_is_an_error() -> None:
    with pytest.raises(KeyError):
        Indexer().by_index("nope", "x")


def test_index_functions() -> None:
    assert index_by_namespace(obj("a", ns="x")) == ["x"]
    assert index_by_namespace(obj("n", ns=None)) == []
    assert index_by_label("app")(obj("a")) == []
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "hostNetwork": True,
                                               "ports": [1, 2], "nested": {"x": 1}}}
    assert index_by_field("spec.nodeName")(pod) == ["n1"]
    assert index_by_field("spec.hostNetwork")(pod) == ["true"]
    assert index_by_field("spec.ports")(pod) == ["1", "2"]
    assert index_by_field("spec.nested")(pod) == []
    assert index_by_field("spec.missing.deeper")(pod) == []
    assert index_by_field("metadata.name.x")(pod) == []


def test_object_filed_under_several_values_once_each() -> None:
    s = Indexer({"port": index_by_field("spec.ports")})
    s.add({"metadata": {"name": "p", "namespace": "d"}, "spec": {"ports": [80, 80, 443]}})
    assert s.index_keys("port", "80") == ["d/p"]
    s.delete("d/p")
    assert s.list_index_values("port") == []


# -- property: after any sequence of operations the index equals a from-scratch computation
ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "delete", "replace"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from(["ns1", "ns2"]),
        st.sampled_from(["red", "blue", None]),
    ),
    max_size=40,
)


@given(ops)
def test_indexes_always_match_content(seq: list[tuple[str, str, str, str | None]]) -> None:
    s = Indexer({NAMESPACE_INDEX: index_by_namespace, "color": index_by_label("color")})
    for i, (op, name, ns, color) in enumerate(seq):
        labels = {"color": color} if color else {}
        o = obj(name, ns=ns, rv=str(i), labels=labels)
        if op == "add":
            s.add(o)
        elif op == "delete":
            s.delete(f"{ns}/{name}")
        else:
            s.replace([o, obj("z", ns="ns1", rv=str(i))], str(i))
    for index, fn in (("color", index_by_label("color")), (NAMESPACE_INDEX, index_by_namespace)):
        expected: dict[str, set[str]] = {}
        for key in s.list_keys():
            item = s.get(key)
            assert item is not None
            for v in fn(item):
                expected.setdefault(v, set()).add(key)
        assert {v: set(s.index_keys(index, v)) for v in s.list_index_values(index)} == expected
