"""The notification chain inside serve: its public routes, the console's panel, acknowledging.

:func:`add_notify` is called by serve's app factory. When serve runs a
:class:`~breakglass.notify.listener.NotifyListener`, it mounts
:class:`~breakglass.notify.web.NotifyApp` at ``/notify`` (signed links,
PagerDuty webhooks, deployer status pages) and adds, behind serve's login:

* ``GET  /v1/notifications/{suspension_id}`` — per group: sent, delivered,
  acknowledged, and when; each notification's state and last answer;
* ``POST /v1/notifications/{suspension_id}/ack`` ``{"group": …}`` — acknowledge as
  the authenticated identity;
* ``POST /console/notify/ack`` — the console's acknowledge button.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from pydantic import BaseModel, Field
from starlette.responses import RedirectResponse, Response

from breakglass.errors import AuthError
from breakglass.notify.ack import AckError
from breakglass.notify.listener import NotifyListener
from breakglass.notify.web import NotifyApp
from breakglass.serve.app import Allowed, Caller, Services, audit_event
from breakglass.serve.auth import Identity, Role

if TYPE_CHECKING:
    from breakglass.notify.notifier import Notifier

ACKNOWLEDGING = Allowed(Role.VIEWER, "acknowledging a notification")
"""Any person may acknowledge for a group (a service's reporter token may not): API and console alike."""
Acknowledger = Annotated[Identity, Depends(ACKNOWLEDGING)]


class AckBody(BaseModel):
    """The body of ``POST /v1/notifications/{suspension_id}/ack``."""

    model_config = {"extra": "forbid"}

    group: str = Field(min_length=1, max_length=63, description="The policy group acknowledging.")


def find_notifier(services: Services) -> Notifier | None:
    """The notifier serve's listeners include, if any."""
    for listener in services.control.listeners.listeners:
        if isinstance(listener, NotifyListener):
            return listener.notifier
    return None


def notification_panel(services: Services, status: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per group of the open suspension, for the console (``None``: no notification chain)."""
    notifier = services.extra.get("notifier")
    if notifier is None:
        return None
    suspension = status.get("suspension") or {}
    if not suspension.get("id"):
        return []
    return [g.as_dict() for g in notifier.status(str(suspension["id"]))]


def _acknowledge(
    services: Services, notifier: Notifier, suspension_id: str, group: str, identity: Any
) -> bool:
    try:
        new = notifier.acknowledge(suspension_id, group, actor=identity.actor, via="console")
    except AckError as exc:
        raise AuthError(str(exc), status=404) from None
    audit_event(
        services,
        "notification-ack",
        comment=f"{group} acknowledged suspension {suspension_id}",
        identity=identity,
        raw={"suspension_id": suspension_id, "group": group, "new": new},
    )
    return new


def add_notify(app: FastAPI, services: Services) -> None:
    """Add the notification routes when serve runs the notification chain."""
    notifier = find_notifier(services)
    if notifier is None:
        return
    services.extra["notifier"] = notifier
    app.mount("/notify", NotifyApp(notifier))

    @app.get(
        "/v1/notifications/{suspension_id}",
        tags=["v1"],
        summary="Who was told, and who acknowledged",
    )
    async def notifications(suspension_id: str, identity: Caller) -> dict[str, Any]:  # noqa: ARG001 -- the login is the point
        groups = await asyncio.to_thread(notifier.status, suspension_id)
        return {"suspension_id": suspension_id, "groups": [g.as_dict() for g in groups]}

    @app.post(
        "/v1/notifications/{suspension_id}/ack", tags=["v1"], summary="Acknowledge for a group"
    )
    async def acknowledge(
        suspension_id: str, body: AckBody, identity: Acknowledger
    ) -> dict[str, Any]:
        new = await asyncio.to_thread(
            _acknowledge, services, notifier, suspension_id, body.group, identity
        )
        return {"suspension_id": suspension_id, "group": body.group, "new": new}

    @app.post("/console/notify/ack", include_in_schema=False)
    async def console_acknowledge(
        request: Request, csrf: str = Form(""), suspension_id: str = Form(""), group: str = Form("")
    ) -> Response:
        from breakglass.serve.console import _form_session

        session = _form_session(request, csrf, ACKNOWLEDGING)
        await asyncio.to_thread(
            _acknowledge, services, notifier, suspension_id, group, session.identity
        )
        return RedirectResponse("/#notifications", status_code=303)
