"""The real ``aim-controller`` CLI as a subprocess: start, probe, scrape, kill.

Running the console script (not an in-process manager) keeps RSS honest and
makes SIGKILL a real SIGKILL. :class:`RSSSampler` records the process's
resident set size over time; :meth:`OperatorProcess.peak_rss` reads the
kernel's high-water mark (VmHWM), which no sampling interval can miss.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .cluster import localcluster
from .metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
# The runtime-only venv (`make runtime-venv`: the image's dependencies) when present, so
# RSS is what ships; the dev venv otherwise (the quick benchmark test in `make test`).
RUNTIME_CLI = ROOT / ".venv-runtime" / "bin" / "aim-controller"
CLI = RUNTIME_CLI if RUNTIME_CLI.exists() else ROOT / ".venv" / "bin" / "aim-controller"


def _pdeathsig() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the harness


def cli_available() -> bool:
    """The operator's entry point exists and answers --help."""
    if not CLI.exists():
        return False
    try:
        res = subprocess.run([str(CLI), "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


class RSSSampler:
    """Samples one process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")

    def start(self) -> RSSSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), proc.memory_info().rss))
                self._stop.wait(self.interval)
        except psutil.Error:
            return

    @property
    def peak(self) -> int:
        return max((b for _, b in self.samples), default=0)

    def at(self, t: float) -> int:
        """The last sample at or before ``t`` (0 if none)."""
        best = 0
        for ts, b in self.samples:
            if ts > t:
                break
            best = b
        return best


@dataclass
class OperatorProcess:
    """One replica of the operator."""

    kubeconfig: Path
    log_path: Path
    identity: str = "bench-0"
    leader_elect: bool = False
    max_concurrent_reconciles: int = 10
    extra_args: Sequence[str] = ()
    operator_namespace: str = "aim-system"
    metrics_port: int = field(default_factory=localcluster.free_port)
    health_port: int = field(default_factory=localcluster.free_port)
    proc: subprocess.Popen[bytes] | None = None
    rss: RSSSampler | None = None
    starts: int = 0

    def argv(self) -> list[str]:
        args = [
            str(CLI), "--kubeconfig", str(self.kubeconfig),
            "--operator-namespace", self.operator_namespace,
            "--metrics-bind-address", f":{self.metrics_port}",
            "--health-probe-bind-address", f":{self.health_port}",
            "--max-concurrent-reconciles", str(self.max_concurrent_reconciles),
        ]
        if self.leader_elect:
            args += ["--leader-elect", "--leader-election-namespace", self.operator_namespace,
                     "--identity", self.identity]
        return args + list(self.extra_args)

    def start(self) -> OperatorProcess:
        if self.running:
            raise RuntimeError(f"{self.identity} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} {time.strftime('%H:%M:%S')}: "
                      f"{' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_pdeathsig,
            )
        self.starts += 1
        self.rss = RSSSampler(self.proc.pid).start()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    def _get(self, port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                        timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def healthy(self) -> bool:
        with contextlib.suppress(OSError):
            return self._get(self.health_port, "/readyz")[0] == 200
        return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Waits for /readyz (caches synced); raises with the log tail if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"aim-controller exited ({self.proc and self.proc.returncode});"
                                   f" log tail:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.25)
        raise TimeoutError(f"aim-controller not ready after {timeout}s; log tail:\n"
                           f"{self.log_tail()}")

    def metrics(self) -> Metrics:
        status, text = self._get(self.metrics_port, "/metrics", timeout=30)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return Metrics.parse(text)

    def metrics_or_none(self, attempts: int = 3) -> Metrics | None:
        """A scrape, retried (a busy replica may time out); None if it never answers."""
        for i in range(attempts):
            try:
                return self.metrics()
            except (OSError, RuntimeError):
                if i + 1 < attempts:
                    time.sleep(1.0)
        return None

    def peak_rss(self) -> int:
        """The kernel's RSS high-water mark for the process (bytes), 0 if gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, RuntimeError):
            pass
        return self.rss.peak if self.rss else 0

    def current_rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, RuntimeError):
            return 0

    def cpu_seconds(self) -> float:
        """User + system CPU the operator has used so far (0 when it is not running)."""
        try:
            t = psutil.Process(self.pid).cpu_times()
        except (psutil.Error, RuntimeError):
            return 0.0
        return float(t.user + t.system)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Sends ``sig`` and waits for the exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.rss:
            self.rss.stop()
        return self.proc.returncode

    def stop(self) -> int | None:
        return self.kill(signal.SIGTERM)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_count(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0
