"""PromQL label selectors for one endpoint's series (shared by alerts and dashboard).

Assumed labels:

* engine metrics (``vllm:*``), scraped through the endpoint's ServiceMonitor: the
  Prometheus Operator's target labels ``namespace`` and ``service`` (= ``<name>``);
* container and kube-state-metrics series: ``namespace``, ``pod``, ``container``;
* the AMD device metrics exporter (``gpu_gfx_activity``): its workload labels
  ``namespace`` and ``pod`` (its ServiceMonitor needs ``honorLabels: true``, as the
  AMD GPU operator configures it, or they arrive as ``exported_*``);
* the operator's own metrics (``aim_endpoint_*``): ``namespace`` and
  ``aimendpoint`` labels naming the endpoint (its ServiceMonitor needs
  ``honorLabels: true`` too, like kube-state-metrics').

Pods are matched by name, ``<name>-<pod-template-hash>-<suffix>``: Prometheus
anchors regexes, so an endpoint ``qwen`` does not match the pods of ``qwen-7b``.
"""

from __future__ import annotations

from .engine import CONTAINER_NAME
from .meta import EndpointRef

__all__ = ["endpoint_selector", "pod_name_regex", "pod_selector", "service_selector"]

# The alphabet of generated name suffixes (k8s.io/apimachinery/pkg/util/rand).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"


def _lit(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def pod_name_regex(name: str) -> str:
    return f"{name.replace('.', '[.]')}-{_SAFE}{{1,10}}-{_SAFE}{{5}}"


def service_selector(ref: EndpointRef) -> str:
    return f'namespace="{_lit(ref.namespace)}",service="{_lit(ref.name)}"'


def pod_selector(ref: EndpointRef, *, container: bool = False) -> str:
    sel = f'namespace="{_lit(ref.namespace)}",pod=~"{_lit(pod_name_regex(ref.name))}"'
    return f'{sel},container="{CONTAINER_NAME}"' if container else sel


def endpoint_selector(ref: EndpointRef) -> str:
    return f'namespace="{_lit(ref.namespace)}",aimendpoint="{_lit(ref.name)}"'
