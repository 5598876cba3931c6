"""The HTTP API of ``breakglass serve`` (FastAPI), and the app that joins it with the console.

Routes: ``GET /v1/status``, ``POST /v1/halt``, ``POST /v1/resume``, ``GET /v1/events`` (SSE),
``GET /v1/audit``, ``GET /v1/suspensions``, ``GET /v1/whoami``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``, and the console (``/``, ``/login``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import BackgroundTasks, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, parse_iso
from breakglass.errors import AuthError, BreakglassError, ServeStoreError, StoreError
from breakglass.limits import FailureLimit, client_key
from breakglass.ofrep import OfrepEndpoint
from breakglass.reports.fleet import FleetView
from breakglass.reports.report import ReportError
from breakglass.serve.auth import Identity, OidcVerifier, Role, TokenBook
from breakglass.serve.control import (
    FALLBACK,
    Control,
    HaltRequest,
    Outcome,
    ResumeRefusedError,
    ResumeRequest,
)
from breakglass.serve.problems import TYPES, problem
from breakglass.serve.sessions import Session, Sessions, check_csrf, check_same_origin

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from breakglass.audit.recorder import AuditRecorder
    from breakglass.serve.revocations import SessionRevocations

logger = logging.getLogger("breakglass.serve")

T = TypeVar("T")

PROVIDER = "breakglass-serve"
"""The ``provider`` of the audit records serve writes itself (requests and denials)."""

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STORE_WAIT = 1.0
_REPORT_MAX = 4096
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(slots=True)
class Services:
    """What the routes need; built by :func:`breakglass.serve.runtime.build`."""

    control: Control
    tokens: TokenBook
    oidc: OidcVerifier | None
    sessions: Sessions
    limiter: FailureLimit
    recorder: AuditRecorder
    revocations: SessionRevocations
    public_origin: str | None = None
    clock: Clock = SYSTEM_CLOCK
    fleet: FleetView = field(default_factory=FleetView)
    extra: dict[str, Any] = field(default_factory=dict)


def client_address(request: Request) -> str:
    """The peer's address (a proxy's ``X-Forwarded-For`` when uvicorn's ``FORWARDED_ALLOW_IPS`` names it)."""
    return request.client.host if request.client else "unknown"


def audit_event(
    services: Services,
    kind: str,
    *,
    comment: str,
    identity: Identity | None = None,
    raw: dict[str, Any] | None = None,
) -> None:
    """Queue an audit record of a request or a denial (off the request path)."""
    now = services.clock.now()
    actor = Actor(kind=ActorKind.UNKNOWN, id="anonymous", name="anonymous")
    if identity is not None:
        kind_of = ActorKind.USER if identity.kind == "oidc" else ActorKind.API_TOKEN
        actor = Actor(kind=kind_of, id=identity.subject, name=identity.name)
    services.recorder.record(
        AuditRecord(
            provider=PROVIDER,
            vendor_event_id=uuid.uuid4().hex,
            vendor_event_type=kind,
            flag_key=services.control.bridge.settings.flag_key,
            action=Action.OTHER,
            occurred_at=now,
            pulled_at=now,
            actor=actor,
            comment=comment[:2000],
            raw=raw or {},
        )
    )


def _deny(services: Services, request: Request, exc: AuthError, identity: Identity | None) -> None:
    request.state.denial_audited = True
    services.control.metrics.denials.labels(str(exc.status)).inc()
    client = client_address(request)
    logger.warning(
        "denied %s %s from %s (%s): %s",
        request.method,
        request.url.path,
        client,
        identity.actor if identity else "anonymous",
        exc,
    )
    audit_event(
        services,
        "auth-denied",
        comment=str(exc),
        identity=identity,
        raw={
            "method": request.method,
            "path": request.url.path,
            "client": client,
            "status": exc.status,
        },
    )


