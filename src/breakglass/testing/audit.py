"""Audit test helpers: vendor-shaped change-log entries and a paged vendor that counts requests.

The entries follow the shapes in the vendor research (LaunchDarkly
``/api/v2/auditlog`` listing entries, Unleash ``/api/admin/search/events``
events, Flagsmith ``/api/v1/projects/{p}/audit/`` entries, and the local
provider's change rows). The normalisers here mirror the mapping of that
research for tests and benchmarks; each vendor adapter owns its real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.seams import AuditPage

if TYPE_CHECKING:
    from collections.abc import Iterator

FLAG = "system-active"
EPOCH = datetime(2026, 8, 21, 10, 0, tzinfo=UTC)
VENDORS = ("launchdarkly", "unleash", "flagsmith", "local")

_PEOPLE = (
    ("507f1f77bcf86cd799439011", "ariel@acme.com", "Ariel", "Flores"),
    ("507f1f77bcf86cd799439012", "zoë.müller@acme.eu", "Zoë", "Müller"),
    ("507f1f77bcf86cd799439013", "kyle@acme.com", "Kyle", "Johnson"),
)


def _person(i: int) -> tuple[str, str, str, str]:
    return _PEOPLE[i % len(_PEOPLE)]


# ---------------------------------------------------------------------- LaunchDarkly


def launchdarkly_entry(i: int, *, on: bool | None = None, kind: str = "flag") -> dict[str, Any]:
    """An ``AuditLogEntryListingRep`` toggling the flag (``on`` alternates by default)."""
    on = (i % 2 == 1) if on is None else on
    entry_id = f"{i:024x}"
    member_id, email, first, last = _person(i)
    verb = "turned on the flag" if on else "turned off the flag"
    resource = f"proj/default:env/production:flag/{FLAG}"
    return {
        "_links": {"self": {"href": f"/api/v2/auditlog/{entry_id}", "type": "application/json"}},
        "_id": entry_id,
        "_accountId": "1234a56b7c89d012345e678f",
        "date": int((EPOCH + timedelta(seconds=i)).timestamp() * 1000),
        "accesses": [{"action": "updateOn", "resource": resource}],
        "kind": kind,
        "name": FLAG,
        "description": f"- {verb.capitalize()}",
        "shortDescription": f"Example, {verb}",
        "comment": f"incident {4700 + i}: break-glass drill",
        "member": {
            "_links": {},
            "_id": member_id,
            "email": email,
            "firstName": first,
            "lastName": last,
        },
        "titleVerb": verb,
        "title": f"{first} {last} {verb} {FLAG} in Production",
        "target": {"_links": {}, "name": FLAG, "resources": [resource]},
        "parent": {"_links": {}, "name": "Default project", "resource": "proj/default"},
    }


_RESOURCE = re.compile(r"proj/(?P<proj>[^:]+):env/(?P<env>[^:]+):flag/(?P<flag>.+)$")


def normalise_launchdarkly(raw: dict[str, Any], pulled_at: datetime) -> AuditRecord:
    """LaunchDarkly listing entry -> record (``KeyError`` when a required field is missing)."""
    resources = raw.get("target", {}).get("resources") or [a["resource"] for a in raw["accesses"]]
    match = _RESOURCE.match(resources[0]) if resources else None
    verb = raw.get("titleVerb") or ""
    action = (
        Action.ENABLED
        if verb.startswith("turned on")
        else Action.DISABLED
        if verb.startswith("turned off")
        else Action.OTHER
    )
    member = raw.get("member")
    token = raw.get("token")
    if member:
        actor = Actor(
            ActorKind.USER,
            member["_id"],
            member.get("email"),
            f"{member.get('firstName', '')} {member.get('lastName', '')}".strip(),
        )
    elif token:
        actor = Actor(ActorKind.API_TOKEN, token["_id"], None, token.get("name"))
    else:
        actor = Actor()
    return AuditRecord(
        provider="launchdarkly",
        vendor_event_id=str(raw["_id"]),
        vendor_event_type=str(raw["kind"]),
        flag_key=match["flag"] if match else str(raw["name"]),
        action=action,
        occurred_at=datetime.fromtimestamp(raw["date"] / 1000, tz=UTC),
        pulled_at=pulled_at,
        actor=actor,
        project=match["proj"] if match else None,
        environment=match["env"] if match else None,
        value_before=None if action is Action.OTHER else action is Action.DISABLED,
        value_after=None if action is Action.OTHER else action is Action.ENABLED,
        comment=raw.get("comment"),
        raw=raw,
    )


# ---------------------------------------------------------------------- Unleash


def unleash_event(i: int, *, event_type: str | None = None) -> dict[str, Any]:
    """An event of ``/api/admin/search/events`` (enabled/disabled alternate by default)."""
    event_type = event_type or (
        "feature-environment-enabled" if i % 2 else "feature-environment-disabled"
    )
    return {
        "id": i,
        "type": event_type,
        "createdBy": "admin" if i % 3 == 0 else _person(i)[1],
        "createdByUserId": -42 if i % 3 == 0 else 7,
        "createdAt": isoformat_ms(EPOCH + timedelta(seconds=i, milliseconds=123)),
        "environment": "development",
        "project": "default",
        "featureName": FLAG,
        "data": None,
        "preData": None,
        "tags": [],
        "label": "Flag enabled" if i % 2 else "Flag disabled",
        "summary": f"**admin** changed **[{FLAG}](http://localhost:4242/projects/default/features/{FLAG})**",
    }


_UNLEASH_ACTIONS = {
    "feature-environment-enabled": Action.ENABLED,
    "feature-environment-disabled": Action.DISABLED,
    "feature-created": Action.CREATED,
    "feature-archived": Action.ARCHIVED,
    "feature-deleted": Action.DELETED,
    "feature-updated": Action.UPDATED,
}


def normalise_unleash(raw: dict[str, Any], pulled_at: datetime) -> AuditRecord:
    """Unleash event -> record; an unknown type is kept as ``other``."""
    action = _UNLEASH_ACTIONS.get(raw["type"], Action.OTHER)
    user_id = raw.get("createdByUserId")
    kind = ActorKind.API_TOKEN if user_id == -42 else ActorKind.SYSTEM if user_id == -1337 else ActorKind.USER  # fmt: skip
    by = raw["createdBy"]
    return AuditRecord(
        provider="unleash",
        vendor_event_id=str(raw["id"]),
        vendor_event_type=str(raw["type"]),
        flag_key=str(raw["featureName"]),
        action=action,
        occurred_at=parse_iso(raw["createdAt"]),
        pulled_at=pulled_at,
        actor=Actor(kind, None if user_id is None else str(user_id), by if "@" in by else None, by),
        project=raw.get("project"),
        environment=raw.get("environment"),
        value_before={Action.ENABLED: False, Action.DISABLED: True}.get(action),
        value_after={Action.ENABLED: True, Action.DISABLED: False}.get(action),
        raw=raw,
    )


# ---------------------------------------------------------------------- Flagsmith


def flagsmith_entry(i: int) -> dict[str, Any]:
    """A project audit-log entry with its detail (``change_details`` on ``enabled``)."""
    _, email, first, last = _person(i)
    on = i % 2 == 1
    return {
        "id": i,
        "created_date": isoformat_ms(EPOCH + timedelta(seconds=i, milliseconds=512)),
        "log": f"Flag state updated for feature: {FLAG}",
        "author": None
        if i % 5 == 0
        else {"id": i % 7, "email": email, "first_name": first, "last_name": last},
        "environment": {"id": 7, "uuid": "e0c1", "name": "Production", "api_key": "EnvKey123"},
        "project": {"id": 4, "uuid": "p0c1", "name": "AI system", "organisation": 1},
        "related_object_id": 1234,
        "related_object_uuid": None,
        "related_object_type": "FEATURE_STATE",
        "is_system_event": False,
        "change_type": "UPDATE",
        "change_details": [{"field": "enabled", "old": not on, "new": on}],
    }


def normalise_flagsmith(raw: dict[str, Any], pulled_at: datetime) -> AuditRecord:
    """Flagsmith entry -> record (the flag name is only in ``log``)."""
    log = str(raw["log"])
    flag = log.rsplit("feature: ", 1)[-1] if "feature: " in log else log
    enabled = next(
        (d for d in raw.get("change_details") or [] if d.get("field") == "enabled"), None
    )
    action = Action.OTHER
    if enabled is not None:
        action = Action.ENABLED if enabled.get("new") is True else Action.DISABLED
    author = raw.get("author")
    actor = (
        Actor(
            ActorKind.USER,
            str(author["id"]),
            author.get("email"),
            f"{author.get('first_name', '')} {author.get('last_name', '')}".strip(),
        )
        if author
        else Actor(ActorKind.API_TOKEN)  # an organisation API key: Flagsmith hides which
    )
    return AuditRecord(
        provider="flagsmith",
        vendor_event_id=str(raw["id"]),
        vendor_event_type=str(raw["related_object_type"]),
        flag_key=flag,
        action=action,
        occurred_at=parse_iso(raw["created_date"]),
        pulled_at=pulled_at,
        actor=actor,
        project=(raw.get("project") or {}).get("name"),
        environment=(raw.get("environment") or {}).get("name"),
        value_before=enabled.get("old") if enabled else None,
        value_after=enabled.get("new") if enabled else None,
        raw=raw,
    )


# ---------------------------------------------------------------------- local


def local_change(i: int) -> dict[str, Any]:
    """A row of the local provider's change log, as ``LocalChange.as_raw()`` gives it."""
    on = i % 2 == 1
    return {
        "seq": i,
        "flag_key": FLAG,
        "action": "enabled" if on else "disabled",
        "value_before": not on,
        "value_after": on,
        "actor": _person(i)[1],
        "reason": f"drill {i}",
        "occurred_at": isoformat_ms(EPOCH + timedelta(seconds=i, milliseconds=7)),
        "host": "inference-7",
        "pid": 4242,
    }


