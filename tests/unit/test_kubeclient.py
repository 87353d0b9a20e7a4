"""Our REST client's configuration: every kubeconfig auth form, relative paths, exec
plugins (run for real from tmp_path) and their expiry, the in-cluster token reread,
and how API errors and 401s are handled."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_controller.machinery.httpclient import Timeout
from aim_controller.machinery.kubeclient import (
    ApiException,
    ClientConfig,
    ConfigError,
    KubeClient,
    load_incluster_config,
    load_kubeconfig,
)
from aim_controller.machinery.kubeclient.credentials import (
    Credential,
    ExecError,
    ExecPlugin,
    StaticCredential,
    TokenFile,
    parse_exec_credential,
)

CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"
V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(path: Path, users: dict[str, Any], clusters: dict[str, Any] | None = None,
               current: str | None = None) -> Path:
    """A kubeconfig with one context per user (named after it), all on cluster ``main``
    unless ``clusters`` names a cluster per user."""
    clusters = clusters or {"main": {"server": "https://main:6443"}}
    first_cluster = next(iter(clusters))
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "current-context": current or next(iter(users)),
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": {
            "cluster": n if n in clusters else first_cluster, "user": n}} for n in users],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def plugin(tmp_path: Path, status: dict[str, Any], api_version: str = V1,
           exit_code: int = 0) -> Path:
    """An exec plugin: counts its runs in ``runs``, records its KUBERNETES_EXEC_INFO
    and FOO env in ``info.json``, prints an ExecCredential with ``status``."""
    script = tmp_path / "bin" / "plugin.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"""#!{sys.executable}
import json, os, pathlib, sys
d = pathlib.Path({str(tmp_path)!r})
runs = d / "runs"
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
(d / "info.json").write_text(json.dumps({{"info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]),
                                         "foo": os.environ.get("FOO"), "args": sys.argv[1:]}}))
print(json.dumps({{"apiVersion": {api_version!r}, "kind": "ExecCredential",
                  "status": {status!r}}}))
sys.exit({exit_code})
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "runs").read_text())


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- kubeconfig -------------------------------------------------------------------------
async def test_token_and_inline_ca_of_the_current_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"alice": {"token": "t-alice"}},
                      {"main": {"server": "https://main:6443/", "certificate-authority-data":
                                b64(CA)}})
    cfg = load_kubeconfig(path)
    assert cfg.server == "https://main:6443"  # no trailing slash: paths start with one
    assert cfg.ca_pem == CA
    assert cfg.credentials is not None
    assert await cfg.credentials.get() == Credential(token="t-alice")
    assert not cfg.insecure_skip_tls_verify and cfg.tls_server_name is None


async def test_a_named_context_picks_its_own_cluster_and_user(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config",
                      {"alice": {"token": "a"}, "bob": {"token": "b"}},
                      {"alice": {"server": "https://a:1"},
                       "bob": {"server": "https://b:2", "insecure-skip-tls-verify": True,
                               "tls-server-name": "kubernetes.default"}})
    bob = load_kubeconfig(path, context="bob")
    assert bob.server == "https://b:2"
    assert bob.insecure_skip_tls_verify and bob.tls_server_name == "kubernetes.default"
    assert bob.credentials is not None and (await bob.credentials.get()).token == "b"
    assert load_kubeconfig(path).server == "https://a:1"
    with pytest.raises(ConfigError, match="no context named 'carol'"):
        load_kubeconfig(path, context="carol")


async def test_files_are_relative_to_the_kubeconfig_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf_dir = tmp_path / "conf"
    (conf_dir / "pki").mkdir(parents=True)
    (conf_dir / "pki" / "ca.crt").write_bytes(CA)
    (conf_dir / "pki" / "tls.crt").write_bytes(CERT)
    (conf_dir / "pki" / "tls.key").write_bytes(KEY)
    (conf_dir / "token").write_text("t-file\n")
    path = kubeconfig(
        conf_dir / "config",
        {"certs": {"client-certificate": "pki/tls.crt", "client-key": "pki/tls.key"},
         "file": {"tokenFile": "token"}},
        {"main": {"server": "https://main:6443", "certificate-authority": "pki/ca.crt"}})
    monkeypatch.chdir(tmp_path)  # not the kubeconfig's directory
    certs = load_kubeconfig(Path("conf/config"))
    assert (certs.ca_pem, certs.cert_pem, certs.key_pem) == (CA, CERT, KEY)
    assert certs.credentials is None
    file = load_kubeconfig(path, context="file")
    assert isinstance(file.credentials, TokenFile)
    assert await file.credentials.get() == Credential(token="t-file")


def test_inline_client_certificate_and_key(tmp_path: Path) -> None:
    cfg = load_kubeconfig(kubeconfig(tmp_path / "config", {"u": {
        "client-certificate-data": b64(CERT), "client-key-data": b64(KEY)}}))
    assert (cfg.cert_pem, cfg.key_pem) == (CERT, KEY)


