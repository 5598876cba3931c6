"""The resumption gate inside serve: its API routes, the console's resume panel, the record.

:func:`add_resume` is called by serve's app factory. Routes (behind serve's login):

* ``GET  /v1/resume`` — the gate for the open suspension: checklist, approvals,
  conditions, and what is missing;
* ``POST /v1/resume/checklist/{item}`` ``{"answer": …}`` — tick an item;
* ``POST /v1/resume/approvals`` ``{"comment": …}`` — approve, as the authenticated identity;
* ``POST /v1/resume/conditions/{id}`` — a probe report (``breakglass probe --json``);
* ``POST /v1/suspensions`` ``{"via": "killswitch", "reason": …}`` — record a halt made another way;
* ``GET  /v1/suspensions/{id}`` — the suspension record;
* ``GET  /v1/suspensions/{id}/report.html`` and ``/report.pdf`` — the suspension report;
* ``POST /console/resume/check`` and ``/console/resume/approve`` — the console's forms.

``POST /v1/resume`` itself stays in the app: it asks :class:`~breakglass.resume.gate.PolicyGate`
through the ``ResumeGate`` seam and answers 409 with the missing items.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from breakglass.clock import isoformat_ms
from breakglass.errors import AuthError, BreakglassError
from breakglass.resume.gate import GateError, GateView, PolicyGate
from breakglass.resume.record import audit_record, build_record
from breakglass.serve.app import PROVIDER, Allowed, Caller, Services, audit_event
from breakglass.serve.auth import Identity, Role
from breakglass.serve.listeners import SuspensionEvent
from breakglass.serve.problems import problem
from breakglass.serve.store import Suspension

if TYPE_CHECKING:
    from breakglass.serve.sessions import Session

logger = logging.getLogger("breakglass.resume")


class TickBody(BaseModel):
    """The body of ``POST /v1/resume/checklist/{item}``."""

    model_config = {"extra": "forbid"}

    answer: str | None = Field(default=None, max_length=2000, description="The free-text answer.")


class ElsewhereHalt(BaseModel):
    """The body of ``POST /v1/suspensions``: a halt made another way, recorded (nothing is halted)."""

    model_config = {"extra": "forbid"}

    via: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9 ._-]*$",
        description="killswitch, ...",
    )
    reason: str = Field(min_length=1, max_length=2000)
    incident: str | None = Field(default=None, max_length=200)


class ApproveBody(BaseModel):
    """The body of ``POST /v1/resume/approvals``. The approver is the authenticated identity."""

    model_config = {"extra": "forbid"}

    comment: str | None = Field(default=None, max_length=2000)


def gate_of(services: Services) -> PolicyGate | None:
    """The resumption gate serve runs, when a policy is in force."""
    gate = services.control.gate
    return gate if isinstance(gate, PolicyGate) else None


def _item_role(request: Request, item_id: str) -> Role:
    """The role the policy names for the item ticked; the least role for an item it does not name."""
    gate = gate_of(request.app.state.services)
    named = {i.id: i.role for i in gate.policy.checklist} if gate else {}
    role = named.get(item_id)
    return Role.parse(role) if role else Role.VIEWER


def _tick_role(request: Request) -> Role:
    return _item_role(request, request.path_params.get("item_id", ""))


def _approver_role(request: Request) -> Role:
    gate = gate_of(request.app.state.services)
    return Role.parse(gate.policy.approver_role) if gate else Role.APPROVER


_TICKING = "ticking a checklist item"
_APPROVING = Allowed(_approver_role, "approving a resume")
Ticker = Annotated[Identity, Depends(Allowed(_tick_role, _TICKING))]
ResumeApprover = Annotated[Identity, Depends(_APPROVING)]
ProbeSubmitter = Annotated[Identity, Depends(Allowed(Role.HALTER, "submitting a probe"))]
Recorder = Annotated[Identity, Depends(Allowed(Role.HALTER, "recording a halt"))]


def resume_panel(services: Services) -> dict[str, Any] | None:
    """The gate for the console (``None``: no policy, an approver resumes alone)."""
    gate = gate_of(services)
    if gate is None:
        return None
    try:
        return gate.view().to_dict()
    except BreakglassError as exc:
        return {"error": str(exc), "missing": [str(exc)], "checklist": [], "approvals": []}


def suspension_record(services: Services, suspension_id: str) -> dict[str, Any] | None:
    """The full record of one suspension, or ``None`` when there is no such suspension."""
    store = services.control.store
    suspension = store.suspension(suspension_id)
    if suspension is None:
        return None
    entries = store.entries(suspension_id)
    gate = gate_of(services)
    view: GateView | None = gate.view_of(suspension, entries) if gate else None
    notifier = services.extra.get("notifier")
    notifications = None
    if notifier is not None:
        try:
            notifications = [g.as_dict() for g in notifier.status(suspension_id)]
        except BreakglassError as exc:
            notifications = [{"error": str(exc)}]
    held = None
    holds = services.extra.get("holds")
    if holds is not None:
        held = holds.summary(since=suspension.opened_at, until=suspension.closed_at)
    return build_record(
        suspension,
        entries,
        now=services.clock.now(),
        gate=view,
        notifications=notifications,
        held=held,
    )


def export_record(services: Services, suspension_id: str) -> None:
    """Write the closed suspension's record into the audit chain (after the resume answered)."""
    try:
        record = suspension_record(services, suspension_id)
    except BreakglassError as exc:
        logger.error("the suspension record %s was not exported: %s", suspension_id, exc)  # noqa: TRY400 -- one line
        return
    if record is None:
        return
    services.recorder.record(
        audit_record(record, flag_key=services.control.bridge.settings.flag_key, provider=PROVIDER)
    )


