"""The drill's live view in serve: the drill posts its progress, the console shows it.

* ``POST /v1/drill/progress`` ``{"drill_id", "phase", "text"}`` (halter) — one line of a
  running drill; serve keeps the last lines of the latest drill and sends each as a ``drill``
  server-sent event;
* ``GET /v1/drill/progress`` — the latest drill's lines (the console reads them on load).

Progress is a view, not evidence: it lives in memory and is lost on restart; the drill's
signed report is the record.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, field_validator

from breakglass.clock import isoformat_ms
from breakglass.serve.app import Caller, Services
from breakglass.serve.auth import Role

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


def add_drill(app: FastAPI, services: Services) -> None:
    """Add the drill's progress routes."""
    board = DrillBoard()
    services.extra["drill"] = board

    @app.post("/v1/drill/progress", tags=["v1"], summary="A line of a running drill (halter)")
    async def progress(body: ProgressBody, identity: Caller) -> dict[str, Any]:
        identity.require(Role.HALTER, "reporting a drill")
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
