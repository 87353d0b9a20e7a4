"""Ports for the local control plane's servers (hack/localcluster.py ``free_port``).

A server told to listen on a port chosen earlier races every outgoing connection on
the machine when that port lies in the kernel's ephemeral range (a CI run lost its
controller-manager to "address already in use" that way). These pin the rule: never in
that range, never the same port twice, free when handed out.
"""

from __future__ import annotations

import socket

import localcluster
import pytest


def test_ports_are_outside_the_ephemeral_range_distinct_and_free() -> None:
    low, high = localcluster.ephemeral_port_range()
    ports = [localcluster.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(not (low <= p <= high) for p in ports), sorted(p for p in ports if low <= p <= high)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # would raise if anything listened there


def test_a_port_someone_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # The range below the "ephemeral" one is just the busy port: the only candidate
        # outside it that is not free is skipped in favour of the range above.
        monkeypatch.setattr(localcluster, "ephemeral_port_range", lambda: (busy + 1, 65000))
        monkeypatch.setattr(localcluster, "_handed_out", set(range(10000, busy)))
        for _ in range(20):
            port = localcluster.free_port()
            assert port != busy and port > 65000
