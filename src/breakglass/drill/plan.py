"""The ``[drill]`` section of the policy file: what the annual exercise does and must show.

A drill is the whole break-glass procedure, run on purpose against a staging
environment: halt through serve as the named drill lead, see every reader
refuse within the declared time, see every group alerted and acknowledging
within its timeframe, optionally halt through the kill switch too, walk the
resumption gate with the participants, resume, and see every reader back.
Like every section, unknown keys and wrong types stop the start with one line
per problem; tokens may be ``env:NAME`` and never print.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from breakglass.policy_types import Duration, PolicyModel, Secret

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,119}$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _http(value: str) -> str:
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", value):
        msg = "must be an http(s) URL"
        raise ValueError(msg)
    return value


class DrillReader(PolicyModel):
    """Readers of one service that must stop (they report to serve, ``[report] service``)."""

    service: str = Field(min_length=1, max_length=200)
    """The service name its readers report (``report.service``)."""
    count: int = Field(default=1, ge=1, le=100_000)
    """How many readers of this service must report halted."""
    url: str | None = None
    """A guarded endpoint of the service: the drill keeps a little traffic on it to see the
    refusals (503) and that work in flight at the halt was answered, not dropped."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http(value)


class Participant(PolicyModel):
    """A person taking part, and what they do in the drill."""

    name: str
    """As serve knows them (``token:<name>`` for an API token, the OIDC name otherwise)."""
    role: Literal["lead", "approver", "technical-owner", "observer"] = "observer"
    token: Secret | None = None
    """Their serve API token, used for their own checklist ticks and approval (``env:NAME``)."""
    approves: bool = False
    """Whether they approve the resume through the gate."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            msg = "letters, digits, space and ._@:- only, at most 120"
            raise ValueError(msg)
        return value


class Criterion(PolicyModel):
    """One item of the resumption checklist, walked through by a named participant."""

    item: str = Field(min_length=1, max_length=63)
    """The ``[resume]`` checklist item's id."""
    by: str
    """The participant who ticks it."""
    answer: str = Field(
        default="Drill: nothing to remedy; the halt was deliberate.", max_length=2000
    )


class KillSwitchDrill(PolicyModel):
    """Halt and verify through the kill switch too (``breakglass-killswitch serve``)."""

    url: str
    """The switch's base URL."""
    token: Secret
    """A halter token of the switch (it halts and resumes)."""
    approver_tokens: list[Secret] = Field(default_factory=list)
    """Approver tokens of the switch, one per approver its resume gate asks for."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http(value)


class Window(PolicyModel):
    """A maintenance window (UTC) in which a drill may start."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    start: time
    """``"08:00"``"""
    end: time
    """``"12:00"``; earlier than ``start`` means the window runs past midnight."""


class DrillPlan(PolicyModel):
    """The ``[drill]`` section."""

    environment: str = Field(min_length=1, max_length=120)
    """Where the drill runs (``staging-eu``): never production unless written so."""
    serve_url: str
    """serve of that environment."""
    lead: str
    """The drill lead: the participant who halts (their token's identity must be this)."""
    declared_halt_time: Duration
    """The halt time the organisation declares: every reader must refuse within it."""
    readers: list[DrillReader] = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)
    """The ``[notify]`` groups that must be alerted and acknowledge within their timeframes."""
    alert_within: Duration = timedelta(minutes=1)
    """Each group's first delivery must arrive within this of the halt."""
    ack_wait: Duration | None = None
    """How long the drill waits for acknowledgements (default: the longest group timeframe)."""
    drain_within: Duration = timedelta(seconds=30)
    """Work in flight at the halt must be answered within this."""
    resume_within: Duration = timedelta(minutes=1)
    """After the resume, every reader must be back within this."""
    personal_data_affected: bool = False
    """Sent with the drill's halt (so the groups with that condition are alerted)."""
    business_continuity: bool = False
    kill_switch: KillSwitchDrill | None = None
    """Exercise the kill switch too; absent: the report says it was not exercised."""
    criteria: list[Criterion] = Field(default_factory=list)
    """The resumption checklist walked through (ticks by named participants)."""
    participants: list[Participant] = Field(min_length=1)
    windows: list[Window] = Field(default_factory=list)
    """Maintenance windows; none: the drill may start at any time (the report says so)."""
    interval: Duration = timedelta(days=365)
    """A passed drill is due this long after the last one (``breakglass drill due``)."""

    @field_validator("serve_url")
    @classmethod
    def _serve(cls, value: str) -> str:
        return _http(value)

    @model_validator(mode="after")
    def _consistent(self) -> DrillPlan:
        names = [p.name for p in self.participants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"participant named twice: {', '.join(dup)}")
        lead = self.participant(self.lead)
        if lead is None:
            raise ValueError(f"lead {self.lead!r} is not one of the participants")
        if lead.token is None:
            raise ValueError(f"the lead {self.lead!r} needs a token (it halts through serve)")
        for criterion in self.criteria:
            who = self.participant(criterion.by)
            if who is None:
                raise ValueError(
                    f"criterion {criterion.item!r}: {criterion.by!r} is not a participant"
                )
            if who.token is None:
                raise ValueError(f"criterion {criterion.item!r}: {criterion.by!r} has no token")
        for p in self.participants:
            if p.approves and p.token is None:
                raise ValueError(f"participant {p.name!r} approves but has no token")
        return self

    def participant(self, name: str) -> Participant | None:
        """The participant called ``name``."""
        return next((p for p in self.participants if p.name == name), None)

    @property
    def approvers(self) -> list[Participant]:
        """The participants who approve the resume, in the plan's order."""
        return [p for p in self.participants if p.approves]

    @property
    def expected_readers(self) -> int:
        """How many readers must stop."""
        return sum(r.count for r in self.readers)
