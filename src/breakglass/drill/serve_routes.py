"""The drill's live view in serve: the drill posts its progress, the console shows it.

* ``POST /v1/drill/progress`` ``{"drill_id", "phase", "text"}`` (halter) — one line of a
  running drill; serve keeps the last lines of the latest drill and sends each as a ``drill``
  server-sent event;
* ``GET /v1/drill/progress`` — the latest drill's lines (the console reads them on load);
* ``GET /v1/drills`` — past drills (``<state_dir>/drills``, each verified against the audit
  export key) with their verdicts and each deficiency's remediation;
* ``POST /v1/drills/{drill_id}/remediation`` ``{"deficiency", "action", "closed"}`` (admin) and
  the console's ``POST /console/drill/remediate`` — a closure, recorded exactly as
  ``breakglass drill remediate`` records it (:func:`breakglass.drill.evidence.remediate`).

Progress is a view, not evidence: it lives in memory and is lost on restart; the drill's
signed report is the record.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from pydantic import BaseModel, Field, field_validator
from starlette.responses import RedirectResponse, Response

from breakglass.clock import isoformat_ms
from breakglass.errors import AuthError, BreakglassError, ConfigurationError
from breakglass.serve.app import Allowed, Caller, Services, audit_event
from breakglass.serve.auth import Identity, Role
from breakglass.serve.problems import problem

if TYPE_CHECKING:
    from breakglass.audit.signing import PublicKey

KEEP = 200
_ID = re.compile(r"^drill-[0-9A-Za-z-]{1,60}$")


class ProgressBody(BaseModel):
    """One line of a running drill."""

    model_config = {"extra": "forbid"}

    drill_id: str
    phase: str = Field(min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=500)

    @field_validator("drill_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            msg = "a drill id such as drill-20261205T103000Z-1a2b"
            raise ValueError(msg)
        return value

    @field_validator("phase", "text")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            msg = "must not contain control characters"
            raise ValueError(msg)
        return value


class DrillBoard:
    """The latest drill's lines. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.drill_id: str | None = None
        self.lines: deque[dict[str, Any]] = deque(maxlen=KEEP)

    def add(self, line: dict[str, Any]) -> None:
        """Keep ``line``; a new drill id starts a new board."""
        with self._lock:
            if line["drill_id"] != self.drill_id:
                self.drill_id = line["drill_id"]
                self.lines.clear()
            self.lines.append(line)

    def snapshot(self) -> dict[str, Any]:
        """The drill id and its lines, oldest first."""
        with self._lock:
            return {"drill_id": self.drill_id, "lines": list(self.lines)}


REMEDIATOR = Role.ADMIN
"""Who closes a deficiency on the console: the Technical Owner administers the procedure."""


class RemediationBody(BaseModel):
    """A closure (or progress, ``closed: false``) of one deficiency."""

    model_config = {"extra": "forbid"}

    deficiency: str = Field(pattern=r"^D[0-9]{1,4}$")
    action: str = Field(min_length=1, max_length=2000)
    closed: bool = True


def _public_key() -> PublicKey | None:
    # The drills' evidence is signed with the audit export key; serve checks it with its public half.
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.signing import load_signer

    try:
        path = load_audit_settings().signing_key
        return load_signer(path).public_key() if path is not None else None
    except BreakglassError:
        return None


def evidence_dir(services: Services) -> Path:
    """Where drills keep their evidence: ``<state_dir>/drills``, as ``breakglass drill`` does."""
    return services.control.bridge.settings.state_dir / "drills"


