"""The one exception every API call raises for a non-2xx answer."""

from __future__ import annotations

import json
from collections.abc import Mapping


class ApiException(Exception):
    """An HTTP error from the API server.

    ``status`` is the HTTP code (0: no response at all); ``reason`` the
    ``Status`` object's reason (or message) when the body is one, else the
    HTTP reason phrase; ``body`` the response text; ``headers`` its headers.
    """

    def __init__(self, status: int = 0, reason: str = "", body: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(status, reason)

    @classmethod
    def from_response(cls, status: int, body: bytes | str, reason: str | None = None,
                      headers: Mapping[str, str] | None = None) -> ApiException:
        """From an answer; without ``reason``, the one its ``Status`` body gives."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        if reason is None:
            try:
                parsed = json.loads(text)
                reason = str(parsed.get("reason") or parsed.get("message") or "")
            except (ValueError, AttributeError):
                reason = ""
        return cls(status, reason, text, headers)

    def __str__(self) -> str:
        msg = f"({self.status})\nReason: {self.reason}\n"
        if self.body:
            msg += f"HTTP response body: {self.body}\n"
        return msg
