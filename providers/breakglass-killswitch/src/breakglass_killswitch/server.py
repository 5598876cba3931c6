"""``breakglass-killswitch serve``: the switch's own small HTTP API.

Every route but ``/v1/health`` needs ``Authorization: Bearer <token>`` with a
token of the switch's own (``breakglass-killswitch token create``). Errors are
``application/problem+json``. The routes, roles and bodies are documented in
the README ("HTTP API"); the control plane calls them as one more halt target.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from breakglass_killswitch.audit import FEED_SCHEMA
from breakglass_killswitch.errors import KillswitchError, NothingHaltedError, ResumeRefused
from breakglass_killswitch.limits import FailedTokenLimit
from breakglass_killswitch.switch import Actor
from breakglass_killswitch.tokens import allows, authenticate

if TYPE_CHECKING:
    from starlette.requests import Request

    from breakglass_killswitch.store import TokenRow
    from breakglass_killswitch.switch import Switch

logger = logging.getLogger("breakglass_killswitch.serve")
MAX_BODY = 64 * 1024
MAX_REASON = 2000
FEED_PAGE = 500


class Problem(Exception):  # noqa: N818 -- an HTTP answer, raised to leave a handler
    """An error answer."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """As ``application/problem+json``."""
        body = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        } | self.extra
        headers = dict(self.headers)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="breakglass-killswitch"'
        return Response(
            json.dumps(body),
            status_code=self.status,
            media_type="application/problem+json",
            headers=headers,
        )


def _refuse(request: Request, limit: FailedTokenLimit, detail: str) -> Problem:
    """The answer to a missing or wrong token: 401, or 429 once its address is past the limit."""
    client = request.client.host if request.client else "unknown"
    wait = limit.fail(client)
    if wait is not None:
        # Past the limit: answered, not logged one by one (a flood must not flood the log).
        return Problem(
            429,
            "Too Many Requests",
            "too many wrong tokens from this address; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    logger.warning("refused %s on %s from %s", detail, request.url.path, client)
    return Problem(401, "Unauthorized", detail)


def _caller(request: Request, switch: Switch, limit: FailedTokenLimit, needed: str) -> TokenRow:
    # A valid token is checked first and always accepted: the limit never stands
    # between an authenticated caller and a halt.
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _refuse(request, limit, "a bearer token of this switch is required")
    row = authenticate(switch.store, presented.strip())
    if row is None:
        raise _refuse(request, limit, "unknown or revoked token")
    if not allows(row.role, needed):
        logger.warning("refused token %r (role %s) on %s", row.name, row.role, request.url.path)
        raise Problem(403, "Forbidden", f"role {row.role} may not do this (needs {needed})")
    return row


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise Problem(413, "Payload Too Large", f"the body is limited to {MAX_BODY} bytes")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Bad Request", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "Bad Request", "the body must be a JSON object")
    return data


def _reason(data: dict[str, Any]) -> str:
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise Problem(422, "Unprocessable Content", "give a reason (a non-empty string)")
    if len(reason) > MAX_REASON:
        raise Problem(
            422, "Unprocessable Content", f"the reason is limited to {MAX_REASON} characters"
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in reason):
        raise Problem(422, "Unprocessable Content", "the reason contains control characters")
    return reason.strip()


class _Api:
    """The route handlers over one switch."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        serve = switch.config.serve
        self.limit = FailedTokenLimit(serve.failed_tokens, serve.failed_token_window)

    def _caller(self, request: Request, needed: str) -> TokenRow:
        return _caller(request, self.switch, self.limit, needed)

    async def health(self, _: Request) -> Response:
        return JSONResponse({"ok": True, "switch": self.switch.config.name})

    async def status(self, request: Request) -> Response:
        self._caller(request, "viewer")
        return JSONResponse(await run_in_threadpool(self.switch.status))

    async def halt(self, request: Request) -> Response:
        row = self._caller(request, "halter")
        reason = _reason(await _body(request))
        report = await run_in_threadpool(self.switch.halt, Actor("api_token", row.name), reason)
        return JSONResponse(report.as_dict(), status_code=200 if report.ok else 502)

    async def approve(self, request: Request) -> Response:
        row = self._caller(request, "approver")
        reason = _reason(await _body(request))
        try:
            result = await run_in_threadpool(
                self.switch.approve, Actor("api_token", row.name), reason
            )
        except NothingHaltedError as exc:
            raise Problem(409, "Conflict", str(exc)) from None
        return JSONResponse(result)

    async def resume(self, request: Request) -> Response:
        row = self._caller(request, "halter")
        data = await _body(request)
        reason = _reason(data)
        token = data.get("authorisation")
        if token is not None and not isinstance(token, str):
            raise Problem(422, "Unprocessable Content", "authorisation must be a string")
        actor = Actor("api_token", row.name)
        try:
            report = await run_in_threadpool(self.switch.resume, actor, reason, token)
        except NothingHaltedError as exc:
            raise Problem(409, "Conflict", str(exc)) from None
        except ResumeRefused as exc:
            raise Problem(403, "Resume refused", str(exc), missing=exc.missing) from None
        return JSONResponse(report.as_dict(), status_code=200 if report.ok else 502)

    async def preflight(self, request: Request) -> Response:
        self._caller(request, "viewer")
        findings = await run_in_threadpool(self.switch.preflight)
        risky = [f for f in findings if f.severity in ("risk", "error")]
        return JSONResponse({"ok": not risky, "findings": [f.as_dict() for f in findings]})

    async def audit(self, request: Request) -> Response:
        self._caller(request, "viewer")
        try:
            after = int(request.query_params.get("after", "0") or "0")
            limit = min(FEED_PAGE, max(1, int(request.query_params.get("limit", str(FEED_PAGE)))))
        except ValueError:
            raise Problem(400, "Bad Request", "after and limit are integers") from None
        rows = await run_in_threadpool(self.switch.store.audit_after, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = str(rows[-1][0]) if rows else str(after)
        body = {
            "schema": FEED_SCHEMA,
            "records": [r for _, r in rows],
            "cursor": cursor,
            "more": more,
        }
        return JSONResponse(body)


async def _problem(request: Request, exc: Exception) -> Response:
    if isinstance(exc, Problem):
        return exc.response()
    if isinstance(exc, KillswitchError):
        return Problem(500, "Internal Server Error", str(exc)).response()
    logger.error("unexpected %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
    return Problem(
        500, "Internal Server Error", "unexpected error; see the switch's log"
    ).response()


def build_app(switch: Switch) -> Starlette:
    """The ASGI app over one switch."""
    api = _Api(switch)
    routes = [
        Route("/v1/health", api.health),
        Route("/v1/status", api.status),
        Route("/v1/halt", api.halt, methods=["POST"]),
        Route("/v1/resume", api.resume, methods=["POST"]),
        Route("/v1/approvals", api.approve, methods=["POST"]),
        Route("/v1/preflight", api.preflight),
        Route("/v1/audit", api.audit),
    ]
    # Problem and KillswitchError are answers; only an unexpected Exception reaches the
    # server-error middleware (which also logs it).
    handlers = {Problem: _problem, KillswitchError: _problem, Exception: _problem}
    return Starlette(routes=routes, exception_handlers=handlers)
