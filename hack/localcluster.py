#!/usr/bin/env python3
"""A real local Kubernetes control plane for tests, the demo and the benchmarks.

Starts etcd and kube-apiserver (and on request kube-controller-manager,
kube-scheduler and kwok) from the pinned upstream binaries that
``hack/build-binaries.sh`` builds, on loopback with free ports, in one state
directory that holds TLS material, logs and an admin kubeconfig.

Invariants:
- every process we start is tracked in ``LocalCluster.procs`` and in
  ``<state>/pids``; ``stop()`` (also on interpreter exit) leaves none behind;
- in the default (attached) mode each child gets PR_SET_PDEATHSIG, so a
  SIGKILLed test runner does not leak a control plane either;
- ports stay fixed for the cluster's life, so a restarted kube-apiserver is
  reachable at the same URL (the chaos tests rely on it).

Metrics mode (``metrics=True``, opt-in; needs ``full``): a real resource metrics
pipeline. kwok simulates each pod's usage (``hack/kwok/metrics.yaml``: from the pod's
``aim.engine.amd.com/kwok-cpu-usage`` / ``-memory-usage`` annotations) and serves a
kubelet-style ``/metrics/resource`` per node; metrics-server (pinned, built by
``hack/build-binaries.sh``) scrapes it and is served behind the API aggregation layer
as ``v1beta1.metrics.k8s.io``, so the HPA controller and ``kubectl top`` work.

KEDA mode (``keda=True``, opt-in; needs ``metrics``): KEDA's operator and metrics
adapter (pinned, built by ``hack/build-binaries.sh``) as local processes, its CRDs
installed and the adapter served as ``v1beta1.external.metrics.k8s.io`` (the HPAs KEDA
creates read their triggers there). The operator and the adapter talk gRPC over mTLS
with a cert of the cluster's CA; KEDA's cert rotation and admission webhooks are off
(the webhooks only validate ScaledObjects, nothing here needs them).

CLI: ``localcluster.py up|down|status [--state-dir DIR] [--api-only] [--metrics] [--keda]
[--inventory F]``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
DEFAULT_INVENTORY = HACK / "inventory" / "default.yaml"
KWOK_STAGES = HACK / "kwok" / "stages.yaml"
KWOK_METRICS = HACK / "kwok" / "metrics.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# metrics-server scrapes <node InternalIP>:<--kubelet-port><this path>: kwok's per-node
# path (hack/kwok/metrics.yaml) on kwok's server port.
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"
EXTERNAL_METRICS_API_SERVICE = "v1beta1.external.metrics.k8s.io"
KEDA_NAMESPACE = "keda"


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def ensure_binaries() -> Path:
    """Builds (first time) or finds the pinned binaries; returns their directory."""
    res = subprocess.run(
        ["bash", str(HACK / "build-binaries.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(res.stdout.strip().splitlines()[-1])


def monitoring_crds() -> Path:
    """Fetches (first time) or finds the pinned Prometheus Operator CRDs (ServiceMonitor,
    PrometheusRule); returns their directory."""
    res = subprocess.run(
        ["bash", str(HACK / "fetch-crds.sh"), "monitoring"],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(res.stdout.strip().splitlines()[-1])


def keda_assets() -> Path:
    """Builds (first time) or finds the pinned KEDA; returns its directory (the
    keda-operator and keda-adapter binaries, its CRDs in ``crds/``)."""
    res = subprocess.run(
        ["bash", str(HACK / "build-binaries.sh"), "keda"],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(res.stdout.strip().splitlines()[-1])


def gateway_api_crds() -> Path:
    """Fetches (first time) or finds the pinned Gateway API HTTPRoute CRD; returns its
    directory."""
    res = subprocess.run(
        ["bash", str(HACK / "fetch-crds.sh"), "gateway-api"],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(res.stdout.strip().splitlines()[-1])


WAIT_NO_CONDITIONS = ".status.conditions accessor error"


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call that says what kubectl said (a failing test shows it)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()[-2000:]}"


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for the local ends of outgoing connections (and for bind(0))."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_handed_out: set[int] = set()
_port_rng = random.Random()


def free_port() -> int:
    """A loopback port no one listens on, outside the ephemeral range, never handed
    out twice by this process.

    Why not bind(0): it returns a port from the ephemeral range, and a server started
    later on that port races every outgoing connection on the machine (kubectl, the
    apiserver's etcd clients, ...): one of them may take the port as its local end first,
    and the server dies with "address already in use" (a CI run lost its whole control
    plane to this). Outside that range only other listeners can clash, and those are
    ours: this process never reuses a port, others pick at random among ~20k.
    """
    low, high = ephemeral_port_range()
    candidates = [r for r in ((10000, low - 1), (high + 1, 65535)) if r[0] <= r[1]]
    if not candidates:
        candidates = [(1024, 65535)]  # the whole range is ephemeral: no better choice
    for _ in range(1000):
        first, last = _port_rng.choice(candidates)
        port = _port_rng.randint(first, last)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port outside the ephemeral range")


def _pdeathsig() -> None:
    # Children die with the process that started them, even on SIGKILL.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d: Path) -> None:
    """CA, kube-apiserver serving cert, admin client cert, service-account keys."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "3650", "-subj", "/CN=aim-local-ca", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj, ext in (("apiserver", "/CN=kube-apiserver", "server.ext"),
                            ("admin", "/O=system:masters/CN=aim-admin", "client.ext")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "3650",
                 "-extfile", ext, cwd=d)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def make_front_proxy_pki(d: Path) -> None:
    """The aggregation layer's own CA and the client cert kube-apiserver presents to
    aggregated API servers (they trust the user headers only from this CA and name)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "front-proxy-ca.key",
             "-out", "front-proxy-ca.crt", "-days", "3650", "-subj", "/CN=aim-front-proxy-ca",
             cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "front-proxy-client.key",
             "-out", "front-proxy-client.csr", "-subj", "/CN=front-proxy-client", cwd=d)
    _openssl("x509", "-req", "-in", "front-proxy-client.csr", "-CA", "front-proxy-ca.crt",
             "-CAkey", "front-proxy-ca.key", "-CAcreateserial", "-out", "front-proxy-client.crt",
             "-days", "3650", "-extfile", "client.ext", cwd=d)


def make_keda_pki(pki: Path, d: Path) -> None:
    """KEDA's operator/adapter gRPC mTLS material, as KEDA reads it from its cert dir
    (ca.crt, tls.crt, tls.key): one cert of the cluster's CA for both ends, on 127.0.0.1."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "keda.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
             "-subj", "/CN=keda", cwd=d)
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", str(pki / "ca.crt"), "-CAkey",
             str(pki / "ca.key"), "-CAcreateserial", "-out", "tls.crt", "-days", "3650",
             "-extfile", "keda.ext", cwd=d)
    shutil.copyfile(pki / "ca.crt", d / "ca.crt")