def record_halt_elsewhere(
    services: Services, identity: Identity, body: ElsewhereHalt
) -> tuple[str, bool]:
    """Open (or join) the suspension for a halt made outside serve; its id, and whether it is new."""
    now = services.clock.now()
    halt = {
        "at": isoformat_ms(now),
        "actor": identity.to_dict(),
        "via": body.via,
        "reason": body.reason,
    }
    fresh = Suspension(
        id=uuid.uuid4().hex,
        opened_at=now,
        opened_by=identity.actor,
        reason=body.reason,
        incident=body.incident,
        personal_data_affected=False,
        business_continuity=False,
        halts=[halt],
        targets={},
    )
    sid = services.control.store.record_halt(fresh)
    opened = sid == fresh.id
    if opened:
        services.control.listeners.emit(
            SuspensionEvent(
                kind="halt",
                suspension_id=sid,
                actor=identity.to_dict(),
                reason=f"{body.reason} (halted via {body.via})",
                at=now,
                incident=body.incident,
            )
        )
    return sid, opened


def _gate_problem(request: Request, exc: GateError) -> Response:
    return problem(
        "gate-refused", exc.status, str(exc), instance=request.url.path, missing=exc.missing
    )


def add_resume(app: FastAPI, services: Services) -> None:
    """Mount the gate's routes, watch for halts and resumes outside serve, export closed records."""
    from breakglass.resume.watch import SuspensionWatch

    services.control.on_close.append(lambda sid: export_record(services, sid))
    gate = gate_of(services)
    watch = SuspensionWatch(
        services.control, gate.policy if gate else None, clock=services.clock
    ).start()
    services.extra["watch"] = watch
    services.control.closers.append(watch.close)
    _add_api(app)
    _add_console(app)