def drill_panel(services: Services) -> dict[str, Any]:
    """Past drills for the console: verdicts, deficiencies, each one's remediation."""
    from breakglass.drill.evidence import history, remediations

    key = services.extra.get("drill-key")
    if key is None:
        return {"drills": [], "problem": "audit.signing_key is not set: drills cannot be verified"}
    directory = evidence_dir(services)
    drills = []
    for entry in history(directory, key):
        folder = directory / entry.drill_id
        closures = {str(r.get("deficiency")): r for r in remediations(folder)}
        data = _report(folder) if entry.verdict != "INVALID" else {}
        drills.append(
            {
                "drill_id": entry.drill_id,
                "started_at": isoformat_ms(entry.started_at) if entry.started_at else None,
                "environment": entry.environment,
                "verdict": entry.verdict,
                "problems": entry.problems,
                "deficiencies": [
                    {
                        "id": d["id"],
                        "text": d.get("text", ""),
                        "open": d["id"] in entry.open,
                        "remediation": closures.get(d["id"]),
                    }
                    for d in data.get("deficiencies") or []
                ],
            }
        )
    return {"drills": drills, "problem": None}


def _report(folder: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _close(services: Services, identity: Identity, drill_id: str, body: RemediationBody) -> Any:
    from breakglass.drill.evidence import remediate

    identity.require(REMEDIATOR, "closing a drill's deficiency")
    folder = evidence_dir(services) / drill_id
    if not _ID.match(drill_id) or not folder.is_dir():
        raise ConfigurationError(f"no drill {drill_id!r} on record")
    return remediate(
        services.control.bridge.settings,
        folder,
        body.deficiency,
        action=body.action,
        by=identity.name,
        closed=body.closed,
    )


Reporter = Annotated[Identity, Depends(Allowed(Role.HALTER, "reporting a drill"))]
REMEDIATING = Allowed(REMEDIATOR, "closing a drill's deficiency")
Remediator = Annotated[Identity, Depends(REMEDIATING)]


def add_drill(app: FastAPI, services: Services) -> None:
    """Add the drill's progress, history and remediation routes."""
    board = DrillBoard()
    services.extra["drill"] = board
    services.extra["drill-key"] = _public_key()
    _add_remediation(app)

    @app.post("/v1/drill/progress", tags=["v1"], summary="A line of a running drill (halter)")
    async def progress(body: ProgressBody, identity: Reporter) -> dict[str, Any]:
        line = {
            **body.model_dump(),
            "by": identity.actor,
            "at": isoformat_ms(services.clock.now()),
        }
        board.add(line)
        services.control.hub.publish("drill", line)
        return {"accepted": True}

    @app.get("/v1/drill/progress", tags=["v1"], summary="The latest drill's progress")
    async def progress_view(_caller: Caller) -> dict[str, Any]:
        return board.snapshot()


def _add_remediation(app: FastAPI) -> None:
    from breakglass.serve.console import _form_session, render_console

    @app.get("/v1/drills", tags=["v1"], summary="Past drills and their deficiencies' remediation")
    async def drills(request: Request, _caller: Caller) -> dict[str, Any]:
        return await asyncio.to_thread(drill_panel, request.app.state.services)

    @app.post(
        "/v1/drills/{drill_id}/remediation",
        tags=["v1"],
        summary="Record a deficiency's remediation (admin)",
    )
    async def remediation(
        request: Request, drill_id: str, body: RemediationBody, identity: Remediator
    ) -> Any:
        services: Services = request.app.state.services
        try:
            return await asyncio.to_thread(_close, services, identity, drill_id, body)
        except ConfigurationError as exc:
            return problem("invalid-request", 422, str(exc), instance=request.url.path)

    @app.post("/console/drill/remediate", include_in_schema=False)
    async def console_remediate(
        request: Request,
        csrf: str = Form(""),
        drill_id: str = Form(""),
        deficiency: str = Form(""),
        action: str = Form(""),
        closed: str | None = Form(None),
    ) -> Response:
        services: Services = request.app.state.services
        session = _form_session(request, csrf, REMEDIATING)
        try:
            body = RemediationBody(deficiency=deficiency, action=action, closed=closed is not None)
            await asyncio.to_thread(_close, services, session.identity, drill_id, body)
        except (AuthError, BreakglassError, ValueError) as exc:
            audit_event(
                services, "drill-remediation-refused", comment=str(exc), identity=session.identity
            )
            message = str(exc) if isinstance(exc, BreakglassError) else "Say what was done."
            return await render_console(request, session, error=message)
        return RedirectResponse("/#drills", status_code=303)
