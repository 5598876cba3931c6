"""Shared pieces of the audit tests: records, and emptying a PostgreSQL audit store.

The store fixtures are in :mod:`tests.audit_fixtures`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from breakglass.audit.codec import StoredRecord, prepare
from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord

T0 = datetime(2026, 8, 21, 10, 0, tzinfo=UTC)


def reset_postgres(url: str) -> None:
    """Drop every audit table, so the next store starts from an empty database."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS audit_records, audit_cursors, audit_problems,"
            " audit_exports, audit_schema_version"
        )


def make_record(
    n: int,
    *,
    provider: str = "local",
    at: datetime | None = None,
    action: Action = Action.DISABLED,
    flag_key: str = "system-active",
    environment: str | None = "production",
    comment: str | None = None,
    raw: dict[str, Any] | None = None,
) -> AuditRecord:
    """A plain record number ``n``."""
    when = at or T0 + timedelta(seconds=n)
    return AuditRecord(
        provider=provider,
        vendor_event_id=str(n),
        vendor_event_type="toggle",
        flag_key=flag_key,
        action=action,
        occurred_at=when,
        pulled_at=T0 + timedelta(days=1),
        actor=Actor(ActorKind.USER, f"u{n}", f"u{n}@example.com", f"User {n}"),
        project="default",
        environment=environment,
        value_before=action is Action.DISABLED,
        value_after=action is Action.ENABLED,
        comment=comment if comment is not None else f"change {n}",
        raw=raw if raw is not None else {"n": n, "note": "ünïcödé ✓"},
    )


def rows(*records: AuditRecord) -> list[StoredRecord]:
    """The records prepared for a store."""
    return [prepare(r) for r in records]


class FlakyStore:
    """A real store that fails every save while ``down`` is set (a store going away and back)."""

    def __init__(self, real: Any, down: Any) -> None:
        self.real = real
        self.down = down

    def save(self, *args: Any, **kwargs: Any) -> Any:
        if self.down.is_set():
            from breakglass.errors import AuditStoreError

            raise AuditStoreError("down")
        return self.real.save(*args, **kwargs)

    def close(self) -> None:
        """Nothing to release: the real store is the test's."""


class RefusingStore:
    """A real store that refuses, as a bad value would, any batch holding one particular record."""

    def __init__(self, real: Any, poison: str) -> None:
        self.real = real
        self.poison = poison

    def save(self, records: Any, **kwargs: Any) -> Any:
        if any(r.id == self.poison for r in records):
            from breakglass.errors import AuditStoreError

            raise AuditStoreError("value too long for this column")
        return self.real.save(records, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
