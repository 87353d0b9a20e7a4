"""What the operator's Pod cache costs per pod: 20,000 simulated pods in the informer's
store, with the transform it had before (managedFields stripped) and with the slim pod.

The pods are copies of two pods captured from the local control plane
(``pod_templates.json``, as the API server serves them, managedFields included): an
AIMEndpoint's engine pod and a plain two-container Deployment's pod, both run by kwok.
They come in ReplicaSets of two, alternately an endpoint's and a Deployment's, spread
over 200 namespaces and 500 nodes. Each copy is decoded from JSON, as a watch event
is, with its own name, uid, resourceVersion, node and IPs, and its ReplicaSet's
owner, pod-template-hash and (ours) endpoint labels and config checksum; it is
transformed and added to an indexer with the Pod informer's indexes. The figure is
the memory the store holds at the end (tracemalloc), divided by the number of pods:
objects, index entries and keys.
"""

from __future__ import annotations

import gc
import hashlib
import json
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aim_controller.machinery.reflector import strip_managed_fields
from aim_controller.machinery.store import DEFAULT_INDEXERS, Indexer
from aim_controller.reconcilers.endpoint_observe import INDEX_ENDPOINT_PODS, index_pod_by_endpoint
from aim_controller.reconcilers.pod_slim import slim_pod

PODS = 20_000
NODES = 500
NAMESPACES = 200
REPLICAS = 2
TEMPLATES = Path(__file__).with_name("pod_templates.json")


def _template_bytes() -> list[bytes]:
    return [json.dumps(p).encode() for p in json.loads(TEMPLATES.read_text())]


def simulated_pods(n: int) -> Iterator[dict[str, Any]]:
    """``n`` pods, each freshly decoded (no string shared with another pod but what
    the JSON decoder shares within one document)."""
    templates = _template_bytes()
    for i in range(n):
        rs = i // REPLICAS
        pod = json.loads(templates[rs % len(templates)])
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        labels, annotations = meta["labels"], meta["annotations"]
        app = f"{'ep' if 'aim.engine.amd.com/endpoint' in labels else 'web'}-{rs}"
        template_hash = hashlib.sha1(app.encode()).hexdigest()[:10]
        meta["generateName"] = f"{app}-{template_hash}-"
        meta["name"] = f"{meta['generateName']}{i:05x}"
        meta["namespace"] = f"team-{rs % NAMESPACES}"
        meta["uid"] = str(uuid.UUID(int=i + 1))
        labels["pod-template-hash"] = template_hash
        for key in ("aim.engine.amd.com/endpoint", "app.kubernetes.io/instance"):
            if key in labels:
                labels[key] = app
        if "aim.engine.amd.com/config-checksum" in annotations:
            annotations["aim.engine.amd.com/config-checksum"] = hashlib.sha256(
                app.encode()).hexdigest()
        owner = meta["ownerReferences"][0]
        owner["name"] = f"{app}-{template_hash}"
        owner["uid"] = str(uuid.UUID(int=(1 << 64) + rs))
        meta["resourceVersion"] = str(1000 + i)
        spec["nodeName"] = f"kwok-mi300x-{i % NODES}"
        ip = f"10.{244 + i // 65536}.{i // 256 % 256}.{i % 256}"
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
        status["hostIP"] = f"10.1.{i % NODES // 256}.{i % NODES % 256}"
        yield pod


def store_bytes_per_pod(transform: Callable[[dict[str, Any]], dict[str, Any]],
                        n: int = PODS) -> float:
    """Bytes the Pod informer's store holds per pod after ``n`` pods went through
    ``transform``."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = Indexer({**DEFAULT_INDEXERS, INDEX_ENDPOINT_PODS: index_pod_by_endpoint})
        for pod in simulated_pods(n):
            store.add(transform(pod))
        del pod
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == n
    return held / n


def pod_cache_cost(n: int = PODS) -> dict[str, Any]:
    full = store_bytes_per_pod(strip_managed_fields, n)
    slim = store_bytes_per_pod(slim_pod, n)
    return {
        "pods": n,
        "bytesPerPodFull": round(full),
        "bytesPerPodSlim": round(slim),
        "ratio": round(full / slim, 1),
    }


if __name__ == "__main__":
    print(pod_cache_cost())
