"""The normalised audit record (schema ``breakglass.audit/v1``).

One record per change of the flag, whatever vendor it came from. ``raw`` keeps
the vendor's entry verbatim, as evidence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.clock import isoformat_ms

if TYPE_CHECKING:
    from datetime import datetime

SCHEMA = "breakglass.audit/v1"


class Action(enum.StrEnum):
    """What happened to the flag."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    CREATED = "created"
    ARCHIVED = "archived"
    DELETED = "deleted"
    UPDATED = "updated"
    OTHER = "other"


class ActorKind(enum.StrEnum):
    """Who made a change."""

    USER = "user"
    API_TOKEN = "api_token"  # noqa: S105 -- a kind of actor, not a secret
    INTEGRATION = "integration"
    SYSTEM = "system"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Actor:
    """The person, token or system behind a change; every field may be unknown."""

    kind: ActorKind = ActorKind.UNKNOWN
    id: str | None = None
    email: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The actor as plain JSON-ready data."""
        return {"kind": self.kind.value, "id": self.id, "email": self.email, "name": self.name}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One change of one flag, normalised. See ``docs/audit-record.md``."""

    provider: str
    vendor_event_id: str
    vendor_event_type: str
    flag_key: str
    action: Action
    occurred_at: datetime
    pulled_at: datetime
    actor: Actor = field(default_factory=Actor)
    project: str | None = None
    environment: str | None = None
    value_before: bool | None = None
    value_after: bool | None = None
    comment: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``<provider>:<vendor_event_id>``: unique, so pulling twice never duplicates."""
        return f"{self.provider}:{self.vendor_event_id}"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, fields in schema order."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "provider": self.provider,
            "vendor_event_id": self.vendor_event_id,
            "vendor_event_type": self.vendor_event_type,
            "flag_key": self.flag_key,
            "project": self.project,
            "environment": self.environment,
            "action": self.action.value,
            "value_before": self.value_before,
            "value_after": self.value_after,
            "actor": self.actor.to_dict(),
            "comment": self.comment,
            "occurred_at": isoformat_ms(self.occurred_at),
            "pulled_at": isoformat_ms(self.pulled_at),
            "raw": self.raw,
        }
