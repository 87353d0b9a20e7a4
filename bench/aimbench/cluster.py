"""The local control plane, sized and instrumented for the benchmarks.

:class:`BenchCluster` is hack/localcluster.py's ``LocalCluster`` plus an audit
log of the operator's own requests only (user ``aim-controller``, level
Metadata), so reads at steady state can be told apart from the watch
re-establishments that a client-side GET counter cannot distinguish. The
operator connects with its own client certificate (CN ``aim-controller``,
group ``system:masters``) through :attr:`BenchCluster.operator_kubeconfig`.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))

import localcluster  # noqa: E402
from localcluster import LocalCluster, ensure_binaries, kubeconfig_text  # noqa: E402

CRD_DIR = ROOT / "manifests" / "crd"
CATALOG_DIR = ROOT / "manifests" / "catalog"
OPERATOR_USER = "aim-controller"
OPERATOR_NAMESPACE = "aim-system"
GPUS_PER_NODE = 8

MI300X = {
    "deviceId": "74a1", "productName": "AMD_Instinct_MI300X_OAM", "family": "AI",
    "vram": "192G", "cuCount": "304", "driverVersion": "6.10.5",
}

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


def gpu_inventory(gpus_needed: int, *, headroom: float = 1.25, spare_nodes: int = 1,
                  prefix: str = "kwok-gpu") -> dict[str, Any]:
    """An inventory of 8-GPU MI300X nodes with room for ``gpus_needed`` GPUs plus headroom
    (and ``spare_nodes`` more, so losing one node never starves the endpoints)."""
    nodes = math.ceil(gpus_needed * headroom / GPUS_PER_NODE) + spare_nodes
    return {"nodeGroups": [{
        "name": "mi300x", "prefix": prefix, "count": nodes, "gpus": GPUS_PER_NODE,
        "cpu": "192", "memory": "2Ti", "gpu": dict(MI300X),
    }]}


@dataclass
class BenchCluster(LocalCluster):
    """A LocalCluster with the bench's apiserver flags, an operator identity and audit."""

    audit: bool = True
    keep: bool = False  # leave the state directory behind (logs) after dispose()
    _audit: list[tuple[float, dict[str, Any]]] = field(default_factory=list, repr=False)
    _audit_offset: int = 0

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "logs" / "audit.log"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.state_dir / "operator.kubeconfig"

    def cpu_by_component(self) -> dict[str, float]:
        """User + system CPU seconds each control-plane process has used so far."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                t = psutil.Process(proc.pid).cpu_times()
            except psutil.Error:
                continue
            out[name] = float(t.user + t.system)
        return out

    def start(self, timeout: float = 180.0) -> BenchCluster:
        if self.audit:
            policy = self.state_dir / "audit-policy.yaml"
            self.state_dir.mkdir(parents=True, exist_ok=True)
            policy.write_text(yaml.safe_dump(AUDIT_POLICY))
            self.extra_apiserver_args = [
                f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-maxsize=0",
                "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s",
                *self.extra_apiserver_args]
        super().start(timeout)
        self._make_operator_identity()
        return self

    def _make_operator_identity(self) -> None:
        p = self.pki
        if not (p / "operator.crt").exists():
            run = [("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "operator.key",
                    "-out", "operator.csr", "-subj", f"/O=system:masters/CN={OPERATOR_USER}"),
                   ("x509", "-req", "-in", "operator.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "operator.crt", "-days", "30",
                    "-extfile", "client.ext")]
            for args in run:
                subprocess.run(["openssl", *args], cwd=p, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cfg = yaml.safe_load(kubeconfig_text(self.server, p))
        cfg["users"][0]["user"] = {"client-certificate": str(p / "operator.crt"),
                                   "client-key": str(p / "operator.key")}
        self.operator_kubeconfig.write_text(yaml.safe_dump(cfg, sort_keys=False))

    # -- setup -----------------------------------------------------------------
    def install(self) -> None:
        """CRDs (Established), the operator namespace and, where generated, the catalog."""
        self.kubectl("apply", "--server-side", "--field-manager=aim-bench", "-f", str(CRD_DIR))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/aimendpoints.aim.engine.amd.com", "crd/aimrecipes.aim.engine.amd.com",
                     "crd/aimcaches.aim.engine.amd.com")
        self.ensure_namespace(OPERATOR_NAMESPACE)
        if CATALOG_DIR.is_dir() and any(CATALOG_DIR.glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--field-manager=aim-bench",
                         "-n", OPERATOR_NAMESPACE, "-f", str(CATALOG_DIR))

    def ensure_namespace(self, name: str) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=aim-bench", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": name}}))

    def add_gpu_nodes(self, inventory: dict[str, Any], timeout: float = 180.0) -> list[str]:
        """Creates the inventory's nodes and waits until kwok reports each Ready."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False,
                                         dir=self.state_dir) as f:
            yaml.safe_dump(inventory, f)
        names = self.apply_inventory(Path(f.name))
        self.wait_nodes_ready(names, timeout)
        return names

    def ready_nodes(self) -> set[str]:
        items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return {n["metadata"]["name"] for n in items
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (n.get("status") or {}).get("conditions") or [])}

    def wait_nodes_ready(self, names: Sequence[str], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        missing = set(names)
        while missing:
            missing = set(names) - self.ready_nodes()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} nodes never became Ready: "
                                   f"{sorted(missing)[:5]}")
            time.sleep(1.0)

    def restart_apiserver(self, down_seconds: float = 0.0, *, watch_cache: bool | None = None,
                          sig: int = signal.SIGKILL) -> None:
        """Kills kube-apiserver (SIGKILL by default: SIGTERM makes it drain for ~20 s,
        serving all the while), waits ``down_seconds``, starts it again on the same port
        with the same flags (or the watch cache switched as asked)."""
        self.stop_component("apiserver", sig)
        if down_seconds:
            time.sleep(down_seconds)
        if watch_cache is not None:
            self.watch_cache = watch_cache
        self.start_apiserver(timeout=120.0)

    # -- audit -----------------------------------------------------------------
    def audit_events(self, since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
        """The operator's requests (ResponseComplete, and ResponseStarted for watches)
        received in [since, until) (Unix seconds)."""
        self._read_audit()
        return [ev for t, ev in self._audit if since <= t < until]

    def _read_audit(self) -> None:
        if not self.audit_log.exists():
            return
        with open(self.audit_log, "rb") as f:
            f.seek(self._audit_offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for next time
        self._audit_offset += end
        for line in chunk[:end].splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                stage, verb = ev.get("stage"), ev.get("verb")
                # One record per request: watches when they start, the rest when done.
                if (stage == "ResponseStarted") != (verb == "watch"):
                    continue
                if stage not in ("ResponseComplete", "ResponseStarted"):
                    continue
                self._audit.append((_rfc3339(ev.get("requestReceivedTimestamp", "")), ev))


    def operator_writes(self, since: float = 0.0, until: float = float("inf"), *,
                        include_leases: bool = False) -> list[dict[str, Any]]:
        """The operator's writes (anything but get/list/watch) in [since, until)."""
        return [e for e in self.audit_events(since, until)
                if e.get("verb") not in ("get", "list", "watch")
                and (include_leases or (e.get("objectRef") or {}).get("resource") != "leases")]

    def wait_operator_quiet(self, quiet_for: float, limit: float) -> float:
        """Waits until the operator has written nothing but Lease renewals for
        ``quiet_for`` seconds from now on (or ``limit`` passes); returns the seconds
        waited. Forward-looking on purpose: a change the caller just waited for (a pod
        gone) may still cause writes after a delay."""
        start = time.time()
        while True:
            time.sleep(1.0)
            now = time.time()
            # The audit backend flushes every second: look a little behind.
            recent = self.operator_writes(start)
            last = max((_rfc3339(e.get("requestReceivedTimestamp", "")) for e in recent),
                       default=start)
            if now - 1.5 - last >= quiet_for or now - start > limit:
                return now - start


def audit_verbs(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(e.get("verb")) for e in events).items()))


