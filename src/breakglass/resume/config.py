"""The ``[resume]`` section of the policy file: what must hold before the system runs again.

A resume is deliberate, by named people, and recorded: a checklist (each item
ticked by someone holding its role, with an answer when the item asks for
one), a number of distinct approvers, and optional conditions such as a
passing propagation probe against staging within the last hour. Without a
``[resume]`` section the defaults below apply as soon as a policy file exists,
so resuming is never ungated once an organisation has written its policy.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from breakglass.policy_types import Duration, PolicyModel

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ROLES = ("viewer", "halter", "approver", "admin")
Classification = Literal["confirmed-harm", "precautionary", "drill"]
CLASSIFICATIONS: tuple[str, ...] = ("confirmed-harm", "precautionary", "drill")
"""How a suspension is closed. ``precautionary`` is never a fault of the person who halted."""


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r}: lower-case letters, digits and '-', at most 63")
    return value


def _check_role(value: str) -> str:
    if value not in _ROLES:
        raise ValueError(f"unknown role {value!r} (one of {', '.join(_ROLES)})")
    return value


class ChecklistItem(PolicyModel):
    """One thing someone must confirm before the resume."""

    id: str
    """Stable key (``root-cause``); the API and the record use it."""
    text: str = Field(min_length=1, max_length=300)
    """What is confirmed, as the console shows it."""
    role: str = "approver"
    """The least role that may tick it (``halter``, ``approver``, ``admin``)."""
    answer: Literal["none", "optional", "required"] = "optional"
    """Whether a free-text answer goes with the tick."""
    when_personal_data: bool = False
    """Only asked when the halt said personal data processing was affected."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "checklist id")

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        return _check_role(value)


class ProbeCondition(PolicyModel):
    """A passing propagation probe (``breakglass probe --json``), submitted within ``within``."""

    id: str
    kind: Literal["probe"] = "probe"
    text: str = "A passing propagation probe against staging"
    within: Duration = timedelta(hours=1)
    """How recent the probe must have finished."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "condition id")


def default_checklist() -> list[ChecklistItem]:
    """The checklist used when the policy names none."""
    return [
        ChecklistItem(id="root-cause", text="Root cause identified", answer="required"),
        ChecklistItem(id="remediation", text="Remediation applied", answer="required"),
        ChecklistItem(id="risk", text="Risk re-assessed", answer="required"),
        ChecklistItem(
            id="dpo",
            text="DPO consulted (personal data was affected)",
            answer="required",
            when_personal_data=True,
        ),
        ChecklistItem(id="deployers", text="Deployers informed", role="halter", answer="optional"),
    ]


class ResumePolicy(PolicyModel):
    """The resumption gate (``[resume]``)."""

    checklist: list[ChecklistItem] = Field(default_factory=default_checklist)
    approvals: int = Field(default=2, ge=1, le=10)
    """Distinct approvers needed (by authenticated identity)."""
    approver_role: str = "approver"
    """The least role whose approval counts."""
    halter_may_approve: bool = False
    """Whether a person who halted this suspension may be one of the approvers."""
    conditions: list[ProbeCondition] = Field(default_factory=list)
    enforce: bool = False
    """Undo a resume made outside the gate (vendor dashboard, admin API) by halting again."""
    watch_grace: Duration = timedelta(seconds=2)
    """How long a halt seen by the reader may go without a suspension before serve opens one."""

    @field_validator("approver_role")
    @classmethod
    def _role(cls, value: str) -> str:
        return _check_role(value)

    @model_validator(mode="after")
    def _unique(self) -> ResumePolicy:
        for what, ids in (
            ("checklist", [i.id for i in self.checklist]),
            ("condition", [c.id for c in self.conditions]),
        ):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"{what} id used twice: {', '.join(dup)}")
        return self

    def item(self, item_id: str) -> ChecklistItem | None:
        """The checklist item called ``item_id``."""
        return next((i for i in self.checklist if i.id == item_id), None)

    def condition(self, condition_id: str) -> ProbeCondition | None:
        """The condition called ``condition_id``."""
        return next((c for c in self.conditions if c.id == condition_id), None)