@pytest.mark.parametrize(("user", "cluster", "message"), [
    ({"client-certificate-data": b64(CERT)}, {}, "needs its key"),
    ({"auth-provider": {"name": "oidc"}}, {}, "unsupported fields \\['auth-provider'\\]"),
    ({"username": "u", "password": "p"}, {}, "unsupported fields"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, {},
     "apiVersion"),
    ({"exec": {"apiVersion": V1}}, {}, "command is required"),
    ({"token": "t"}, {"proxy-url": "http://proxy:3128"}, "proxy-url is not supported"),
    ({"token": "t"}, {"server": ""}, "has no server"),
])
def test_unsupported_or_broken_entries_are_refused(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], message: str,
) -> None:
    path = kubeconfig(tmp_path / "config", {"u": user},
                      {"main": {"server": "https://main:6443", **cluster}})
    with pytest.raises(ConfigError, match=message):
        load_kubeconfig(path)


def test_a_kubeconfig_list_is_merged_first_wins(tmp_path: Path) -> None:
    (tmp_path / "b" / "pki").mkdir(parents=True)
    (tmp_path / "b" / "pki" / "ca.crt").write_bytes(CA)
    first = kubeconfig(tmp_path / "a" / "config", {"alice": {"token": "from-a"}},
                       current="bob")
    second = kubeconfig(tmp_path / "b" / "config",
                        {"alice": {"token": "from-b"}, "bob": {"token": "b"}},
                        {"main": {"server": "https://b:1", "certificate-authority": "pki/ca.crt"}})
    listed = os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)])
    bob = load_kubeconfig(listed)  # current-context from the first file, bob from the second
    assert bob.server == "https://main:6443"  # cluster "main" of the first file wins
    alice = load_kubeconfig(os.pathsep.join([str(second), str(first)]), context="alice")
    assert alice.ca_pem == CA  # relative to the second file's directory
    assert alice.credentials == StaticCredential(Credential(token="from-b"))
    with pytest.raises(ConfigError, match="no kubeconfig"):
        load_kubeconfig(os.pathsep.join([str(tmp_path / "x"), str(tmp_path / "y")]))


# -- exec plugins -----------------------------------------------------------------------
async def test_exec_plugin_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    plugin(tmp_path, {"token": "t-exec", "expirationTimestamp": "2030-01-01T00:00:00Z"})
    # A command with a separator is relative to the kubeconfig; env and args are passed.
    path = kubeconfig(tmp_path / "config", {"u": {"exec": {
        "apiVersion": V1, "command": "./bin/plugin.py", "args": ["--x"],
        "env": [{"name": "FOO", "value": "bar"}], "provideClusterInfo": True}}},
        {"main": {"server": "https://main:6443", "certificate-authority-data": b64(CA)}})
    cfg = load_kubeconfig(path)
    source = cfg.credentials
    assert isinstance(source, ExecPlugin)
    expiry = 1893456000.0  # 2030-01-01T00:00:00Z
    source.clock = clock = Clock(expiry - 10)
    assert await source.get() == Credential(token="t-exec")
    assert await source.get() == Credential(token="t-exec")
    assert runs(tmp_path) == 1
    seen = json.loads((tmp_path / "info.json").read_text())
    assert seen["foo"] == "bar" and seen["args"] == ["--x"]
    assert seen["info"]["apiVersion"] == V1 and seen["info"]["kind"] == "ExecCredential"
    assert seen["info"]["spec"]["cluster"] == {
        "server": "https://main:6443", "certificate-authority-data": b64(CA)}
    clock.now = expiry
    await source.get()
    assert runs(tmp_path) == 2
    source.invalidate()  # a 401: run again although not expired
    await source.get()
    assert runs(tmp_path) == 3


async def test_exec_plugin_without_expiry_is_kept_until_refused(tmp_path: Path) -> None:
    script = plugin(tmp_path, {"clientCertificateData": CERT.decode(),
                               "clientKeyData": KEY.decode()}, api_version=V1BETA1)
    path = kubeconfig(tmp_path / "config", {"u": {"exec": {
        "apiVersion": V1BETA1, "command": str(script)}}})
    source = load_kubeconfig(path).credentials
    assert isinstance(source, ExecPlugin)
    source.clock = Clock(4_000_000_000.0)
    assert await source.get() == Credential(cert_pem=CERT, key_pem=KEY)
    await source.get()
    assert runs(tmp_path) == 1
    assert "cluster" not in json.loads((tmp_path / "info.json").read_text())["info"]["spec"]


@pytest.mark.parametrize(("status", "api_version", "exit_code", "message"), [
    ({"token": "t"}, V1, 3, "exited 3"),
    ({"token": "t"}, V1BETA1, 0, "answered apiVersion"),
    ({}, V1, 0, "neither a token nor a client certificate"),
    ({"clientCertificateData": "c"}, V1, 0, "without clientKeyData"),
    ({"token": "t", "expirationTimestamp": "soon"}, V1, 0, "bad expirationTimestamp"),
])
async def test_exec_plugin_failures_are_reported(
    tmp_path: Path, status: dict[str, Any], api_version: str, exit_code: int, message: str,
) -> None:
    script = plugin(tmp_path, status, api_version=api_version, exit_code=exit_code)
    path = kubeconfig(tmp_path / "config", {"u": {"exec": {"apiVersion": V1,
                                                           "command": str(script)}}})
    source = load_kubeconfig(path).credentials
    assert source is not None
    with pytest.raises(ExecError, match=message):
        await source.get()


