"""Where the API server is and how to trust and authenticate to it: a kubeconfig
file (as kubectl reads it) or the Pod's in-cluster service account."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from .credentials import (
    Credential,
    CredentialSource,
    ExecPlugin,
    ExecSpec,
    StaticCredential,
    TokenFile,
)

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS: Final = ("client.authentication.k8s.io/v1",
                            "client.authentication.k8s.io/v1beta1")


EXEC_EXTENSION: Final = "client.authentication.k8s.io/exec"


class ConfigError(ValueError):
    """The kubeconfig or in-cluster environment cannot be used."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything a :class:`KubeClient` needs to reach one API server.

    ``ca_pem``/``cert_pem``/``key_pem`` hold the PEM bytes themselves (files
    are read at load time); ``credentials`` supplies the per-request identity
    (None: only the client certificate, if any).
    """

    server: str
    ca_pem: bytes | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    credentials: CredentialSource | None = None


def _pem(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) or the file ``<key>`` (relative to the kubeconfig's dir)."""
    if data := entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(data), validate=False)
        except ValueError as e:
            raise ConfigError(f"{key}-data is not base64: {e}") from e
    if path := entry.get(key):
        return (base / str(path)).read_bytes()
    return None


def _named(doc: Mapping[str, Any], section: str, field: str, name: str) -> Mapping[str, Any]:
    for item in doc.get(section) or ():
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get(field) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{section} {name!r}: {field} is not a mapping")
            return value
    raise ConfigError(f"kubeconfig has no {field} named {name!r}")


def _exec_spec(raw: Mapping[str, Any], base: Path, cluster: Mapping[str, Any],
               ca_pem: bytes | None) -> ExecSpec:
    command = str(raw.get("command") or "")
    if not command:
        raise ConfigError("exec: command is required")
    api_version = str(raw.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(f"exec: apiVersion {api_version!r} is not one of {EXEC_API_VERSIONS}")
    # As client-go: a command with a path separator is relative to the kubeconfig,
    # a bare name is looked up on PATH.
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)
    env = {str(e["name"]): str(e.get("value", "")) for e in raw.get("env") or ()}
    info = None
    if raw.get("provideClusterInfo"):
        info = {"server": cluster.get("server"),
                "tls-server-name": cluster.get("tls-server-name"),
                "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify")),
                "certificate-authority-data":
                    base64.b64encode(ca_pem).decode() if ca_pem else None,
                "config": next((e.get("extension") for e in cluster.get("extensions") or ()
                                if isinstance(e, Mapping) and e.get("name") == EXEC_EXTENSION),
                               None)}
        info = {k: v for k, v in info.items() if v not in (None, "", False)}
    return ExecSpec(command=command, args=tuple(str(a) for a in raw.get("args") or ()),
                    env=env, api_version=api_version, cluster=info)


def parse_kubeconfig(doc: Mapping[str, Any], base: Path, context: str | None = None,
                     ) -> ClientConfig:
    """The config of ``context`` (default: current-context) in a parsed kubeconfig
    whose relative paths are relative to ``base``."""
    name = context or doc.get("current-context")
    if not name:
        raise ConfigError("kubeconfig has no current-context and none was named")
    ctx = _named(doc, "contexts", "context", str(name))
    cluster = _named(doc, "clusters", "cluster", str(ctx.get("cluster") or ""))
    user = _named(doc, "users", "user", str(ctx["user"])) if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no server")
    if cluster.get("proxy-url"):
        raise ConfigError(f"cluster {ctx.get('cluster')!r}: proxy-url is not supported")
    ca_pem = _pem(cluster, "certificate-authority", base)
    unsupported = sorted({"auth-provider", "username", "password", "as"} & set(user))
    if unsupported:
        raise ConfigError(f"user {ctx.get('user')!r}: unsupported fields {unsupported}")
    cert, key = _pem(user, "client-certificate", base), _pem(user, "client-key", base)
    if bool(cert) != bool(key):
        raise ConfigError(f"user {ctx.get('user')!r}: a client certificate needs its key")
    credentials: CredentialSource | None = None
    if user.get("exec"):
        credentials = ExecPlugin(_exec_spec(user["exec"], base, cluster, ca_pem))
    elif user.get("token"):
        credentials = StaticCredential(Credential(token=str(user["token"])))
    elif user.get("tokenFile"):
        credentials = TokenFile(base / str(user["tokenFile"]))
    return ClientConfig(
        server=server, ca_pem=ca_pem,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name")
        else None,
        cert_pem=cert, key_pem=key, credentials=credentials)


_FILE_FIELDS: Final = {"clusters": ("cluster", ("certificate-authority",)),
                       "users": ("user", ("client-certificate", "client-key", "tokenFile"))}


def _absolute(doc: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``doc`` with its file references made absolute (relative to ``base``, its directory)."""
    out = dict(doc)
    for section, (field, keys) in _FILE_FIELDS.items():
        entries = []
        for item in doc.get(section) or ():
            if not isinstance(item, Mapping) or not isinstance(item.get(field), Mapping):
                entries.append(item)
                continue
            value = dict(item[field])
            for key in keys:
                if value.get(key):
                    value[key] = str(base / str(value[key]))
            ex = value.get("exec")
            if isinstance(ex, Mapping) and os.sep in str(ex.get("command") or ""):
                value["exec"] = {**ex, "command": str(base / str(ex["command"]))}
            entries.append({**item, field: value})
        out[section] = entries
    return out


def merge_kubeconfigs(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """kubectl's merge of a ``KUBECONFIG`` list: the first file to name an entry
    (or to set current-context) wins."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    for doc in docs:
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for section in ("clusters", "users", "contexts"):
            known = {e.get("name") for e in merged[section]}
            merged[section] += [e for e in doc.get(section) or ()
                                if isinstance(e, Mapping) and e.get("name") not in known]
    return merged


def load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> ClientConfig:
    """The config of ``context`` (default: current-context) in the kubeconfig at
    ``path``, or in several joined by ``os.pathsep`` as in ``KUBECONFIG`` (merged as
    kubectl does; missing ones skipped)."""
    files = [Path(p).expanduser() for p in os.fspath(path).split(os.pathsep) if p]
    docs = []
    for f in files:
        if len(files) > 1 and not f.exists():
            continue
        doc = yaml.safe_load(f.read_text())
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{f}: not a kubeconfig")
        docs.append(_absolute(doc, f.resolve().parent))
    if not docs:
        raise ConfigError(f"no kubeconfig found in {os.fspath(path)!r}")
    return parse_kubeconfig(merge_kubeconfigs(docs), Path("/"), context)


def load_incluster_config(env: Mapping[str, str] | None = None,
                          sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ClientConfig:
    """The Pod's own: the service host from the environment, its service-account
    token (reread as it rotates) and CA."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    token = sa_dir / "token"
    if not token.is_file():
        raise ConfigError(f"not in a cluster: no service-account token at {token}")
    return ClientConfig(server=f"https://{host}:{port}", ca_pem=(sa_dir / "ca.crt").read_bytes(),
                        credentials=TokenFile(token))
