"""The operator console: server-rendered pages, a little JavaScript, no build step.

The STOP form works without JavaScript (the confirmation dialog opens through
HTML invoker commands, the form posts to ``/console/halt``); the script only
makes it faster and keeps the page live through ``/v1/events``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from breakglass.drill.serve_routes import REMEDIATOR, drill_panel
from breakglass.errors import AuthError, ServeStoreError
from breakglass.hold.serve_routes import held_panel
from breakglass.limits import client_key
from breakglass.notify.serve_routes import notification_panel
from breakglass.resume.serve_routes import resume_panel
from breakglass.serve.app import (
    HALTING,
    RESUMING,
    Allowed,
    Services,
    _verify_bearer,
    audit_event,
    client_address,
    session_of,
)
from breakglass.serve.auth import Role
from breakglass.serve.control import FALLBACK, HaltRequest, ResumeRefusedError, ResumeRequest
from breakglass.serve.sessions import Session, check_csrf, check_same_origin

if TYPE_CHECKING:
    from breakglass.serve.auth import Identity
    from breakglass.serve.control import Outcome

logger = logging.getLogger("breakglass.serve")
_HERE = Path(__file__).parent
_LOGIN_COOKIE = "breakglass_login"
templates = Jinja2Templates(directory=str(_HERE / "templates"))


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _session(request: Request) -> Session | None:
    try:
        return session_of(_services(request), request)
    except AuthError:
        return None


def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    """The login form (with a fresh double-submit token), showing ``error`` if given."""
    services = _services(request)
    nonce = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "error": error,
            "csrf": nonce,
            "oidc": services.oidc is not None,
            "sso": services.oidc is not None and services.oidc.settings.login,
        },
        status_code=status,
    )
    response.set_cookie(
        _LOGIN_COOKIE,
        nonce,
        max_age=900,
        httponly=True,
        samesite="strict",
        secure=services.sessions.secure,
        path="/login",
    )
    return response


async def _render_console(
    request: Request, session: Session, result: Outcome | None = None, error: str | None = None
) -> Response:
    services = _services(request)
    status = await asyncio.to_thread(services.control.status)
    history = await asyncio.to_thread(services.control.history, 20)
    notifications = await asyncio.to_thread(notification_panel, services, status)
    gate = await asyncio.to_thread(resume_panel, services)
    held = await asyncio.to_thread(held_panel, services)
    drills = await asyncio.to_thread(drill_panel, services)
    identity = session.identity
    context: dict[str, Any] = {
        "identity": identity,
        "csrf": session.csrf,
        "session_tag": session.tag,
        "status": status,
        "fleet": services.fleet.summary(),
        "history": history,
        "can_halt": identity.role >= Role.HALTER,
        "can_resume": identity.role >= Role.APPROVER,
        "result": result.to_dict() if result else None,
        "error": error,
        "fallback": FALLBACK,
        "notifications": notifications,
        "gate": gate,
        "held": held,
        "drills": drills,
        "can_remediate": identity.role >= REMEDIATOR,
        "remediator": REMEDIATOR.label,
    }
    return templates.TemplateResponse(request, "console.html", context)


render_console = _render_console
"""The console page (for the routes other packages add)."""


def _form_session(request: Request, csrf: str, allowed: Allowed) -> Session:
    """The console session posting a form, refused (403) unless ``allowed``; before the form is checked.

    The CSRF token is in the form, so the API's header check cannot run first: the person is
    set for the request here and the route's role checked as on the API (see :class:`Allowed`).
    """
    services = _services(request)
    session = session_of(services, request)
    if session is None:
        raise AuthError("log in first")
    check_same_origin(request, services.public_origin)
    check_csrf(session, csrf)
    request.state.identity = session.identity
    allowed(request)
    return session


def _check_login(request: Request, services: Services, csrf: str) -> None:
    nonce = request.cookies.get(_LOGIN_COOKIE, "")
    check_same_origin(request, services.public_origin)
    if not nonce or not hmac.compare_digest(nonce, csrf):
        raise AuthError("the login form expired; try again", status=403)


def finish_login(request: Request, identity: Identity | None, exc: AuthError | None) -> Response:
    """End a login (token form or single sign-on): a session and the console, or the form again."""
    services = _services(request)
    client = client_address(request)
    if identity is not None and identity.role is Role.REPORTER:
        identity, exc = (
            None,
            AuthError("a reporter token is a service's: it cannot log in", status=403),
        )
    if identity is None:
        assert exc is not None  # noqa: S101 -- one of the two is given
        wait = services.limiter.fail(client_key(client))
        if wait is not None:
            # Past the limit: answered and counted, but no longer audited one by one.
            services.control.metrics.denials.labels("429").inc()
            response = login_page(request, "Too many failed logins from here. Wait a minute.", 429)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        services.control.metrics.denials.labels(str(exc.status)).inc()
        audit_event(
            services,
            "login-denied",
            comment=str(exc),
            identity=getattr(exc, "identity", None),  # a revoked person's token: say whose
            raw={"client": client, "status": exc.status},
        )
        return login_page(request, str(exc), 401 if exc.status == 401 else 403)
    # The generations read fresh: a person logging in again right after a revocation keeps the new session.
    value, _ = services.sessions.make(
        identity, services.revocations.generations(identity, fresh=True)
    )
    audit_event(
        services,
        "login",
        comment=f"console login ({identity.kind})",
        identity=identity,
        raw={"client": client},
    )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(value=value, **services.sessions.cookie_options())
    response.delete_cookie(_LOGIN_COOKIE, path="/login")
    return response


def add_console(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app``."""
    from breakglass.serve.sso import add_sso

    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    add_sso(app, finish_login)
    _add_login(app)
    _add_actions(app)