def audit_writes(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Writes by "verb resource[/subresource]" (``patch aimendpoints/status``): which
    requests an endpoint's way to Ready costs."""
    out: Counter[str] = Counter()
    for e in events:
        verb = str(e.get("verb"))
        if verb in ("get", "list", "watch"):
            continue
        ref = e.get("objectRef") or {}
        sub = ref.get("subresource")
        out[f"{verb} {ref.get('resource')}{'/' + sub if sub else ''}"] += 1
    return dict(sorted(out.items()))


def _rfc3339(s: str) -> float:
    from datetime import datetime
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def new_cluster(*, watch_cache: bool = True, keep: bool = False,
                base: Path | None = None) -> BenchCluster:
    """A started full cluster (kcm, scheduler, kwok) in a fresh directory, CRDs installed."""
    d = Path(tempfile.mkdtemp(prefix="aim-bench-", dir=base))
    c = BenchCluster(state_dir=d, bin_dir=ensure_binaries(), full=True, watch_cache=watch_cache,
                     keep=keep)
    try:
        c.start()
        c.install()
    except BaseException:
        c.stop()
        raise
    return c


def dispose(c: BenchCluster) -> None:
    c.stop()
    if not c.keep:
        shutil.rmtree(c.state_dir, ignore_errors=True)


__all__ = ["BenchCluster", "audit_verbs", "dispose", "gpu_inventory", "localcluster",
           "new_cluster"]
