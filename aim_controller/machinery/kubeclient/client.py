"""A small async REST client for the API server, on one pooled HTTP client
(:mod:`aim_controller.machinery.httpclient`).

All traffic goes through the instance attribute ``request`` (a coroutine taking
``method, url, **request_kwargs`` and returning the unread response), so
throttling, metrics and tests can wrap it in one place.
"""

from __future__ import annotations

import asyncio.sslproto
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

from ..httpclient import HttpClient, Response, Timeout
from .config import ClientConfig
from .credentials import Credential, StaticCredential
from .errors import ApiException

RequestFn = Callable[..., Awaitable[Response]]

# One connection per watch plus the workers' requests.
DEFAULT_POOL_SIZE: Final = 200
KEEPALIVE_TIMEOUT: Final = 30.0

# asyncio's TLS transport gives every connection a zero-filled read buffer of
# SSLProtocol.max_size (256 KiB): with one HTTP/1.1 connection per watch that was
# ~4.4 MB of an idle operator's RSS for buffers that hold a few hundred bytes of watch
# events. Two TLS records (16 KiB each) per read is plenty for list pages too.
TLS_READ_BUFFER: Final = 32 * 1024


def limit_tls_read_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Caps asyncio's per-connection TLS read buffer (process-wide, never raised)."""
    protocol = asyncio.sslproto.SSLProtocol
    if size < protocol.max_size:
        protocol.max_size = size


def ssl_context(cfg: ClientConfig, cert_pem: bytes | None, key_pem: bytes | None,
                ) -> ssl.SSLContext:
    """Trusts ``cfg``'s CA (the system's without one) and presents the given client cert."""
    ctx = ssl.create_default_context(cadata=cfg.ca_pem.decode() if cfg.ca_pem else None)
    if cfg.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_pem and key_pem:
        # load_cert_chain reads only files: a private directory that lives a moment.
        with tempfile.TemporaryDirectory(prefix="aim-kube-") as d:
            cert, key = Path(d) / "tls.crt", Path(d) / "tls.key"
            cert.write_bytes(cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cert, key)
    return ctx


class KubeClient:
    """Sends requests to one API server with the identity ``config`` gives.

    ``call`` adds the bearer token, raises :class:`ApiException` on a non-2xx
    answer, and when a refreshable credential (exec plugin, token file) is
    refused with 401 fetches it again and retries once.
    """

    def __init__(self, config: ClientConfig, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.config = config
        self.pool_size = pool_size
        self._http: HttpClient | None = None
        self._base_ssl = ssl_context(config, config.cert_pem, config.key_pem)
        self._exec_ssl: dict[tuple[bytes, bytes], ssl.SSLContext] = {}
        self.request: RequestFn = self._send

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout: Timeout,
    ) -> Response:
        """Sends one request; returns the unread 2xx response (the caller releases it)."""
        url = self.config.server + path
        if query:
            url += "?" + urlencode(list(query), quote_via=quote)
        source = self.config.credentials
        retry = source is not None and not isinstance(source, StaticCredential)
        while True:
            cred = await source.get() if source is not None else None
            sent = dict(headers or {})
            if cred is not None and cred.token:
                sent["Authorization"] = f"Bearer {cred.token}"
            resp = await self.request(
                method, url, headers=sent, data=body, timeout=request_timeout,
                ssl=self._ssl_for(cred), server_hostname=self.config.tls_server_name)
            if resp.status == 401 and retry and source is not None:
                resp.release()
                source.invalidate()
                retry = False
                continue
            if not 200 <= resp.status <= 299:
                try:
                    data = await resp.read()
                finally:
                    resp.release()
                raise ApiException.from_response(resp.status, data, headers=resp.headers)
            return resp

    def _ssl_for(self, cred: Credential | None) -> ssl.SSLContext:
        if cred is None or not (cred.cert_pem and cred.key_pem):
            return self._base_ssl
        key = (cred.cert_pem, cred.key_pem)
        if key not in self._exec_ssl:
            # A new certificate replaces the old one (and its pooled connections).
            self._exec_ssl = {key: ssl_context(self.config, *key)}
        return self._exec_ssl[key]

    async def _send(self, method: str, url: str, **kwargs: Any) -> Response:
        if self._http is None or self._http.closed:
            limit_tls_read_buffer()
            self._http = HttpClient(limit=self.pool_size, keepalive_timeout=KEEPALIVE_TIMEOUT)
        return await self._http.request(method, url, **kwargs)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