def normalise_local(raw: dict[str, Any], pulled_at: datetime) -> AuditRecord:
    """Local change row -> record (as :class:`breakglass.local.LocalAudit` does)."""
    try:
        action = Action(raw["action"])
    except ValueError:
        action = Action.OTHER
    return AuditRecord(
        provider="local",
        vendor_event_id=str(raw["seq"]),
        vendor_event_type=str(raw["action"]),
        flag_key=str(raw["flag_key"]),
        action=action,
        occurred_at=parse_iso(raw["occurred_at"]),
        pulled_at=pulled_at,
        actor=Actor(ActorKind.USER, raw["actor"], None, raw["actor"]),
        value_before=raw["value_before"] if type(raw["value_before"]) is bool else None,
        value_after=raw["value_after"] if type(raw["value_after"]) is bool else None,
        comment=raw["reason"],
        raw=raw,
    )


ENTRY: dict[str, Callable[[int], dict[str, Any]]] = {
    "launchdarkly": launchdarkly_entry,
    "unleash": unleash_event,
    "flagsmith": flagsmith_entry,
    "local": local_change,
}
NORMALISE: dict[str, Callable[[dict[str, Any], datetime], AuditRecord]] = {
    "launchdarkly": normalise_launchdarkly,
    "unleash": normalise_unleash,
    "flagsmith": normalise_flagsmith,
    "local": normalise_local,
}


