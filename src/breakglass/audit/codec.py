r"""Records as evidence: validation, canonical JSON, and the flat row every store keeps.

A record is turned into its canonical JSON exactly once, when it is stored;
that text is what an export hashes, so the same record exports byte for byte
the same from SQLite and from PostgreSQL, today and in five years.

Canonical JSON here means: keys sorted (by code point), no insignificant
white space (``,`` and ``:`` as separators), non-ASCII characters as UTF-8
(not ``\u`` escapes), no NaN or infinities. Python's
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
produces it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from breakglass.audit_record import SCHEMA, Action, Actor, ActorKind, AuditRecord
from breakglass.clock import isoformat_ms, parse_iso
from breakglass.errors import AuditRecordError

# check_circular=False saves a tenth of the encoding time; a cycle (only an adapter bug
# can make one: parsed JSON has none) then ends in RecursionError, which prepare() catches.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)

COLUMNS = (
    "id",
    "provider",
    "vendor_event_id",
    "vendor_event_type",
    "flag_key",
    "project",
    "environment",
    "action",
    "value_before",
    "value_after",
    "actor_kind",
    "actor_id",
    "actor_email",
    "actor_name",
    "comment",
    "occurred_at",
    "pulled_at",
    "canonical",
)
"""The columns of ``audit_records``, in the order of :class:`StoredRecord`."""


class StoredRecord(NamedTuple):
    """A record ready for a store: flat columns for queries, plus its canonical JSON.

    Times are RFC 3339 strings with milliseconds (``2026-08-21T10:15:02.123Z``),
    which sort as the times they name.
    """

    id: str
    provider: str
    vendor_event_id: str
    vendor_event_type: str
    flag_key: str
    project: str | None
    environment: str | None
    action: str
    value_before: bool | None
    value_after: bool | None
    actor_kind: str
    actor_id: str | None
    actor_email: str | None
    actor_name: str | None
    comment: str | None
    occurred_at: str
    pulled_at: str
    canonical: str


def canonical_json(data: Any) -> str:
    """``data`` as canonical JSON text (sorted keys, compact, non-ASCII kept).

    Raises:
        ValueError: NaN or an infinity.
        TypeError: Something JSON cannot express.
        RecursionError: A cycle.
    """
    return _ENCODER.encode(data)


def column_text(value: str) -> str:
    r"""A text as a query column holds it: NUL (which PostgreSQL text cannot hold) as ``\u0000``.

    Only the flat columns (for queries and CSV) are escaped; the canonical JSON,
    the evidence, keeps every character (JSON writes NUL as ``\u0000`` itself).
    """
    if "\x00" in value:
        return value.replace("\x00", "\\u0000")
    return value


def _optional_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return column_text(value)
    raise AuditRecordError(f"{name} must be text or null, not {type(value).__name__}")


def _identity(name: str, value: str) -> str:
    if "\x00" in value:
        # An id or key is matched exactly: escaping could merge two; refuse it instead.
        raise AuditRecordError(f"{name} contains a NUL character, which a store cannot hold")
    return value


def _moment(name: str, value: object) -> str:
    if not isinstance(value, datetime):
        raise AuditRecordError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time would silently take this host's time zone: not evidence.
        raise AuditRecordError(f"{name} has no time zone")
    if value.tzinfo is UTC:
        # The common case, without isoformat_ms's conversion: the same text, a little sooner.
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    return isoformat_ms(value)


def _flag(name: str, value: object) -> bool | None:
    # `type(...) is bool`: a vendor's 0, 1 or "false" is not an on/off value.
    if value is None or type(value) is bool:
        return value
    raise AuditRecordError(f"{name} must be true, false or null, not {type(value).__name__}")


EnumT = TypeVar("EnumT", Action, ActorKind)


def _enum(cls: type[EnumT], value: object, name: str) -> EnumT:
    if type(value) is cls:
        return value  # the common case, without the enum lookup
    if isinstance(value, str):
        try:
            return cls(value)
        except ValueError:
            pass
    raise AuditRecordError(f"unknown {name} {value!r}")


def prepare(record: AuditRecord) -> StoredRecord:
    """Check ``record`` and turn it into a :class:`StoredRecord`.

    Raises:
        AuditRecordError: The record cannot be kept as evidence (a missing id,
            a naive time, a raw entry JSON cannot express, text that is not
            valid Unicode, ...). The message says what and never contains a secret.
    """
    # Adapters are other people's code: check what the type hints only promise.
    provider: object = record.provider
    if not isinstance(provider, str) or not provider or ":" in provider:
        raise AuditRecordError(f"provider must be a non-empty name without ':', not {provider!r}")
    event_id: object = record.vendor_event_id
    if not isinstance(event_id, str) or not event_id:
        raise AuditRecordError("vendor_event_id is missing")
    event_type: object = record.vendor_event_type
    if not isinstance(event_type, str):
        raise AuditRecordError("vendor_event_type must be text")
    flag_key: object = record.flag_key
    if not isinstance(flag_key, str) or not flag_key:
        raise AuditRecordError("flag_key is missing")
    action = _enum(Action, record.action, "action")
    actor: object = record.actor
    if not isinstance(actor, Actor):
        raise AuditRecordError("actor must be an Actor")
    kind = _enum(ActorKind, actor.kind, "actor kind")
    raw: object = record.raw
    if not isinstance(raw, dict):
        raise AuditRecordError("raw must be a JSON object")
    _identity("provider", provider)
    _identity("vendor_event_id", event_id)
    _identity("flag_key", flag_key)
    row = (
        f"{provider}:{event_id}",
        provider,
        event_id,
        column_text(event_type),
        flag_key,
        _optional_text("project", record.project),
        _optional_text("environment", record.environment),
        action.value,
        _flag("value_before", record.value_before),
        _flag("value_after", record.value_after),
        kind.value,
        _optional_text("actor.id", actor.id),
        _optional_text("actor.email", actor.email),
        _optional_text("actor.name", actor.name),
        _optional_text("comment", record.comment),
        _moment("occurred_at", record.occurred_at),
        _moment("pulled_at", record.pulled_at),
    )
    # The same object as record.to_dict(), built from the checked values: times formatted once.
    data = {
        "schema": SCHEMA,
        "id": row[0],
        "provider": provider,
        "vendor_event_id": event_id,
        "vendor_event_type": event_type,
        "flag_key": flag_key,
        "project": record.project,
        "environment": record.environment,
        "action": row[7],
        "value_before": row[8],
        "value_after": row[9],
        "actor": {"kind": row[10], "id": actor.id, "email": actor.email, "name": actor.name},
        "comment": record.comment,
        "occurred_at": row[15],
        "pulled_at": row[16],
        "raw": raw,
    }
    try:
        text = canonical_json(data)
        # A lone surrogate (from a "\ud800" escape) cannot be written as UTF-8: not evidence.
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise AuditRecordError(f"not expressible as canonical JSON: {exc}") from None
    return StoredRecord(*row, text)


def same_content(stored_canonical: str, record: StoredRecord) -> bool:
    """Whether a record already stored says the same as ``record`` (``pulled_at`` aside)."""
    if stored_canonical == record.canonical:
        return True
    old = json.loads(stored_canonical)
    new = json.loads(record.canonical)
    old.pop("pulled_at", None)
    new.pop("pulled_at", None)
    return bool(old == new)


def _time(text: object) -> datetime:
    if not isinstance(text, str):
        raise AuditRecordError("a time must be an RFC 3339 string")
    try:
        return parse_iso(text)
    except ValueError:
        raise AuditRecordError(f"not an RFC 3339 time: {text!r}") from None


def record_from_dict(data: dict[str, Any]) -> AuditRecord:
    """Read a record back from its JSON form (``AuditRecord.to_dict()`` or an export line).

    Raises:
        AuditRecordError: The data is not a ``breakglass.audit/v1`` record.
    """
    if data.get("schema") != SCHEMA:
        raise AuditRecordError(f"not a {SCHEMA} record")
    try:
        actor = data["actor"] or {}
        record = AuditRecord(
            provider=data["provider"],
            vendor_event_id=data["vendor_event_id"],
            vendor_event_type=data["vendor_event_type"],
            flag_key=data["flag_key"],
            action=Action(data["action"]),
            occurred_at=_time(data["occurred_at"]),
            pulled_at=_time(data["pulled_at"]),
            actor=Actor(
                kind=ActorKind(actor.get("kind", ActorKind.UNKNOWN.value)),
                id=actor.get("id"),
                email=actor.get("email"),
                name=actor.get("name"),
            ),
            project=data.get("project"),
            environment=data.get("environment"),
            value_before=data.get("value_before"),
            value_after=data.get("value_after"),
            comment=data.get("comment"),
            raw=data.get("raw") or {},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AuditRecordError(f"not a {SCHEMA} record: {exc!r}") from None
    if data.get("id") not in (None, record.id):
        raise AuditRecordError(f"id {data.get('id')!r} does not match {record.id!r}")
    return record


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
