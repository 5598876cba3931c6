"""The switch's audit records, in the project's shared format ``breakglass.audit/v1``.

The switch writes the format itself rather than importing the core (it must
not depend on the flag path). One record per halt, resume, refused resume and
approval; ``raw`` holds the full report as evidence. The core's
``breakglass audit pull`` reads them from ``GET /v1/audit`` (see the README).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SCHEMA = "breakglass.audit/v1"
FEED_SCHEMA = "breakglass.audit-feed/v1"


def now() -> datetime:
    """The wall clock, in UTC (only for what people read: records and reports)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 with milliseconds and ``Z``, as the shared format requires."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def actor_dict(kind: str, ident: str | None, name: str | None = None) -> dict[str, str | None]:
    """The record's ``actor`` object (``kind`` is user, api_token, integration, system, unknown)."""
    return {"kind": kind, "id": ident, "email": None, "name": name if name is not None else ident}


def build_record(  # noqa: PLR0913 -- one argument per field of the shared format
    *,
    provider: str,
    event_id: str,
    event_type: str,
    flag_key: str,
    environment: str,
    action: str,
    value_before: bool | None,
    value_after: bool | None,
    actor: dict[str, str | None],
    comment: str | None,
    occurred_at: datetime,
    raw: dict[str, Any],
) -> dict[str, Any]:
    """One record, fields as ``docs/audit-record.md`` of the core describes them."""
    stamp = iso(occurred_at)
    return {
        "schema": SCHEMA,
        "id": f"{provider}:{event_id}",
        "provider": provider,
        "vendor_event_id": event_id,
        "vendor_event_type": event_type,
        "flag_key": flag_key,
        "project": None,
        "environment": environment,
        "action": action,
        "value_before": value_before,
        "value_after": value_after,
        "actor": actor,
        "comment": comment,
        "occurred_at": stamp,
        "pulled_at": stamp,
        "raw": raw,
    }