def _add_api(app: FastAPI) -> None:  # noqa: C901 -- one place lists the routes
    @app.get("/v1/resume", tags=["v1"], summary="The resumption gate: what is done and missing")
    async def gate_status(request: Request, _caller: Caller) -> Response:
        services: Services = request.app.state.services
        gate = gate_of(services)
        if gate is None:
            return JSONResponse(
                {"gated": False, "missing": [], "detail": "no policy: an approver resumes alone"}
            )
        view = await asyncio.to_thread(gate.view)
        return JSONResponse({"gated": True, **view.to_dict()})

    async def _change(
        request: Request, identity: Identity, kind: str, comment: str, call: Any, *args: Any
    ) -> Response:
        services: Services = request.app.state.services
        gate = gate_of(services)
        if gate is None:
            return problem("not-found", 404, "no resumption policy is in force")
        try:
            view = await asyncio.to_thread(call, gate, identity, *args)
        except GateError as exc:
            audit_event(services, f"{kind}-refused", comment=str(exc), identity=identity)
            return _gate_problem(request, exc)
        except AuthError:
            raise
        audit_event(services, kind, comment=comment, identity=identity, raw={"args": list(args)})
        return JSONResponse({"gated": True, **view.to_dict()})

    @app.post("/v1/resume/checklist/{item_id}", tags=["v1"], summary="Tick a checklist item")
    async def tick(request: Request, item_id: str, body: TickBody, identity: Ticker) -> Response:
        return await _change(
            request,
            identity,
            "resume-check",
            body.answer or "",
            PolicyGate.tick,
            item_id,
            body.answer,
        )

    @app.post("/v1/resume/approvals", tags=["v1"], summary="Approve the resume (one per person)")
    async def approve(request: Request, body: ApproveBody, identity: ResumeApprover) -> Response:
        return await _change(
            request,
            identity,
            "resume-approval",
            body.comment or "",
            PolicyGate.approve,
            body.comment,
        )

    @app.post(
        "/v1/resume/conditions/{condition_id}",
        tags=["v1"],
        summary="Submit a probe report (breakglass probe --json) for a condition",
    )
    async def condition(
        request: Request, condition_id: str, body: dict[str, Any], identity: ProbeSubmitter
    ) -> Response:
        return await _change(
            request,
            identity,
            "resume-condition",
            condition_id,
            PolicyGate.record_probe,
            condition_id,
            body,
        )

    @app.post(
        "/v1/suspensions",
        tags=["v1"],
        summary="Record a halt made another way (the kill switch, a dashboard); halts nothing itself",
        status_code=201,
    )
    async def record_elsewhere(
        request: Request, body: ElsewhereHalt, identity: Recorder
    ) -> Response:
        services: Services = request.app.state.services
        sid, opened = await asyncio.to_thread(record_halt_elsewhere, services, identity, body)
        audit_event(
            services,
            "halt-recorded",
            comment=body.reason,
            identity=identity,
            raw={"suspension_id": sid, "via": body.via, "opened": opened},
        )
        return JSONResponse({"suspension_id": sid, "opened": opened}, status_code=201)

    @app.get("/v1/suspensions/{suspension_id}", tags=["v1"], summary="One suspension's record")
    async def record(request: Request, suspension_id: str, _caller: Caller) -> Response:
        services: Services = request.app.state.services
        found = await asyncio.to_thread(suspension_record, services, suspension_id)
        if found is None:
            return problem("not-found", 404, f"no suspension {suspension_id!r}")
        return JSONResponse(found)

    @app.get(
        "/v1/suspensions/{suspension_id}/report.{form}",
        tags=["v1"],
        summary="The one-page suspension report (html, or pdf printed by chromium)",
    )
    async def report(request: Request, suspension_id: str, form: str, _caller: Caller) -> Response:
        from breakglass.resume.report import ReportRenderError, render_html, render_pdf

        services: Services = request.app.state.services
        if form not in ("html", "pdf"):
            return problem("not-found", 404, "the report is report.html or report.pdf")
        found = await asyncio.to_thread(suspension_record, services, suspension_id)
        if found is None:
            return problem("not-found", 404, f"no suspension {suspension_id!r}")
        if form == "html":
            return HTMLResponse(
                render_html(found),
                headers={
                    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"
                },
            )
        try:
            pdf = await asyncio.to_thread(render_pdf, found)
        except ReportRenderError as exc:
            return problem("internal", 503, str(exc), instance=request.url.path)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="suspension-{suspension_id}.pdf"'},
        )


def _add_console(app: FastAPI) -> None:
    from breakglass.serve.console import _form_session

    async def _after(request: Request, session: Session, call: Any, *args: Any) -> Response:
        from breakglass.serve.console import render_console

        services: Services = request.app.state.services
        gate = gate_of(services)
        if gate is None:
            return RedirectResponse("/", status_code=303)
        try:
            await asyncio.to_thread(call, gate, session.identity, *args)
        except GateError as exc:
            audit_event(services, "resume-refused", comment=str(exc), identity=session.identity)
            detail = "; ".join([str(exc), *exc.missing])
            return await render_console(request, session, error=detail)
        audit_event(
            services,
            call.__name__,
            comment="console form",
            identity=session.identity,
            raw={"args": list(args)},
        )
        return RedirectResponse("/#resume", status_code=303)

    @app.post("/console/resume/check", include_in_schema=False)
    async def console_check(
        request: Request, csrf: str = Form(""), item: str = Form(""), answer: str = Form("")
    ) -> Response:
        # The item is in the form, not the path: its role is checked as the API checks it.
        ticking = Allowed(lambda r: _item_role(r, item), _TICKING)
        session = _form_session(request, csrf, ticking)
        return await _after(request, session, PolicyGate.tick, item, answer or None)

    @app.post("/console/resume/approve", include_in_schema=False)
    async def console_approve(
        request: Request, csrf: str = Form(""), comment: str = Form("")
    ) -> Response:
        session = _form_session(request, csrf, _APPROVING)
        return await _after(request, session, PolicyGate.approve, comment or None)
