#!/usr/bin/env python3
"""A simulated AMD device-metrics-exporter for tests and the demo: ``/metrics`` serves
``gpu_gfx_activity`` (percent, a gauge) per GPU of each workload pod it is told of,
with the real exporter's workload labels (``gpu_id``, ``serial_number``, ``hostname``,
``pod``, ``namespace``, ``container``: Prometheus keeps them with ``honor_labels``,
as the AMD GPU operator's ServiceMonitor does).

Set a pod's activity: ``PUT /pods/<namespace>/<pod>`` with
``{"activity": 85, "gpus": 1, "container": "engine", "hostname": "node-0"}`` (only
``activity`` is required); ``DELETE`` the same path drops its series. In process:
:class:`GpuExporter` (``set`` / ``drop``).

CLI: ``amd_gpu_exporter.py [--port N]`` (default 5000, the real exporter's port).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from dataclasses import dataclass
from typing import Any

METRIC = "gpu_gfx_activity"


@dataclass(frozen=True)
class PodGpus:
    activity: float
    gpus: int = 1
    container: str = "engine"
    hostname: str = "kwok-node"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class GpuExporter:
    """The exporter's state and its HTTP server (a daemon thread once started)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], PodGpus] = {}
        self.server = http.server.ThreadingHTTPServer((host, port), self._handler())
        self.port = int(self.server.server_address[1])

    def set(self, namespace: str, pod: str, activity: float, **kw: Any) -> None:
        with self._lock:
            self._pods[(namespace, pod)] = PodGpus(float(activity), **kw)

    def drop(self, namespace: str, pod: str) -> None:
        with self._lock:
            self._pods.pop((namespace, pod), None)

    def text(self) -> str:
        lines = [f"# HELP {METRIC} GPU graphics engine activity (percent)",
                 f"# TYPE {METRIC} gauge"]
        with self._lock:
            pods = sorted(self._pods.items())
        serial = 0
        for (ns, pod), g in pods:
            for gpu in range(g.gpus):
                serial += 1
                labels = (f'gpu_id="{gpu}",serial_number="SIM{serial:06d}",'
                          f'hostname="{_label(g.hostname)}",pod="{_label(pod)}",'
                          f'namespace="{_label(ns)}",container="{_label(g.container)}"')
                lines.append(f"{METRIC}{{{labels}}} {g.activity:g}")
        return "\n".join(lines) + "\n"

    def start(self) -> GpuExporter:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, code: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _pod(self) -> tuple[str, str] | None:
                parts = self.path.strip("/").split("/")
                return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "pods" else None

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self._reply(404, "not found\n")
                    return
                self._reply(200, exporter.text(), "text/plain; version=0.0.4")

            def do_PUT(self) -> None:
                key = self._pod()
                if key is None:
                    self._reply(404, "PUT /pods/<namespace>/<pod>\n")
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length")
                                                          or 0)) or b"{}")
                    extra = {k: body[k] for k in ("gpus", "container", "hostname") if k in body}
                    exporter.set(*key, float(body["activity"]), **extra)
                except (ValueError, KeyError, TypeError) as err:
                    self._reply(400, f"bad body: {err}\n")
                    return
                self._reply(200, "ok\n")

            def do_DELETE(self) -> None:
                key = self._pod()
                if key is None:
                    self._reply(404, "DELETE /pods/<namespace>/<pod>\n")
                    return
                exporter.drop(*key)
                self._reply(200, "ok\n")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args()
    exporter = GpuExporter(args.host, args.port)
    print(f"serving {METRIC} on http://{args.host}:{exporter.port}/metrics", flush=True)
    exporter.server.serve_forever()


if __name__ == "__main__":
    main()
