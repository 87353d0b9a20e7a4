"""Shared fixtures. Integration tests run against a real local control plane
(etcd + kube-apiserver, plus controller-manager, scheduler and kwok GPU nodes)
started from the pinned upstream binaries by hack/localcluster.py."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "tests"))  # the shared helpers: `import support`

import localcluster  # noqa: E402
from localcluster import LocalCluster  # noqa: E402
from support.kube import install_crds  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The shared control plane: etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler and kwok with the default simulated AMD GPU inventory."""
    c = localcluster.temp_cluster(full=True)
    try:
        c.start()
        c.apply_inventory()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def api_cluster() -> Iterator[LocalCluster]:
    """etcd + kube-apiserver only, one per test module, for tests of the machinery that
    leave it intact (they use fresh namespaces or names)."""
    c = localcluster.temp_cluster(full=False)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """A private control plane for tests that break it (restarts, compaction)."""
    made: list[LocalCluster] = []

    def make(**kw: Any) -> LocalCluster:
        c = localcluster.temp_cluster(**kw)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="session")
def crds(cluster: LocalCluster) -> LocalCluster:
    """The shared cluster with our CRDs installed and Established."""
    install_crds(cluster)
    return cluster


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