class TooManyFailuresError(AuthError):
    """Failed logins from one address past the limit."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins from this address; try again later", status=429)
        self.retry_after = retry_after


class RevokedError(AuthError):
    """A valid credential of a person an admin revoked: audited with who it was."""

    def __init__(self, message: str, identity: Identity) -> None:
        super().__init__(message)
        self.identity = identity


def _verify_bearer(services: Services, text: str) -> Identity:
    if text.startswith("bgt_"):
        return services.tokens.verify(text)
    if services.oidc is not None and text.count(".") == 2:
        identity = services.oidc.verify(text)
        s = services.oidc.settings
        why = services.revocations.refuses_bearer(
            identity,
            skew=max(s.revocation_skew, s.leeway),  # a token the leeway accepts is covered too
            longest=s.longest_token_hours * 3600,
        )
        if why is not None:
            raise RevokedError(why, identity)
        return identity
    raise AuthError("the bearer token is neither a breakglass API token nor an accepted OIDC token")


def session_of(services: Services, request: Request) -> Session | None:
    """The console session the request carries, if any and still valid."""
    value = request.cookies.get(services.sessions.cookie)
    if not value:
        return None
    session = services.sessions.read(value)
    tid = session.identity.token_id
    if tid is not None and services.tokens.live(tid) is None:
        raise AuthError("the API token behind this console session was revoked; log in again")
    why = services.revocations.ended(session)
    if why is not None:
        raise AuthError(why)
    renewed = services.sessions.renewal(session)
    if renewed is not None:
        request.state.renewed_session = renewed  # set on the response by the app's middleware
    return session


def _identify(services: Services, request: Request) -> Identity:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, text = header.partition(" ")
        if scheme.lower() != "bearer" or not text.strip():
            raise AuthError("use Authorization: Bearer <token>")
        return _verify_bearer(services, text.strip())
    session = session_of(services, request)
    if session is None:
        raise AuthError("no credentials: send a bearer token or log in to the console")
    if request.method in _UNSAFE:
        try:
            check_same_origin(request, services.public_origin)
            check_csrf(session, request.headers.get("x-csrf-token"))
        except AuthError as exc:
            _deny(services, request, exc, session.identity)
            raise
    request.state.console_session = session
    return session.identity


def authenticate(request: Request) -> Identity:
    """FastAPI dependency: a person's identity (bearer token, or console session with CSRF).

    A reporter token is a service's and is refused here (403): see :func:`authenticate_service`.
    """
    identity = authenticate_service(request)
    if identity.role is Role.REPORTER:
        services: Services = request.app.state.services
        exc = AuthError(
            "a reporter token only sends reader reports and reads the flag over OFREP", status=403
        )
        _deny(services, request, exc, identity)
        raise exc
    return identity


def authenticate_service(request: Request) -> Identity:
    """FastAPI dependency: any caller's identity, a service's reporter token included."""
    known: Identity | None = getattr(request.state, "identity", None)
    if known is not None:
        return known  # checked already for this request, before its body was read
    services: Services = request.app.state.services
    client = client_address(request)
    try:
        identity = _identify(services, request)
    except AuthError as exc:
        if exc.status == 401:
            # Only failures are counted: a valid credential is never refused for its address.
            wait = services.limiter.fail(client_key(client))
            if wait is not None:
                # Past the limit: answered and counted, but no longer audited one by one.
                services.control.metrics.denials.labels("429").inc()
                raise TooManyFailuresError(wait) from None
            _deny(services, request, exc, getattr(exc, "identity", None))
        raise
    request.state.identity = identity
    return identity


class Allowed:
    """FastAPI dependency: the person calling, refused (403) unless their role may do ``doing``.

    Args:
        role: The least role, or a function of the request that gives it (a policy decides some).
        doing: What is refused, as the 403 names it ("halting").
    """

    def __init__(self, role: Role | Callable[[Request], Role], doing: str) -> None:
        self.role = role
        self.doing = doing

    def __call__(self, request: Request) -> Identity:
        """The caller (see :func:`authenticate`), if their role may; else a 403 :class:`AuthError`."""
        identity = authenticate(request)
        identity.require(
            self.role if isinstance(self.role, Role) else self.role(request), self.doing
        )
        return identity


class AuthorizedFirst(APIRoute):
    """A route whose caller's credentials and role are checked before its body is read.

    FastAPI reads a JSON body before it solves any dependency (a body that is not JSON is a
    422 at once): a caller who may not act would get a 422 describing the body, and a 403 only
    once the body was right.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, after the route's credential and role checks (run once each)."""
        handler = super().get_route_handler()
        checks = [
            d.call
            for d in self.dependant.dependencies
            if isinstance(d.call, Allowed) or d.call in (authenticate, authenticate_service)
        ]
        if not checks:
            return handler

        async def checked(request: Request) -> Response:
            for check in checks:
                await run_in_threadpool(check, request)  # the store may be read: off the loop
            return await handler(request)

        return checked