def kubeconfig_text(server: str, pki: Path) -> str:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "aim-local", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "aim-admin", "user": {
            "client-certificate": str(pki / "admin.crt"),
            "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "aim-local", "context": {
            "cluster": "aim-local", "user": "aim-admin"}}],
        "current-context": "aim-local",
    }
    return yaml.safe_dump(cfg, sort_keys=False)


@dataclass
class LocalCluster:
    """One local control plane living in ``state_dir``."""

    state_dir: Path
    bin_dir: Path
    full: bool = False
    watch_cache: bool = True
    attached: bool = True
    # The resource metrics pipeline (kwok usage -> metrics-server -> metrics.k8s.io); see
    # the module docstring. Off by default: other clusters are exactly as without it.
    metrics: bool = False
    # KEDA's operator and metrics adapter (see the module docstring); needs ``metrics``.
    keda: bool = False
    # Appended verbatim to kube-apiserver's command line (audit, feature gates, ...).
    extra_apiserver_args: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    # -- paths ---------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def keda_certs(self) -> Path:
        return self.state_dir / "keda-certs"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    def log(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 120.0) -> LocalCluster:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        if not (self.pki / "ca.crt").exists():
            make_pki(self.pki)
        if self.metrics and not self.full:
            raise ValueError("metrics=True needs full=True (kwok simulates the usage)")
        if self.keda and not self.metrics:
            raise ValueError("keda=True needs metrics=True (the aggregation layer)")
        if self.metrics and not (self.pki / "front-proxy-client.crt").exists():
            make_front_proxy_pki(self.pki)
        if self.keda and not (self.keda_certs / "tls.crt").exists():
            make_keda_pki(self.pki, self.keda_certs)
        for name in ("etcd", "etcd-peer", "apiserver"):
            self.ports.setdefault(name, free_port())
        if self.metrics:
            # Fixed: metrics-server and the APIService name them.
            for name in ("kwok", "metrics-server"):
                self.ports.setdefault(name, free_port())
        if self.keda:
            for name in ("keda-grpc", "keda-adapter"):
                self.ports.setdefault(name, free_port())
        self.kubeconfig.write_text(kubeconfig_text(self.server, self.pki))
        if self.attached:
            atexit.register(self.stop)
        self.start_etcd()
        self.start_apiserver(timeout=timeout)
        if self.full:
            self.start_controller_manager()
            self.start_scheduler()
            self.start_kwok()
            self.wait_default_service_account(timeout)
            if self.metrics:
                self.start_metrics_server()
                self.register_metrics_api(timeout)
            if self.keda:
                self.start_keda(timeout)
        self._write_state()
        return self

    def wait_default_service_account(self, timeout: float) -> None:
        # Pods need it (ServiceAccount admission); its arrival also proves the
        # controller-manager is up and reconciling.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in ("controller-manager", "scheduler", "kwok"):
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.log(name)}:\n"
                                       + self.log(name).read_text()[-3000:])
            if self.kubectl("get", "serviceaccount", "default", "-n", "default",
                            check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError("the default ServiceAccount never appeared (controller-manager?)")

    def _spawn(self, name: str, argv: Sequence[str],
               env: dict[str, str] | None = None) -> None:
        logf = open(self.log(name), "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            list(argv), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True, preexec_fn=_pdeathsig if self.attached else None,
        )
        logf.close()
        self.procs[name] = proc
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "server": self.server if "apiserver" in self.ports else None,
            "kubeconfig": str(self.kubeconfig),
            "binDir": str(self.bin_dir),
            "ports": self.ports,
            "pids": {k: p.pid for k, p in self.procs.items() if p.poll() is None},
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    def start_etcd(self) -> None:
        data = self.state_dir / "etcd-data"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name=aim-local", f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=aim-local={peer}", "--unsafe-no-fsync=true",
            "--quota-backend-bytes=8589934592", "--log-level=warn",
        ])
        self._wait_http(f"{self.etcd_url}/health", lambda body: b'"true"' in body, 60, "etcd")

    def start_apiserver(self, timeout: float = 120.0) -> None:
        p = self.pki
        args = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            # A /16: every AIMEndpoint has a ClusterIP Service, and a /24 holds 254.
            "--service-cluster-ip-range=10.0.0.0/16",
            "--authorization-mode=RBAC", "--allow-privileged=true",
            f"--watch-cache={'true' if self.watch_cache else 'false'}",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--v=0",
        ]
        if not self.full:
            # No controller-manager means no default ServiceAccount in new namespaces.
            args.append("--disable-admission-plugins=ServiceAccount")
        if self.metrics:
            # The aggregation layer: kube-apiserver proxies metrics.k8s.io to metrics-server
            # with the front-proxy client cert and the caller's identity in these headers.
            args += [
                f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            ]
        self._spawn("apiserver", args + list(self.extra_apiserver_args))
        self.wait_ready(timeout)

    def start_controller_manager(self) -> None:
        p = self.pki
        # Metrics mode: the HPA controller looks every 5 s (default 15 s), so tests of
        # its decisions wait less; its decisions themselves are the upstream ones.
        hpa = ["--horizontal-pod-autoscaler-sync-period=5s"] if self.metrics else []
        self._spawn("controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--controllers=*,-node-ipam-controller,-cloud-node-lifecycle-controller,"
            "-service-lb-controller,-node-route-controller",
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--concurrent-gc-syncs=40",
            *hpa,
            "--v=0",
        ])

    def start_scheduler(self) -> None:
        self._spawn("scheduler", [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--v=0",
        ])

    def start_kwok(self) -> None:
        if self.metrics:
            # Nodes at 127.0.0.1 and kwok's server on TLS as well (metrics-server speaks
            # https to "kubelets"), serving the simulated usage of hack/kwok/metrics.yaml.
            p = self.pki
            extra = [f"--config={KWOK_METRICS}", "--node-ip=127.0.0.1",
                     f"--tls-cert-file={p / 'apiserver.crt'}",
                     f"--tls-private-key-file={p / 'apiserver.key'}",
                     f"--server-address=127.0.0.1:{self.ports['kwok']}"]
        else:
            extra = ["--node-ip=10.1.0.1", f"--server-address=127.0.0.1:{free_port()}"]
        self._spawn("kwok", [
            str(self.bin_dir / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            f"--config={KWOK_STAGES}",
            "--cidr=10.244.0.0/16",
            "--node-lease-duration-seconds=40",
            *extra,
        ])

    def start_metrics_server(self) -> None:
        """metrics-server as a local process: it scrapes kwok's per-node resource metrics
        every 10 s (its minimum resolution) and serves metrics.k8s.io on its port, with
        a self-signed serving cert and the admin identity towards kube-apiserver."""
        self._spawn("metrics-server", [
            str(self.bin_dir / "metrics-server"),
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['metrics-server']}",
            f"--cert-dir={self.state_dir / 'metrics-server-certs'}",
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-port={self.ports['kwok']}",
            "--metric-resolution=10s", "--kubelet-request-timeout=5s",
            "--v=0",
        ])

    def start_keda(self, timeout: float = 120.0) -> None:
        """KEDA's CRDs, its operator and its metrics adapter (registered as the external
        metrics API), without leader election, cert rotation or webhooks."""
        assets = keda_assets()
        self.kubectl("create", "namespace", KEDA_NAMESPACE, check=False)
        for crd in sorted((assets / "crds").glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--field-manager=aim-localcluster",
                         "-f", str(crd))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/scaledobjects.keda.sh")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "WATCH_NAMESPACE": "",
               "POD_NAMESPACE": KEDA_NAMESPACE,
               "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE}
        certs = self.keda_certs
        self._spawn("keda-operator", [
            str(assets / "keda-operator"), f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--enable-cert-rotation=false",
            "--enable-prometheus-metrics=false",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-service-bind-address=127.0.0.1:{self.ports['keda-grpc']}",
            f"--cert-dir={certs}", f"--ca-dir={certs}",
            "--zap-log-level=info", "--zap-encoder=console",
        ], env=env)
        self._spawn("keda-adapter", [
            str(assets / "keda-adapter"), f"--kubeconfig={self.kubeconfig}",
            f"--lister-kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['keda-adapter']}",
            f"--cert-dir={certs}", f"--tls-cert-file={certs / 'tls.crt'}",
            f"--tls-private-key-file={certs / 'tls.key'}",
            f"--metrics-service-address=127.0.0.1:{self.ports['keda-grpc']}",
            f"--port={free_port()}", "--zap-log-level=info", "--zap-encoder=console",
        ], env=env)
        self.register_api_service(self.external_metrics_api_manifests(),
                                  EXTERNAL_METRICS_API_SERVICE, "keda-adapter", timeout)

    def external_metrics_api_manifests(self) -> list[dict[str, Any]]:
        """external.metrics.k8s.io served by KEDA's adapter (as for metrics-server)."""
        svc = {"name": "keda-metrics-apiserver", "namespace": KEDA_NAMESPACE}
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": dict(svc),
             "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": EXTERNAL_METRICS_API_SERVICE},
             "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1",
                      "service": {**svc, "port": self.ports["keda-adapter"]},
                      "insecureSkipTLSVerify": True,
                      "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]

    def metrics_api_manifests(self) -> list[dict[str, Any]]:
        """The APIService for metrics.k8s.io and the Service it names. An ExternalName
        Service to 127.0.0.1 (as kwokctl does): Endpoints and EndpointSlices may not
        hold loopback addresses, and nothing routes a ClusterIP on this machine."""
        svc = {"name": "metrics-server", "namespace": "kube-system"}
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": dict(svc),
             "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": METRICS_API_SERVICE},
             "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                      "service": {**svc, "port": self.ports["metrics-server"]},
                      "insecureSkipTLSVerify": True,
                      "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]

    def register_metrics_api(self, timeout: float = 120.0) -> None:
        """Applies :meth:`metrics_api_manifests` and waits for the APIService to be
        Available (kube-apiserver reached metrics-server through the aggregator)."""
        self.register_api_service(self.metrics_api_manifests(), METRICS_API_SERVICE,
                                  "metrics-server", timeout)

    def register_api_service(self, manifests: list[dict[str, Any]], name: str,
                             component: str, timeout: float = 120.0) -> None:
        """Applies an APIService (and its Service) and waits for it to be Available."""
        self.kubectl("apply", "--server-side", "--field-manager=aim-localcluster", "-f", "-",
                     input=yaml.safe_dump_all(manifests))
        query = '{.status.conditions[?(@.type=="Available")].status}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in ("keda-operator", component):
                proc = self.procs.get(c)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{c} exited; see {self.log(c)}:\n"
                                       + self.log(c).read_text()[-3000:])
            res = self.kubectl("get", "apiservice", name, "-o",
                               f"jsonpath={query}", check=False)
            if res.stdout.strip() == "True":
                return
            time.sleep(0.5)
        raise TimeoutError(f"APIService {name} never became Available; see "
                           f"{self.log(component)}")

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._write_state()

    def stop(self) -> None:
        for name in ("keda-adapter", "keda-operator", "metrics-server", "kwok", "scheduler",
                     "controller-manager", "apiserver", "etcd"):
            self.stop_component(name)
        for name in list(self.procs):
            self.stop_component(name)

    # -- readiness -----------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _wait_http(self, url: str, ok: Any, timeout: float, what: str,
                   ctx: ssl.SSLContext | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name in ("etcd", "apiserver"):
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.log(name)}:\n"
                                       + self.log(name).read_text()[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
                    body = r.read()
                    if ok(body):
                        return
                    last = body.decode(errors="replace")
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.25)
        raise TimeoutError(f"{what} not ready after {timeout}s: {last}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        self._wait_http(f"{self.server}/readyz", lambda b: b.strip() == b"ok", timeout,
                        "kube-apiserver", ctx=self._ssl_context())

    # -- helpers -------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        deadline = time.monotonic() + timeout
        while True:
            res = subprocess.run(
                [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                input=input, text=True, capture_output=True,
                timeout=max(deadline - time.monotonic(), 1.0),
            )
            # kubectl wait on an object that has no status.conditions yet (a CRD just
            # created) fails at once instead of waiting: wait for the list to appear.
            if (res.returncode != 0 and args[:1] == ("wait",)
                    and WAIT_NO_CONDITIONS in res.stderr and time.monotonic() < deadline):
                time.sleep(0.5)
                continue
            break
        if check and res.returncode != 0:
            raise KubectlError(res.returncode, res.args, res.stdout, res.stderr)
        return res

    def etcd_request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result

    def etcd_revision(self) -> int:
        # A range over one key returns the store's current revision in the header.
        return int(self.etcd_request("/v3/kv/range", {"key": "AA=="})["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compacts etcd at its current revision so older watches get 410 Gone."""
        rev = self.etcd_revision()
        self.etcd_request("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    # -- simulated GPU nodes ---------------------------------------------------
    def apply_inventory(self, inventory: Path = DEFAULT_INVENTORY) -> list[str]:
        nodes = list(inventory_nodes(yaml.safe_load(inventory.read_text())))
        if self.metrics:
            for n in nodes:
                n["metadata"]["annotations"][RESOURCE_METRICS_PATH_ANNOTATION] = (
                    f"/metrics/nodes/{n['metadata']['name']}/metrics/resource")
        self.kubectl("apply", "--server-side", "--field-manager=aim-localcluster", "-f", "-",
                     input=yaml.safe_dump_all(nodes))
        return [n["metadata"]["name"] for n in nodes]


def gpu_labels(gpu: dict[str, Any], count: int) -> dict[str, str]:
    """The labels AMD's node labeller writes for ``count`` GPUs of one model."""
    plain = {
        "device-id": str(gpu["deviceId"]),
        "product-name": str(gpu["productName"]),
        "family": str(gpu["family"]),
        "vram": str(gpu["vram"]),
        "cu-count": str(gpu["cuCount"]),
        "driver-version": str(gpu.get("driverVersion", "6.10.5")),
    }
    labels = {f"amd.com/gpu.{k}": v for k, v in plain.items()}
    labels["amd.com/gpu.count"] = str(count)
    # The beta forms are count-encoded: beta.amd.com/gpu.<key>.<value>=<count>.
    for k in ("device-id", "product-name", "family", "vram", "cu-count"):
        labels[f"beta.amd.com/gpu.{k}.{plain[k]}"] = str(count)
    return labels


def inventory_nodes(inv: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for group in inv.get("nodeGroups", []):
        for i in range(int(group.get("count", 1))):
            name = f"{group.get('prefix', 'kwok-' + group['name'])}-{i}"
            gpus = int(group.get("gpus", 0))
            labels = {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "type": "kwok",
                "node.kubernetes.io/instance-type": f"aim-sim-{group['name']}",
            }
            resources = {"cpu": str(group.get("cpu", "64")),
                         "memory": str(group.get("memory", "256Gi")), "pods": "110"}
            if gpus and group.get("gpu"):
                labels.update(gpu_labels(group["gpu"], gpus))
                resources["amd.com/gpu"] = str(gpus)
            for k, v in (group.get("extraResources") or {}).items():
                resources[k] = str(v)
            labels.update(group.get("labels") or {})
            yield {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {KWOK_ANNOTATION: "fake",
                                             "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": list(group.get("taints") or [])},
                "status": {"allocatable": resources, "capacity": dict(resources)},
            }


# -- CLI: a cluster that outlives the command (make up / make down) -------------
def _cli_up(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    if (state / "state.json").exists() and _alive(state):
        print(f"cluster already running: export KUBECONFIG={state / 'kubeconfig'}")
        return 0
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    if args.keda and not args.metrics:
        print("--keda needs --metrics", file=sys.stderr)
        return 2
    if args.metrics and args.api_only:
        print("--metrics needs the full cluster (not --api-only)", file=sys.stderr)
        return 2
    cluster = LocalCluster(state_dir=state, bin_dir=ensure_binaries(), full=not args.api_only,
                           attached=False, metrics=args.metrics, keda=args.keda)
    cluster.start()
    if not args.api_only:
        names = cluster.apply_inventory(Path(args.inventory))
        print(f"simulated nodes: {' '.join(names)}")
    print(f"cluster up: export KUBECONFIG={cluster.kubeconfig}")
    if args.metrics:
        print("metrics: metrics-server serves metrics.k8s.io (kubectl top pods, the HPA);"
              " a pod's simulated usage: annotation aim.engine.amd.com/kwok-cpu-usage")
    return 0


def _alive(state: Path) -> bool:
    pids = json.loads((state / "state.json").read_text()).get("pids", {})
    for pid in pids.values():
        try:
            os.kill(int(pid), 0)
            return True
        except OSError:
            continue
    return False


def _cli_down(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    f = state / "state.json"
    if not f.exists():
        return 0
    pids = json.loads(f.read_text()).get("pids", {})
    for pid in pids.values():
        with contextlib.suppress(OSError):
            os.killpg(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(state):
        time.sleep(0.2)
    for pid in pids.values():
        with contextlib.suppress(OSError):
            os.killpg(int(pid), signal.SIGKILL)
    f.unlink()
    print("cluster down")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    f = Path(args.state_dir).resolve() / "state.json"
    if not f.exists() or not _alive(f.parent):
        print("no cluster running")
        return 1
    print(f.read_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "down", "status", "build"])
    ap.add_argument("--state-dir", default=str(ROOT / "_out" / "cluster"))
    ap.add_argument("--inventory", default=str(DEFAULT_INVENTORY))
    ap.add_argument("--api-only", action="store_true",
                    help="only etcd and kube-apiserver (no controller-manager/scheduler/kwok)")
    ap.add_argument("--metrics", action="store_true",
                    help="also the resource metrics pipeline: kwok's simulated usage, "
                         "metrics-server and the metrics.k8s.io APIService")
    ap.add_argument("--keda", action="store_true",
                    help="also KEDA (operator and metrics adapter, external.metrics.k8s.io);"
                         " needs --metrics")
    args = ap.parse_args(argv)
    if args.command == "build":
        print(ensure_binaries())
        return 0
    return {"up": _cli_up, "down": _cli_down, "status": _cli_status}[args.command](args)


def temp_cluster(**kw: Any) -> LocalCluster:
    """A cluster in a fresh temporary directory (used by the pytest fixtures)."""
    d = Path(tempfile.mkdtemp(prefix="aim-cluster-"))
    return LocalCluster(state_dir=d, bin_dir=ensure_binaries(), **kw)


if __name__ == "__main__":
    sys.exit(main())