def test_exec_credential_output_must_be_json() -> None:
    with pytest.raises(ExecError, match="no JSON"):
        parse_exec_credential(b"Please log in", V1)


# -- in-cluster -------------------------------------------------------------------------
async def test_in_cluster_token_is_reread_as_it_rotates(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t1")
    (tmp_path / "ca.crt").write_bytes(CA)
    cfg = load_incluster_config(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert cfg.server == "https://10.0.0.1:443" and cfg.ca_pem == CA
    source = cfg.credentials
    assert isinstance(source, TokenFile)
    source.clock = clock = Clock(0.0)
    assert await source.get() == Credential(token="t1")
    (tmp_path / "token").write_text("t2")  # the kubelet rotated it
    clock.now = 59.0
    assert (await source.get()).token == "t1"  # not reread on every request
    clock.now = 60.0
    assert (await source.get()).token == "t2"


def test_in_cluster_needs_its_environment_and_token(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    with pytest.raises(ConfigError, match="no service-account token"):
        load_incluster_config(env, tmp_path)
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes(CA)
    assert load_incluster_config(env, tmp_path).server == "https://[fd00::1]:6443"
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_incluster_config({}, tmp_path)


# -- errors and the transport hook ------------------------------------------------------
def test_api_exception_takes_the_status_reason() -> None:
    body = json.dumps({"kind": "Status", "code": 409, "reason": "AlreadyExists",
                       "message": "exists"}).encode()
    err = ApiException.from_response(409, body, headers={"Retry-After": "1"})
    assert (err.status, err.reason, err.body) == (409, "AlreadyExists", body.decode())
    assert err.headers == {"Retry-After": "1"}
    assert "(409)" in str(err) and "AlreadyExists" in str(err)
    message_only = ApiException.from_response(422, b'{"message": "bad"}')
    assert message_only.reason == "bad"
    assert ApiException.from_response(502, b"<html>gateway</html>").reason == ""


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"{}") -> None:
        self.status, self.body, self.headers, self.released = status, body, {}, False

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released = True


class Rotating:
    """A refreshable source whose credential changes on every invalidate."""

    def __init__(self) -> None:
        self.generation = 0

    async def get(self) -> Credential:
        return Credential(token=f"t{self.generation}")

    def invalidate(self) -> None:
        self.generation += 1


def answering(client: KubeClient, answer: Callable[[dict[str, str]], int],
              ) -> list[tuple[str, str, dict[str, str]]]:
    sent: list[tuple[str, str, dict[str, str]]] = []

    async def request(method: str, url: str, **kwargs: Any) -> Any:
        sent.append((method, url, kwargs["headers"]))
        return FakeResponse(answer(kwargs["headers"]))

    client.request = request
    return sent


TIMEOUT = Timeout(total=5)


async def test_a_refused_refreshable_credential_is_fetched_again_once() -> None:
    client = KubeClient(ClientConfig(server="https://h:1", credentials=Rotating()))
    sent = answering(client, lambda h: 200 if h["Authorization"] == "Bearer t1" else 401)
    resp = await client.call("GET", "/api", query=[("labelSelector", "a in (b,c)")],
                             request_timeout=TIMEOUT)
    assert resp.status == 200
    assert [h["Authorization"] for _, _, h in sent] == ["Bearer t0", "Bearer t1"]
    assert sent[0][1] == "https://h:1/api?labelSelector=a%20in%20%28b%2Cc%29"
    # Refused again after the refresh: no endless loop, the 401 is raised.
    always = KubeClient(ClientConfig(server="https://h:1", credentials=Rotating()))
    tries = answering(always, lambda h: 401)
    with pytest.raises(ApiException) as err:
        await always.call("GET", "/api", request_timeout=TIMEOUT)
    assert err.value.status == 401 and len(tries) == 2


async def test_a_static_token_is_not_retried() -> None:
    client = KubeClient(ClientConfig(
        server="https://h:1", credentials=StaticCredential(Credential(token="fixed"))))
    sent = answering(client, lambda h: 401)
    with pytest.raises(ApiException):
        await client.call("GET", "/api", request_timeout=TIMEOUT)
    assert len(sent) == 1


def test_tls_read_buffer_is_capped_and_never_raised() -> None:
    import asyncio.sslproto

    from aim_controller.machinery.kubeclient import client

    protocol = asyncio.sslproto.SSLProtocol
    before = protocol.max_size
    try:
        protocol.max_size = 256 * 1024  # asyncio's own default
        client.limit_tls_read_buffer()
        assert protocol.max_size == client.TLS_READ_BUFFER
        client.limit_tls_read_buffer(1024 * 1024)  # a larger cap never raises it
        assert protocol.max_size == client.TLS_READ_BUFFER
    finally:
        protocol.max_size = before
