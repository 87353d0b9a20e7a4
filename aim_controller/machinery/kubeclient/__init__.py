"""Our own Kubernetes REST client: kubeconfig/in-cluster config, auth, a pooled transport.

Why not kubernetes_asyncio: the operator sends only raw JSON requests, and
importing that package's client loads every generated model (+60 MB RSS).
"""

from .client import KubeClient
from .config import ClientConfig, ConfigError, load_incluster_config, load_kubeconfig
from .errors import ApiException

__all__ = ["ApiException", "ClientConfig", "ConfigError", "KubeClient", "load_incluster_config",
           "load_kubeconfig"]