# ---------------------------------------------------------------------- a paged vendor


@dataclass
class SampleVendor:
    """An :class:`breakglass.seams.AuditSource` over a list of raw entries, paged like an API.

    Each page is one counted "request" (``GET ?after=<cursor>&limit=<page_size>``);
    the cursor is how many entries were consumed. A short page ends the pull,
    so re-pulling an unchanged history costs exactly one request. Entries the
    normaliser rejects are counted as malformed, with a problem line each.

    Attributes:
        vendor: One of :data:`VENDORS`.
        entries: The vendor's log, oldest first (append to simulate new changes).
        page_size: Entries per request.
        requests: Requests made so far.
        on_request: Called before each request (a test may sleep or fail here).
    """

    vendor: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 100
    clock: Clock = SYSTEM_CLOCK
    requests: int = 0
    on_request: Callable[[int], None] | None = None

    @classmethod
    def generate(
        cls, vendor: str, count: int, *, page_size: int = 100, start: int = 1
    ) -> SampleVendor:
        """A vendor whose log holds ``count`` generated entries."""
        make = ENTRY[vendor]
        return cls(vendor, [make(i) for i in range(start, start + count)], page_size)

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield pages after ``cursor``, one request each."""
        after = int(cursor) if cursor else 0
        normalise = NORMALISE[self.vendor]
        while True:
            if self.on_request is not None:
                self.on_request(self.requests)
            self.requests += 1
            batch = self.entries[after : after + self.page_size]
            if not batch:
                return
            pulled_at = self.clock.now()
            records: list[AuditRecord] = []
            problems: list[str] = []
            for offset, raw in enumerate(batch):
                try:
                    records.append(normalise(raw, pulled_at))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    problems.append(
                        f"{self.vendor} entry #{after + offset + 1}: {type(exc).__name__}: {exc}"
                    )
            after += len(batch)
            yield AuditPage(records, str(after), malformed=len(problems), problems=problems)
            if len(batch) < self.page_size:
                return