def _add_login(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def console(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return await _render_console(request, session)

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
        # A valid token logs in whatever its address did before (as on the API); only
        # failures are counted, on a thread: the count may wait on the shared store.
        services = _services(request)
        try:
            _check_login(request, services, csrf)
            identity = await asyncio.to_thread(_verify_bearer, services, token.strip())
        except AuthError as exc:
            return await asyncio.to_thread(finish_login, request, None, exc)
        return await asyncio.to_thread(finish_login, request, identity, None)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        # Logging out needs no proof: the cookie goes either way. A valid session is also
        # ended in the store, so a copy of the cookie taken elsewhere stops working too.
        services = _services(request)
        session = _session(request)
        if session is not None:
            try:
                await asyncio.to_thread(
                    services.revocations.log_out, session, by=session.identity.actor
                )
            except ServeStoreError as exc:
                logger.warning("a logout could not be recorded (its cookie is deleted): %s", exc)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(services.sessions.cookie, path="/")
        return response


def _add_actions(app: FastAPI) -> None:
    @app.post("/console/halt", include_in_schema=False)
    async def console_halt(
        request: Request,
        csrf: str = Form(""),
        reason: str = Form(""),
        incident: str = Form(""),
        personal_data_affected: str | None = Form(None),
        business_continuity: str | None = Form(None),
        severity: str = Form(""),
    ) -> Response:
        services = _services(request)
        session = _form_session(request, csrf, HALTING)
        try:
            body = HaltRequest.model_validate(
                {
                    "reason": reason,
                    "incident": incident or None,
                    "personal_data_affected": personal_data_affected is not None,
                    "business_continuity": business_continuity is not None,
                    "severity": severity or None,
                }
            )
        except ValidationError as exc:
            wrong = {str(e["loc"][0]) for e in exc.errors()}
            message = (
                "Give a reason for the halt." if "reason" in wrong else "Choose a listed severity."
            )
            return await _render_console(request, session, error=message)
        outcome = await services.control.run(services.control.halt, session.identity, body)
        audit_event(
            services,
            "halt-request" if outcome.done else "halt-request-failed",
            comment=body.reason,
            identity=session.identity,
            raw={"change_id": outcome.change_id, "via": "console form"},
        )
        services.control.follow(outcome)
        return await _render_console(request, session, result=outcome)

    @app.post("/console/resume", include_in_schema=False)
    async def console_resume(
        request: Request,
        csrf: str = Form(""),
        reason: str = Form(""),
        classification: str = Form(""),
    ) -> Response:
        services = _services(request)
        session = _form_session(request, csrf, RESUMING)
        try:
            body = ResumeRequest.model_validate(
                {"reason": reason, "classification": classification or None}
            )
        except ValidationError:
            return await _render_console(request, session, error="Give a reason for the resume.")
        try:
            outcome = await services.control.run(services.control.resume, session.identity, body)
        except ResumeRefusedError as exc:
            return await _render_console(request, session, error=str(exc))
        audit_event(
            services,
            "resume-request" if outcome.done else "resume-request-failed",
            comment=body.reason,
            identity=session.identity,
            raw={"change_id": outcome.change_id, "via": "console form"},
        )
        services.control.follow(outcome)
        return await _render_console(request, session, result=outcome)