Caller = Annotated[Identity, Depends(authenticate)]
ServiceCaller = Annotated[Identity, Depends(authenticate_service)]
HALTING = Allowed(Role.HALTER, "halting")
RESUMING = Allowed(Role.APPROVER, "resuming")
Halter = Annotated[Identity, Depends(HALTING)]
Approver = Annotated[Identity, Depends(RESUMING)]
TokenAdmin = Annotated[Identity, Depends(Allowed(Role.ADMIN, "managing tokens"))]
SessionAdmin = Annotated[Identity, Depends(Allowed(Role.ADMIN, "ending console sessions"))]


def _problem_for_auth(request: Request, exc: AuthError) -> Response:
    instance = request.url.path
    if isinstance(exc, TooManyFailuresError):
        return problem(
            "too-many-failures",
            429,
            str(exc),
            instance=instance,
            headers={"Retry-After": str(math.ceil(exc.retry_after))},
        )
    if exc.status == 401:
        return problem(
            "unauthenticated",
            401,
            str(exc),
            instance=instance,
            headers={"WWW-Authenticate": 'Bearer realm="breakglass"'},
        )
    return problem("forbidden", exc.status, str(exc), instance=instance)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> Response:
        if exc.status == 403 and not getattr(request.state, "denial_audited", False):
            _deny(
                request.app.state.services, request, exc, getattr(request.state, "identity", None)
            )
        return _problem_for_auth(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem(
            "invalid-request", 422, detail[:1000], instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug = "not-found" if exc.status_code == 404 else "invalid-request"
        return problem(slug, exc.status_code, str(exc.detail), instance=request.url.path)

    # Serve's store, or the audit database under notifications: unusable (down, a grant
    # missing) is a one-line 503 naming what to fix, never a 500 with a traceback.
    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> Response:
        return problem("store-unavailable", 503, str(exc), instance=request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem("internal", 500, "serve failed unexpectedly", instance=request.url.path)


class TokenRequest(BaseModel):
    """The body of ``POST /v1/tokens``."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=100, description="Who or what holds it.")
    role: Literal["viewer", "halter", "approver", "admin"] = Field(description="What it may do.")


class RevokeSessionsRequest(BaseModel):
    """The body of ``POST /v1/sessions/revocations``."""

    model_config = {"extra": "forbid"}

    person: str = Field(
        min_length=1,
        max_length=300,
        description="The subject (oidc:<issuer>#<sub>, token:<id>) or the name the audit trail "
        "shows (the e-mail; any case).",
    )
    reason: str = Field(default="", max_length=500, description="Why (kept and audited).")


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > 255 or not value.isascii() or not value.isprintable():
        raise ValueError("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return value


async def _store_call(services: Services, fn: Any, *args: Any) -> Any:
    """Run a store call on the store's threads, giving up (not cancelling) after a short wait."""
    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(services.control.io_pool, functools.partial(fn, *args))
    return await asyncio.wait_for(pending, _STORE_WAIT)


async def _store_io(services: Services, fn: Callable[[], T]) -> T:
    """Run a store call on the store's threads and wait for it (admin work, not the halt path)."""
    return await asyncio.get_running_loop().run_in_executor(services.control.io_pool, fn)


async def _follow(services: Services, outcome: Outcome) -> None:
    # A background task of the response: runs once the answer is sent, and only starts a thread.
    services.control.follow(outcome)


async def _in_store_pool(services: Services, fn: Any, *args: Any) -> None:
    # Fire and forget on the store's threads: a hanging store never holds the request threads.
    services.control.io_pool.submit(fn, *args)


async def _status(services: Services) -> dict[str, Any]:
    """``GET /v1/status`` without the caller: the decision, targets, suspension and readers (fleet)."""
    info: dict[str, Any] = await asyncio.to_thread(services.control.status)
    info["fleet"] = services.fleet.summary()
    return info


def _outcome_response(outcome: Outcome, request: Request) -> JSONResponse:
    body = outcome.to_dict()
    if outcome.done:
        return JSONResponse(body, status_code=200)
    if not outcome.active:
        return problem(
            "not-halted",
            503,
            "NOT HALTED: no target acknowledged the halt. " + FALLBACK,
            instance=request.url.path,
            fallback=FALLBACK,
            **{k: v for k, v in body.items() if k != "outcome"},
        )
    return problem(
        "not-resumed",
        502,
        "; ".join(outcome.problems),
        instance=request.url.path,
        **{k: v for k, v in body.items() if k != "outcome"},
    )


async def _ofrep(request: Request) -> Response:
    """OFREP from serve's own bridge, exactly as the relay answers it (:mod:`breakglass.ofrep`)."""
    services: Services = request.app.state.services
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = OfrepEndpoint(services.control.bridge.engine).handle(
        "POST", request.url.path, body, headers
    )
    return Response(
        answer.encoded(),
        status_code=answer.status,
        media_type="application/json" if answer.body is not None else None,
        headers=answer.headers,
    )


def _add_api(app: FastAPI) -> None:  # noqa: C901, PLR0915 -- one place lists every route
    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/readyz", tags=["health"], summary="The store answers and the flag has been read")
    async def readyz(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            await _store_call(services, services.control.store.ping)
        except (ServeStoreError, TimeoutError) as exc:
            text = str(exc) or "the store did not answer in time"
            return problem("store-unavailable", 503, text, instance="/readyz")
        return JSONResponse({"ready": True, "store": services.control.store.location})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        services: Services = request.app.state.services
        return Response(
            services.control.metrics.render(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @app.get("/problems/{slug}", include_in_schema=False)
    async def problem_doc(slug: str) -> Response:
        if slug not in TYPES:
            return problem("not-found", 404, f"no problem type {slug!r}")
        title, text = TYPES[slug]
        return PlainTextResponse(f"{title}\n\n{text}\n")

    @app.get("/v1/whoami", tags=["v1"], summary="The authenticated identity")
    async def whoami(identity: Caller) -> dict[str, Any]:
        return identity.to_dict()

    @app.get(
        "/v1/status",
        tags=["v1"],
        summary="The decision, each provider, each target, the suspension",
    )
    async def status(request: Request, identity: Caller) -> dict[str, Any]:
        info = await _status(request.app.state.services)
        info["identity"] = identity.to_dict()
        # Which console session the cookie carries: a page that holds another knows it was replaced.
        session: Session | None = getattr(request.state, "console_session", None)
        info["session"] = session.tag if session is not None else None
        return info

    @app.post(
        "/v1/reports",
        tags=["v1"],
        summary="A reader reports its state (relay, bridge, worker); heartbeats and flips",
        status_code=202,
    )
    async def reports(request: Request, caller: ServiceCaller) -> Response:
        services: Services = request.app.state.services
        if caller.role is not Role.REPORTER:
            # Only a service's token vouches for a reader: no person's can say one stopped.
            return problem(
                "forbidden",
                403,
                "reader reports need a reporter token "
                "(breakglass serve token create NAME --role reporter)",
                instance=request.url.path,
            )
        raw = await request.body()
        if len(raw) > _REPORT_MAX:
            return problem("invalid-request", 413, "a report is at most 4 KiB")
        try:
            report = services.fleet.receive(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            detail = str(exc) if isinstance(exc, ReportError) else "the body is not JSON"
            return problem("invalid-request", 422, detail, instance=request.url.path)
        return JSONResponse({"accepted": report.reader_id}, status_code=202)

    @app.post(
        "/ofrep/v1/evaluate/flags", tags=["ofrep"], summary="OFREP bulk evaluation (with ETag)"
    )
    async def ofrep_bulk(request: Request, _caller: ServiceCaller) -> Response:
        return await _ofrep(request)

    @app.post(
        "/ofrep/v1/evaluate/flags/{key}",
        tags=["ofrep"],
        summary="OFREP: the served flag, always a value (false while unsure)",
    )
    async def ofrep_flag(request: Request, key: str, _caller: ServiceCaller) -> Response:
        del key  # the endpoint reads it from the path, as the relay's does
        return await _ofrep(request)

    @app.get("/v1/fleet", tags=["v1"], summary="Every reader's last report; who is silent")
    async def fleet(request: Request, _caller: Caller) -> dict[str, Any]:
        services: Services = request.app.state.services
        fleet = services.fleet
        return {**fleet.summary(), "source_ids": fleet.source_ids, "reader_list": fleet.readers()}

    @app.post(
        "/v1/halt",
        tags=["v1"],
        summary="Halt every target in parallel; answers once one acknowledged",
        responses={503: {"description": "NOT HALTED (problem details)"}},
    )
    async def halt(
        request: Request,
        body: HaltRequest,
        identity: Halter,
        background: BackgroundTasks,
        idempotency_key: Annotated[str | None, Header()] = None,
        wait: Annotated[str | None, Query(pattern="^fleet$")] = None,
        wait_timeout: Annotated[float, Query(alias="timeout", ge=0, le=60)] = 5.0,
    ) -> Response:
        services: Services = request.app.state.services
        asked_at = services.clock.now()
        try:
            key = _idempotency_key(idempotency_key)
        except ValueError as exc:
            return problem("invalid-request", 400, str(exc), instance=request.url.path)
        claimed = False
        notes: list[str] = []
        if key is not None:
            fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            store = services.control.store
            try:
                claim = await _store_call(
                    services,
                    store.claim_key,
                    identity.subject,
                    key,
                    fingerprint,
                    services.clock.now(),
                )
            except (ServeStoreError, TimeoutError) as exc:
                # Never gate a halt on the store: go on without replay protection, and say so.
                notes.append(f"idempotency key not checked (store: {str(exc) or 'timeout'})")
            else:
                if not claim.fresh:
                    if claim.fingerprint != fingerprint:
                        return problem(
                            "idempotency-key-reused",
                            422,
                            "this Idempotency-Key was used with another body",
                            instance=request.url.path,
                        )
                    if claim.status is None:
                        return problem(
                            "idempotency-key-in-use",
                            409,
                            "a halt with this Idempotency-Key is being answered",
                            instance=request.url.path,
                            headers={"Retry-After": "1"},
                        )
                    return Response(
                        claim.body or "{}",
                        status_code=claim.status,
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
                claimed = True
        outcome = await services.control.run(services.control.halt, identity, body)
        outcome.problems.extend(notes)
        response = _outcome_response(outcome, request)
        audit_event(
            services,
            "halt-request" if outcome.done else "halt-request-failed",
            comment=body.reason,
            identity=identity,
            raw={
                "change_id": outcome.change_id,
                "suspension_id": outcome.suspension_id,
                "targets": [r.target for r in outcome.results if r.ok],
                "incident": body.incident,
            },
        )
        if claimed and key is not None:
            if outcome.done:
                background.add_task(
                    _in_store_pool,
                    services,
                    _complete_key,
                    services,
                    identity.subject,
                    key,
                    response.status_code,
                    bytes(response.body).decode(),
                )
            else:
                # A halt that did not happen must be retried for real, not replayed.
                background.add_task(
                    _in_store_pool, services, _release_key, services, identity.subject, key
                )
        background.add_task(_follow, services, outcome)
        if wait == "fleet" and outcome.done:
            # After the halt took effect upstream: waiting can only delay this answer, never the halt.
            seen = await asyncio.to_thread(services.fleet.wait_halted, asked_at, wait_timeout)
            answer = {**json.loads(bytes(response.body)), "fleet": seen}
            return JSONResponse(answer, status_code=response.status_code)
        return response

    @app.post(
        "/v1/resume",
        tags=["v1"],
        summary="Resume every target (approver; the resumption gate decides)",
        responses={502: {"description": "not resumed everywhere"}, 409: {"description": "gate"}},
    )
    async def resume(
        request: Request, body: ResumeRequest, identity: Approver, background: BackgroundTasks
    ) -> Response:
        services: Services = request.app.state.services
        try:
            outcome = await services.control.run(services.control.resume, identity, body)
        except ResumeRefusedError as exc:
            return problem(
                "resume-refused", 409, str(exc), instance=request.url.path, missing=exc.missing
            )
        audit_event(
            services,
            "resume-request" if outcome.done else "resume-request-failed",
            comment=body.reason,
            identity=identity,
            raw={"change_id": outcome.change_id, "suspension_id": outcome.suspension_id},
        )
        background.add_task(_follow, services, outcome)
        return _outcome_response(outcome, request)

    @app.get(
        "/v1/events", tags=["v1"], summary="Server-sent events: state changes and target results"
    )
    async def events(
        request: Request,
        _caller: Caller,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        services: Services = request.app.state.services
        last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        # The readers' summary too, so a client that (re)connects sees readers of another source.
        snapshot = await _status(services)
        first = f"event: snapshot\ndata: {json.dumps(snapshot, separators=(',', ':'))}\n\n"

        async def stream() -> Any:
            yield first.encode()
            async for chunk in services.control.hub.stream(last):
                # The credentials are checked again before each event (and each heartbeat):
                # a revoked token, an ended session or an expired JWT ends the stream.
                try:
                    await asyncio.to_thread(_identify, services, request)
                except AuthError as exc:
                    logger.info("ended an event stream: %s", exc)
                    return
                yield chunk

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/v1/tokens", tags=["tokens"], summary="The API tokens (admin; never their secrets)")
    async def tokens(request: Request, _admin: TokenAdmin) -> dict[str, Any]:
        services: Services = request.app.state.services
        listed = await _store_io(services, services.tokens.list)
        return {"tokens": [t.public() for t in listed]}

    @app.post(
        "/v1/tokens",
        tags=["tokens"],
        status_code=201,
        summary="Make a named token (admin); its text is in this answer only",
    )
    async def make_token(request: Request, body: TokenRequest, identity: TokenAdmin) -> Response:
        services: Services = request.app.state.services
        try:
            stored, text = await _store_io(
                services,
                lambda: services.tokens.create(body.name, Role.parse(body.role), by=identity.actor),
            )
        except ServeStoreError as exc:
            if "exists already" not in str(exc):
                raise
            return problem("invalid-request", 409, str(exc), instance=request.url.path)
        except BreakglassError as exc:
            return problem("invalid-request", 422, str(exc), instance=request.url.path)
        audit_event(
            services, "token-created", comment=f"{stored.name} ({stored.role})", identity=identity
        )
        return JSONResponse({**stored.public(), "token": text}, status_code=201)

    @app.delete("/v1/tokens/{name}", tags=["tokens"], summary="Revoke a token (admin)")
    async def revoke_token(request: Request, name: str, identity: TokenAdmin) -> Response:
        services: Services = request.app.state.services
        done = await _store_io(services, lambda: services.tokens.revoke(name, by=identity.actor))
        if not done:
            return problem(
                "not-found", 404, f"no live token called {name!r}", instance=request.url.path
            )
        audit_event(services, "token-revoked", comment=name, identity=identity)
        return Response(status_code=204)

    @app.post(
        "/v1/sessions/revocations",
        tags=["sessions"],
        summary="End a person's console sessions on every replica (admin)",
    )
    async def revoke_sessions(
        request: Request, body: RevokeSessionsRequest, identity: SessionAdmin
    ) -> Response:
        services: Services = request.app.state.services
        try:
            done = await _store_io(
                services,
                lambda: services.revocations.revoke(
                    body.person, by=identity.actor, reason=body.reason
                ),
            )
        except ServeStoreError:
            raise
        except BreakglassError as exc:
            return problem("invalid-request", 422, str(exc), instance=request.url.path)
        audit_event(
            services,
            "sessions-revoked",
            comment=f"{done.person}: {done.reason}" if done.reason else done.person,
            identity=identity,
            raw=done.public(),
        )
        return JSONResponse(done.public())

    @app.get(
        "/v1/sessions/revocations",
        tags=["sessions"],
        summary="Whose console sessions were ended, by whom, when (admin)",
    )
    async def session_revocations(request: Request, _admin: SessionAdmin) -> dict[str, Any]:
        services: Services = request.app.state.services
        listed = await _store_io(services, services.revocations.list)
        return {"revocations": [r.public() for r in listed]}

    @app.get("/v1/suspensions", tags=["v1"], summary="The latest halt episodes, newest first")
    async def suspensions(
        request: Request, _caller: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> dict[str, Any]:
        services: Services = request.app.state.services
        items = await asyncio.to_thread(services.control.store.suspensions, limit)
        return {"suspensions": [s.to_dict() for s in items]}

    @app.get("/v1/audit", tags=["v1"], summary="Audit records, filtered and paged (oldest first)")
    async def audit(
        request: Request,
        _caller: Caller,
        provider: Annotated[list[str] | None, Query()] = None,
        flag: Annotated[list[str] | None, Query()] = None,
        since: Annotated[datetime | None, Query()] = None,
        until: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        services: Services = request.app.state.services
        try:
            page = await asyncio.to_thread(
                _audit_page, services, provider, flag, since, until, limit, offset
            )
        except BreakglassError as exc:
            return problem("store-unavailable", 503, str(exc), instance=request.url.path)
        return JSONResponse(page)


def _audit_page(
    services: Services,
    providers: list[str] | None,
    flags: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    from itertools import islice

    from breakglass.audit.store import AuditQuery, open_audit_store

    query = AuditQuery(
        providers=tuple(providers or ()),
        flags=tuple(flags or ()),
        since=parse_iso(since.isoformat()) if since else None,
        until=parse_iso(until.isoformat()) if until else None,
    )
    store = open_audit_store(services.control.bridge.settings)
    try:
        total = store.count(query)
        rows = list(islice(store.iter_rows(query), offset, offset + limit))
    finally:
        store.close()
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if offset + limit < total else None,
        "records": [json.loads(r.canonical) for r in rows],
    }


def _complete_key(services: Services, actor: str, key: str, status: int, body: str) -> None:
    try:
        services.control.store.complete_key(actor, key, status, body)
    except ServeStoreError as exc:
        logger.error("cannot keep the answer for an idempotency key: %s", exc)  # noqa: TRY400 -- one line


def _release_key(services: Services, actor: str, key: str) -> None:
    try:
        services.control.store.release_key(actor, key)
    except ServeStoreError as exc:
        logger.error("cannot release an idempotency key: %s", exc)  # noqa: TRY400 -- one line


def create_app(services: Services) -> FastAPI:
    """The FastAPI app: API, console, problem details, security headers."""
    from breakglass.drill.serve_routes import add_drill
    from breakglass.hold.serve_routes import add_hold
    from breakglass.notify.serve_routes import add_notify
    from breakglass.resume.serve_routes import add_resume
    from breakglass.serve.console import add_console

    app = FastAPI(
        title="breakglass serve",
        version="1",
        summary="The stop button of a high-risk AI system: halt, resume, status, audit.",
        docs_url=None,  # the interactive docs load scripts from a CDN, which the CSP forbids
        redoc_url=None,
    )
    app.state.services = services
    app.router.route_class = AuthorizedFirst  # every route added below
    _install_handlers(app)
    _add_api(app)
    add_console(app)
    add_notify(app, services)
    add_resume(app, services)
    add_hold(app, services)
    add_drill(app, services)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        renewed = getattr(request.state, "renewed_session", None)
        cookie = services.sessions.cookie + "="
        if renewed is not None and not any(
            v.startswith(cookie) for v in response.headers.getlist("set-cookie")
        ):
            # The session was used: its idle time starts again (unless this answer logs out or in).
            response.set_cookie(value=renewed, **services.sessions.cookie_options())
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # Not no-referrer: with it, browsers send `Origin: null` on form posts and the origin check fails.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
