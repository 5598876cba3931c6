"""What a notification is about: one halt, resume or test of one suspension.

A :class:`SuspensionEvent` is what serve (or the CLI) hands the notifier; it
is stored as JSON in each outbox row, so a notification can be sent (again)
by any process after a crash, with nothing but the row and the policy.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from breakglass.clock import isoformat_ms, parse_iso
from breakglass.notify.config import Severity


class EventKind(enum.StrEnum):
    """Why a notification is sent."""

    HALT = "halt"
    HALT_FAILED = "halt-failed"
    UNGATED_RESUME = "ungated-resume"
    """Someone pressed stop and no target acknowledged: the system may still run."""
    RESUME = "resume"
    ESCALATION = "escalation"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class SuspensionEvent:
    """A halt or resume of the system, as the notification chain sees it.

    Attributes:
        kind: Halt, resume, escalation or test.
        suspension_id: The suspension (halt episode) this belongs to; every
            notification of one suspension shares it (PagerDuty ``dedup_key``,
            Opsgenie ``alias``).
        actor: The authenticated person who halted or resumed.
        reason: Their reason, as they wrote it.
        since: When the system was halted (RFC 3339, UTC).
        at: When this event happened (the halt's or the resume's acknowledgement).
        severity: As given in the halt request (else the policy's default).
        personal_data_affected: From the halt request.
        business_continuity: From the halt request.
        incident: An incident reference from the halt request, if any.
        flag_key: The flag that was turned off.
        escalated_group: For an escalation: the group that did not acknowledge.
    """

    kind: EventKind
    suspension_id: str
    actor: str
    reason: str
    since: str
    at: str
    severity: Severity = Severity.HIGH
    personal_data_affected: bool = False
    business_continuity: bool = False
    incident: str | None = None
    flag_key: str = "system-active"
    escalated_group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The event as compact JSON (stored in the outbox row)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SuspensionEvent:
        """Read an event stored by :meth:`to_json`."""
        data = json.loads(text)
        data["kind"] = EventKind(data["kind"])
        data["severity"] = Severity(data["severity"])
        return cls(**data)

    def with_kind(self, kind: EventKind, **changes: Any) -> SuspensionEvent:
        """A copy of this event as another kind (an escalation of a halt, a test)."""
        data = {**asdict(self), **changes, "kind": kind}
        return SuspensionEvent(**data)

    @property
    def since_text(self) -> str:
        """The halt time as people read it (``2026-12-05 09:58:03 UTC``)."""
        return parse_iso(self.since).strftime("%Y-%m-%d %H:%M:%S UTC")


def event_time(moment: Any) -> str:
    """A datetime as stored in an event (RFC 3339 with milliseconds, UTC)."""
    return isoformat_ms(moment)
