"""Named health checks served kube-apiserver style (``/healthz``, ``/readyz``).

A check is a callable (sync or async) taking no arguments. It passes when it
returns anything but ``False`` without raising. Responses follow
``k8s.io/apiserver/pkg/server/healthz``:

- ``GET /readyz``: ``200 ok``, or ``500`` listing every check as
  ``[+]name ok`` / ``[-]name failed: reason withheld`` and ending with
  ``readyz check failed``;
- ``?verbose`` lists the checks on success too (ending ``readyz check passed``);
- ``?exclude=name`` (repeatable) skips a check;
- ``GET /readyz/<name>`` runs one check.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from .minihttp import Request, Response, Router

HealthCheck = Callable[[], object]

_log = structlog.get_logger(__name__)


def ping() -> bool:
    """A check that always passes: the process is serving HTTP."""
    return True


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check; ``error`` (only when not ok) is logged, never served."""

    name: str
    ok: bool
    error: str | None = None


class HealthChecks:
    """An ordered set of named checks behind one endpoint (``healthz`` or ``readyz``).

    Invariants: names are unique (re-adding a name raises); checks run in the
    order they were added, each bounded by ``timeout`` seconds (a timeout is a
    failure); with no checks registered the endpoint reports ``ok``.
    """

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self._timeout = timeout
        self._checks: dict[str, HealthCheck] = {}

    def add_check(self, name: str, check: HealthCheck) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid check name {name!r}")
        if name in self._checks:
            raise ValueError(f"{self.endpoint} check {name!r} already registered")
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run_one(self, name: str) -> CheckResult:
        check = self._checks[name]
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, self._timeout)
        except Exception as err:
            return CheckResult(name, False, f"{type(err).__name__}: {err}")
        if outcome is False:
            return CheckResult(name, False, "check returned False")
        return CheckResult(name, True)

    async def run(self, exclude: Iterable[str] = ()) -> tuple[list[CheckResult], list[str]]:
        """Results of the checks not excluded, and the excluded names that exist."""
        skip = set(exclude)
        results = [await self.run_one(n) for n in self._checks if n not in skip]
        return results, [n for n in self._checks if n in skip]

    async def handle_all(self, request: Request) -> Response:
        results, excluded = await self.run(request.query.get("exclude", []))
        lines = [
            f"[+]{r.name} ok" if r.ok else f"[-]{r.name} failed: reason withheld" for r in results
        ]
        lines += [f"[+]{n} excluded: ok" for n in excluded]
        failed = [r for r in results if not r.ok]
        for r in failed:
            _log.info("health check failed", endpoint=self.endpoint, check=r.name, error=r.error)
        if failed:
            body = "\n".join([*lines, f"{self.endpoint} check failed"]) + "\n"
            return _text(body, status=500)
        if "verbose" in request.query:
            return _text("\n".join([*lines, f"{self.endpoint} check passed"]) + "\n")
        return _text("ok")

    async def handle_one(self, request: Request) -> Response:
        name = request.tail
        if name not in self._checks:
            return _text("404 page not found\n", status=404)
        result = await self.run_one(name)
        if result.ok:
            return _text("ok")
        _log.info("health check failed", endpoint=self.endpoint, check=name, error=result.error)
        return _text(f"internal server error: {name} check failed\n", status=500)

    def add_routes(self, router: Router) -> None:
        router.add_get(f"/{self.endpoint}", self.handle_all)
        router.add_get_prefix(f"/{self.endpoint}", self.handle_one)


def _text(body: str, *, status: int = 200) -> Response:
    return Response.text(body, status)
