"""Where a request's identity comes from: a fixed token or cert, a token file, an exec plugin.

Each source answers ``get()`` with the credential to send now and forgets it
on ``invalidate()`` (after a 401) when it can fetch a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

# client-go rereads a bound service-account token about once a minute.
TOKEN_FILE_REREAD: Final = 60.0
EXEC_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class Credential:
    """What to present: a bearer token and/or a client certificate (PEM)."""

    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


class CredentialSource(Protocol):
    async def get(self) -> Credential: ...

    def invalidate(self) -> None:
        """The server refused the last credential: fetch anew next time (if this source can)."""


@dataclass(frozen=True)
class StaticCredential:
    """A token or certificate written in the kubeconfig itself."""

    credential: Credential

    async def get(self) -> Credential:
        return self.credential

    def invalidate(self) -> None:
        pass


@dataclass
class TokenFile:
    """A token read from a file and read again every ``reread`` seconds (bound
    service-account tokens are rotated in place by the kubelet)."""

    path: Path
    reread: float = TOKEN_FILE_REREAD
    clock: Callable[[], float] = time.monotonic
    _token: str | None = field(default=None, init=False)
    _read_at: float = field(default=0.0, init=False)

    async def get(self) -> Credential:
        now = self.clock()
        if self._token is None or now - self._read_at >= self.reread:
            self._token = self.path.read_text().strip()
            self._read_at = now
        return Credential(token=self._token)

    def invalidate(self) -> None:
        self._token = None


class ExecError(RuntimeError):
    """The exec credential plugin failed or answered something unusable."""


@dataclass(frozen=True)
class ExecSpec:
    """A kubeconfig ``users[].user.exec`` stanza (the command already resolved)."""

    command: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    # ExecCredential.spec.cluster, sent when provideClusterInfo is set
    cluster: Mapping[str, Any] | None = None


def parse_exec_credential(out: bytes | str, api_version: str) -> tuple[Credential, float | None]:
    """An ExecCredential's credential and its expiry (epoch seconds; None: until a 401)."""
    try:
        doc = json.loads(out)
    except ValueError as e:
        raise ExecError(f"exec plugin printed no JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ExecError("exec plugin did not print an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise ExecError(
            f"exec plugin answered apiVersion {doc.get('apiVersion')!r}, asked for {api_version!r}")
    status = doc.get("status") or {}
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if bool(cert) != bool(key):
        raise ExecError("exec plugin gave clientCertificateData without clientKeyData or back")
    if not token and not cert:
        raise ExecError("exec plugin gave neither a token nor a client certificate")
    expiry = None
    if stamp := status.get("expirationTimestamp"):
        try:
            expiry = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError as e:
            raise ExecError(f"exec plugin gave a bad expirationTimestamp {stamp!r}") from e
    return Credential(token=token, cert_pem=cert.encode() if cert else None,
                      key_pem=key.encode() if key else None), expiry


@dataclass
class ExecPlugin:
    """Runs a credential plugin; keeps its answer until it expires or is refused."""

    spec: ExecSpec
    clock: Callable[[], float] = time.time  # expirationTimestamp is wall-clock time
    timeout: float = EXEC_TIMEOUT
    _cached: tuple[Credential, float | None] | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def get(self) -> Credential:
        async with self._lock:  # concurrent requests wait for one run of the plugin
            if self._cached is not None:
                cred, expiry = self._cached
                if expiry is None or self.clock() < expiry:
                    return cred
            self._cached = parse_exec_credential(await self._run(), self.spec.api_version)
            return self._cached[0]

    def invalidate(self) -> None:
        self._cached = None

    async def _run(self) -> bytes:
        info: dict[str, Any] = {"interactive": False}
        if self.spec.cluster is not None:
            info["cluster"] = dict(self.spec.cluster)
        env = {**os.environ, **self.spec.env, "KUBERNETES_EXEC_INFO": json.dumps(
            {"apiVersion": self.spec.api_version, "kind": "ExecCredential", "spec": info})}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.spec.command, *self.spec.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise ExecError(f"exec plugin {self.spec.command!r}: {e}") from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ExecError(f"exec plugin {self.spec.command!r} timed out") from None
        if proc.returncode != 0:
            raise ExecError(f"exec plugin {self.spec.command!r} exited {proc.returncode}: "
                            f"{err.decode(errors='replace').strip()[:500]}")
        return out
