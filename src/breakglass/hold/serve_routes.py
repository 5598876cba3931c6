"""Reviewing held decisions in serve: the API, the console's panel and forms.

:func:`add_hold` is called by serve's app factory. Held decisions live in
serve's own database (the ``held_decisions`` table), written there by the
inference service's :class:`~breakglass.hold.HoldQueue`. Routes (behind serve's login):

* ``GET  /v1/held?state=held`` — decisions held (or released, discarded, delivered);
* ``POST /v1/held/release`` ``{"tickets": [...] | null, "reason": ...}`` — release (approver);
* ``POST /v1/held/discard`` — the same, discarding;
* ``POST /console/held`` — the console's form.

Releasing waits for the gated resume: while the system is halted or a
suspension is open, a release is refused (a discard is not).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, RedirectResponse, Response

from breakglass.errors import BreakglassError
from breakglass.hold.store import HoldError, HoldStore
from breakglass.serve.app import Allowed, Caller, Services, audit_event
from breakglass.serve.auth import Identity, Role
from breakglass.serve.problems import problem


class ReviewBody(BaseModel):
    """The body of ``POST /v1/held/release`` and ``/discard``. The reviewer is the identity."""

    model_config = {"extra": "forbid"}

    tickets: list[str] | None = Field(
        default=None, max_length=10_000, description="The tickets; null for every one held."
    )
    reason: str = Field(min_length=1, max_length=2000, description="Why (kept with each decision).")


def holds_of(services: Services) -> HoldStore:
    """The held decisions in serve's database."""
    holds = services.extra.get("holds")
    if holds is None:
        holds = HoldStore(services.control.store, services.clock)  # type: ignore[arg-type]  # a _SqlStore
        services.extra["holds"] = holds
    return holds


def held_panel(services: Services) -> list[dict[str, Any]]:
    """Decisions still held, for the console (empty when the store is away)."""
    try:
        return [h.to_dict() for h in holds_of(services).decisions(("held",), 200)]
    except BreakglassError:
        return []


def review(
    services: Services,
    identity: Identity,
    action: Literal["release", "discard"],
    tickets: list[str] | None,
    reason: str,
) -> list[str]:
    """Release or discard as ``identity``; refused (HoldError) while a release would run halted."""
    identity.require(Role.APPROVER, f"{action} held decisions")
    reason = reason.strip()
    if not reason:
        raise HoldError("give a reason for the review")
    if action == "release":
        if not services.control.bridge.engine.active:
            raise HoldError("the system is halted: release held decisions after the gated resume")
        if services.control.store.open_suspension() is not None:
            raise HoldError("a suspension is open: release held decisions after the gated resume")
    changed = holds_of(services).review(
        action, tickets=tickets, actor=identity.actor, reason=reason
    )
    audit_event(
        services,
        f"held-{action}",
        comment=reason,
        identity=identity,
        raw={"tickets": changed, "asked": tickets},
    )
    return changed


REVIEWING = Allowed(Role.APPROVER, "reviewing held decisions")
Reviewer = Annotated[Identity, Depends(REVIEWING)]


def add_hold(app: FastAPI, services: Services) -> None:
    """Mount the review routes; the suspension record counts the held decisions."""
    holds_of(services)

    @app.get("/v1/held", tags=["v1"], summary="Decisions held while halted, for review")
    async def held(
        request: Request,
        _caller: Caller,
        state: Annotated[
            list[Literal["held", "released", "discarded", "delivered"]] | None, Query()
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        store = holds_of(request.app.state.services)
        found = await asyncio.to_thread(store.decisions, tuple(state or ("held",)), limit)
        return {"decisions": [h.to_dict() for h in found]}

    async def _review(
        request: Request,
        identity: Identity,
        action: Literal["release", "discard"],
        body: ReviewBody,
    ) -> Response:
        services: Services = request.app.state.services
        try:
            changed = await asyncio.to_thread(
                review, services, identity, action, body.tickets, body.reason
            )
        except HoldError as exc:
            return problem("gate-refused", 409, str(exc), instance=request.url.path)
        return JSONResponse({"action": action, "changed": changed})

    @app.post("/v1/held/release", tags=["v1"], summary="Release held decisions (after the resume)")
    async def release(request: Request, body: ReviewBody, identity: Reviewer) -> Response:
        return await _review(request, identity, "release", body)

    @app.post("/v1/held/discard", tags=["v1"], summary="Discard held decisions")
    async def discard(request: Request, body: ReviewBody, identity: Reviewer) -> Response:
        return await _review(request, identity, "discard", body)

    @app.post("/console/held", include_in_schema=False)
    async def console_held(request: Request) -> Response:
        from breakglass.serve.console import _form_session, render_console

        form = await request.form()
        session = _form_session(request, str(form.get("csrf", "")), REVIEWING)
        action = str(form.get("action", ""))
        if action not in ("release", "discard", "release-all"):
            return await render_console(request, session, error="Choose release or discard.")
        tickets = None if action == "release-all" else [str(t) for t in form.getlist("ticket")]
        if tickets == []:
            return await render_console(request, session, error="Select held decisions first.")
        try:
            await asyncio.to_thread(
                review,
                request.app.state.services,
                session.identity,
                "discard" if action == "discard" else "release",
                tickets,
                str(form.get("reason", "")),
            )
        except HoldError as exc:
            return await render_console(request, session, error=str(exc))
        return RedirectResponse("/#held", status_code=303)
