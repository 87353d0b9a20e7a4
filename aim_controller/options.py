"""Command-line flags, in the style of controller-runtime managers."""

from __future__ import annotations

import argparse
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .builders.cache_objects import DEFAULT_OPERATOR_IMAGE
from .builders.durations import parse_duration
from .builders.settings import DEFAULT_IMAGES
from .machinery.reflector import DEFAULT_STALL_TIMEOUT
from .recipes.selection import DEFAULT_RESELECT_AFTER
from .reconcilers.canary_metrics import (
    DEFAULT_MAX_ERROR_RATE_INCREASE,
    DEFAULT_MAX_LATENCY_RATIO,
)


def _positive_float(s: str) -> float:
    v = float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _seconds(s: str) -> float:
    """Plain seconds (``20``, ``2.5``) or a Kubernetes/Go duration (``20s``, ``5m``,
    ``1h30m``, ``500ms``), as controller-runtime's flags take them."""
    try:
        v = float(s)
    except ValueError:
        try:
            v = float(parse_duration(s))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a duration such as 20s, 5m, 1h30m, 500ms or plain seconds, got {s!r}"
            ) from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite duration >= 0, got {s}")
    return v


def _positive_duration(s: str) -> float:
    v = _seconds(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _backend_image(s: str) -> tuple[str, str]:
    backend, sep, image = s.partition("=")
    if not sep or not backend or not image:
        raise argparse.ArgumentTypeError(f"expected BACKEND=IMAGE, got {s!r}")
    return backend, image


@dataclass
class Options:
    kubeconfig: str | None = None
    namespaces: list[str] = field(default_factory=list)
    operator_namespace: str = "aim-system"
    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    leader_elect: bool = False
    leader_election_id: str = "aim-controller.aim.engine.amd.com"
    leader_election_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    max_concurrent_reconciles: int = 10
    log_level: str = "info"
    log_format: str = "json"
    identity: str = ""
    backend_images: dict[str, str] = field(default_factory=dict)
    unschedulable_grace: float = DEFAULT_RESELECT_AFTER.total_seconds()
    resync_period: float = 0.0
    kube_api_qps: float = 50.0
    kube_api_burst: int = 100
    cache_wait_timeout: float = 900.0
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    cache_max_concurrent_downloads: int = 2
    watch_stall_timeout: float = DEFAULT_STALL_TIMEOUT
    canary_prometheus_url: str | None = None
    gpu_metrics_prometheus_url: str | None = None
    canary_max_error_rate_increase: float = DEFAULT_MAX_ERROR_RATE_INCREASE
    canary_max_latency_ratio: float = DEFAULT_MAX_LATENCY_RATIO


_DURATIONS = "A duration such as 20s, 5m, 1h30m or 500ms, or plain seconds."


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aim-controller",
        description="Kubernetes operator for LLM inference endpoints on AMD GPU clusters.",
        epilog="The AIMCache Jobs run the same binary with a subcommand first: "
               "aim-controller cache-download --help, aim-controller cache-clean --help.",
    )
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                   help="Path to a kubeconfig. Without it, the in-cluster config is used.")
    p.add_argument("--namespace", dest="namespaces", action="append", default=[],
                   help="Namespace to watch (repeatable). Default: all namespaces.")
    p.add_argument("--operator-namespace", default=os.environ.get("POD_NAMESPACE", "aim-system"),
                   help="Namespace of the operator, where the built-in recipe catalog lives.")
    p.add_argument("--metrics-bind-address", default=":8080",
                   help='Address of the /metrics endpoint ("0" disables).')
    p.add_argument("--health-probe-bind-address", default=":8081",
                   help='Address of /healthz and /readyz ("0" disables).')
    p.add_argument("--leader-elect", action="store_true",
                   help="Enable leader election: only the replica holding the Lease reconciles.")
    p.add_argument("--leader-election-id", default="aim-controller.aim.engine.amd.com",
                   help="Name of the Lease used for leader election.")
    p.add_argument("--leader-election-namespace", default=None,
                   help="Namespace of the Lease (default: --operator-namespace).")
    p.add_argument("--leader-elect-lease-duration", dest="lease_duration",
                   metavar="DURATION", type=_positive_duration, default=15.0,
                   help=f"Lease duration (default 15s). {_DURATIONS}")
    p.add_argument("--leader-elect-renew-deadline", dest="renew_deadline",
                   metavar="DURATION", type=_positive_duration, default=10.0,
                   help=f"Renew deadline (default 10s). {_DURATIONS}")
    p.add_argument("--leader-elect-retry-period", dest="retry_period",
                   metavar="DURATION", type=_positive_duration, default=2.0,
                   help=f"Retry period (default 2s). {_DURATIONS}")
    p.add_argument("--max-concurrent-reconciles", type=_positive_int, default=10,
                   help="Workers per controller.")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="json", choices=["json", "console"])
    p.add_argument("--identity", default="",
                   help="Leader-election identity (default: hostname_random).")
    p.add_argument("--backend-image", dest="backend_images", action="append",
                   type=_backend_image, default=[],
                   help="Container image per backend, BACKEND=IMAGE (repeatable). Defaults: "
                        + ", ".join(f"{k}={v}" for k, v in sorted(DEFAULT_IMAGES.items())))
    p.add_argument("--unschedulable-grace", metavar="DURATION", type=_positive_duration,
                   default=DEFAULT_RESELECT_AFTER.total_seconds(),
                   help="How long an endpoint's pods may stay unschedulable before the recipe "
                        f"is re-selected (default 5m). {_DURATIONS}")
    p.add_argument("--cache-wait-timeout", metavar="DURATION", type=_positive_duration,
                   default=900.0,
                   help="How long an endpoint waits for an AIMCache that is downloading its "
                        "model before it downloads the model itself (default 15m). "
                        f"{_DURATIONS}")
    p.add_argument("--operator-image",
                   default=os.environ.get("OPERATOR_IMAGE") or DEFAULT_OPERATOR_IMAGE,
                   help="Image of the AIMCache download and cleanup Jobs: the operator's own "
                        f"(env OPERATOR_IMAGE; default {DEFAULT_OPERATOR_IMAGE}).")
    p.add_argument("--cache-max-concurrent-downloads", type=_positive_int, default=2,
                   help="Download Jobs one AIMCache runs at once (default 2).")
    p.add_argument("--canary-prometheus-url", metavar="URL", default=None,
                   help="Prometheus (e.g. http://prometheus.monitoring:9090) whose engine "
                        "metrics decide canaries too: the canary's error rate and p95 "
                        "latency against the stable pods' over its duration (default: "
                        "none, pod health alone).")
    p.add_argument("--gpu-metrics-prometheus-url", metavar="URL", default=None,
                   help="Prometheus (e.g. http://prometheus.monitoring:9090) that scrapes "
                        "the AMD device metrics exporter: where KEDA is installed, an "
                        "endpoint's scaling.targetGPUUtilization becomes a KEDA ScaledObject "
                        "with a Prometheus trigger on its pods' gpu_gfx_activity instead of "
                        "the HPA (default: none; the HPA then scales on CPU/memory, or on a "
                        "custom metrics API's Pods metric where one is served).")
    p.add_argument("--canary-max-error-rate-increase", type=_positive_float,
                   default=DEFAULT_MAX_ERROR_RATE_INCREASE, metavar="FRACTION",
                   help="With --canary-prometheus-url: how much the canary's share of 5xx "
                        "responses may exceed the stable's (default "
                        f"{DEFAULT_MAX_ERROR_RATE_INCREASE:g}, one point).")
    p.add_argument("--canary-max-latency-ratio", type=_positive_float,
                   default=DEFAULT_MAX_LATENCY_RATIO, metavar="RATIO",
                   help="With --canary-prometheus-url: the canary's p95 latency at most this "
                        f"times the stable's (default {DEFAULT_MAX_LATENCY_RATIO:g}).")
    p.add_argument("--resync-period", metavar="DURATION", type=_seconds, default=0.0,
                   help=f"Time between full resyncs of the caches (default 0: none). {_DURATIONS}")
    p.add_argument("--kube-api-qps", type=_positive_float, default=50.0,
                   help="Sustained requests per second to the API server.")
    p.add_argument("--kube-api-burst", type=_positive_int, default=100,
                   help="Request burst to the API server.")
    p.add_argument("--watch-stall-timeout", metavar="DURATION", type=_positive_duration,
                   default=DEFAULT_STALL_TIMEOUT,
                   help="A watch that delivers nothing, not even a bookmark, for this long is "
                        "dropped and resumed from its last resourceVersion (a proxy or peer "
                        "that keeps the connection open but stopped forwarding; default "
                        f"{DEFAULT_STALL_TIMEOUT:.0f}s, 2.5x the API server's bookmark "
                        f"interval). {_DURATIONS}")
    return p


def parse(argv: Sequence[str] | None = None) -> Options:
    ns = parser().parse_args(argv)
    if ns.renew_deadline >= ns.lease_duration:
        parser().error("--leader-elect-renew-deadline must be shorter than the lease duration")
    if ns.retry_period >= ns.renew_deadline:
        parser().error("--leader-elect-retry-period must be shorter than the renew deadline")
    opts = Options(**{k: v for k, v in vars(ns).items() if k != "backend_images"})
    opts.backend_images = dict(ns.backend_images)
    if not opts.identity:
        opts.identity = f"{socket.gethostname()}_{os.urandom(4).hex()}"
    if opts.leader_election_namespace is None:
        opts.leader_election_namespace = opts.operator_namespace
    return opts
