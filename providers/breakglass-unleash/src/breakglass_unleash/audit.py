"""Unleash's event log for the flag, as normalised audit records.

Source: ``GET {url}/admin/search/events?feature=IS:<flag>&project=IS:<project>``,
newest first, paged by ``offset``/``limit``. The cursor is the highest event id
already pulled (Unleash event ids only grow). A pull walks pages back from the
newest event until it reaches the cursor, removes duplicates (an event written
during the walk shifts the offsets, so the same entry can show up twice, never
go missing), then yields the entries oldest first.

Events of other environments are skipped (they still move the cursor);
environment-less events (created, archived, ...) are kept.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, parse_iso
from breakglass.errors import AuditSourceError, ConfigurationError
from breakglass.retry import RetryPolicy, safe_url
from breakglass.seams import AuditPage
from breakglass.wording import counted
from breakglass_unleash._http import json_or_none, new_session, request_with_retries, server_message

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from breakglass_unleash.settings import UnleashSettings

logger = logging.getLogger("breakglass.unleash")

PROVIDER = "unleash"
TOKEN_SETTING = "BREAKGLASS_UNLEASH__ADMIN_TOKEN"  # noqa: S105 -- the name of a setting
ADMIN_TOKEN_USER_ID = -42
"""``createdByUserId`` of changes made with an admin API token (Unleash's ADMIN_TOKEN_USER)."""
SYSTEM_USER_ID = -1337
"""``createdByUserId`` of changes Unleash made itself."""

_MAX_PAGES = 10_000

# type -> (action, value_before, value_after). Enable/disable events carry no data in
# Unleash; the values follow from the type because Unleash writes the event only when
# the row actually changed.
_KNOWN: dict[str, tuple[Action, bool | None, bool | None]] = {
    "feature-environment-enabled": (Action.ENABLED, False, True),
    "feature-environment-disabled": (Action.DISABLED, True, False),
    "feature-created": (Action.CREATED, None, None),
    "feature-archived": (Action.ARCHIVED, None, None),
    "feature-deleted": (Action.DELETED, None, None),
}


class UnleashAudit:
    """A :class:`breakglass.seams.AuditSource` on Unleash's event search.

    Args:
        settings: The ``unleash`` settings section; ``admin_token`` must be set.
        flag_key: The flag's name in Unleash.
        page_size: Events per request and records per yielded page.
        clock: Stamps ``pulled_at``.
        policy: Retry budget for 5xx, 429 (``Retry-After`` honoured), timeouts.
        sleep: Waits between retries (tests pass a fake).
    """

    def __init__(
        self,
        settings: UnleashSettings,
        flag_key: str,
        *,
        page_size: int = 100,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.admin_token is None:
            raise ConfigurationError(f"{TOKEN_SETTING} is needed to read Unleash's event log")
        self._settings = settings
        self._flag_key = flag_key
        self._page_size = max(1, min(1000, page_size))
        self._clock = clock
        self._policy = policy or RetryPolicy(budget=30.0)
        self._sleep = sleep
        self._session = new_session(settings.admin_token)
        self._secret = settings.admin_token.get_secret_value()
        self._url = f"{settings.admin_base}/admin/search/events"

    def __repr__(self) -> str:
        return f"UnleashAudit(url={safe_url(self._url)!r}, flag_key={self._flag_key!r})"

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield the events after ``cursor`` (the last event id pulled), oldest first.

        Raises:
            AuditSourceError: The cursor is not an Unleash event id, the token is
                rejected, or the log cannot be read within the retry budget.
        """
        after = _parse_cursor(cursor)
        entries, malformed, problems = self._fetch_after(after)
        pulled_at = self._clock.now()
        if not entries:
            if malformed:
                yield AuditPage(records=[], cursor=cursor, malformed=malformed, problems=problems)
            return
        for start in range(0, len(entries), self._page_size):
            chunk = entries[start : start + self._page_size]
            records: list[AuditRecord] = []
            for event_id, entry in chunk:
                environment = entry.get("environment")
                if environment is not None and environment != self._settings.environment:
                    continue
                try:
                    records.append(normalise(entry, flag_key=self._flag_key, pulled_at=pulled_at))
                except ValueError as exc:
                    malformed += 1
                    problems.append(f"event {event_id}: {exc}")
            yield AuditPage(
                records=records,
                cursor=str(chunk[-1][0]),
                malformed=malformed,
                problems=problems,
            )
            malformed, problems = 0, []

    # ------------------------------------------------------------------ internals

    def _fetch_after(self, after: int) -> tuple[list[tuple[int, dict[str, Any]]], int, list[str]]:
        seen: dict[int, dict[str, Any]] = {}
        malformed = 0
        problems: list[str] = []
        offset = 0
        for _ in range(_MAX_PAGES):
            events = self._page(offset)
            reached = False
            for entry in events:
                event_id = entry.get("id") if isinstance(entry, dict) else None
                if type(event_id) is not int:
                    malformed += 1
                    problems.append(f"entry at offset {offset}: no integer id")
                    continue
                if event_id <= after:
                    reached = True
                    continue
                assert isinstance(entry, dict)  # noqa: S101 -- checked with the id above
                seen.setdefault(event_id, entry)
            if reached or len(events) < self._page_size:
                break
            offset += len(events)
        else:
            raise AuditSourceError(
                f"{safe_url(self._url)} kept returning pages; stopped after {_MAX_PAGES}"
            )
        return sorted(seen.items()), malformed, problems

    def _page(self, offset: int) -> list[Any]:
        params = {
            "feature": f"IS:{self._flag_key}",
            "project": f"IS:{self._settings.project}",
            "offset": str(offset),
            "limit": str(self._page_size),
        }
        timeout = self._settings.request_timeout
        outcome = request_with_retries(
            lambda t: self._session.get(self._url, params=params, timeout=(min(1.0, t), t)),
            self._url,
            self._policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        response = outcome.response
        where = safe_url(self._url)
        if response is None:
            raise AuditSourceError(f"cannot read {where}: {outcome.error}")
        status = response.status_code
        if status in (401, 403):
            message = server_message(response, (self._secret,))
            raise AuditSourceError(
                f"HTTP {status} from {where}: {TOKEN_SETTING} may not read the event log"
                + (f": {message}" if message else "")
            )
        if status != 200:
            raise AuditSourceError(
                f"HTTP {status} from {where} after {counted(outcome.attempts, 'attempt')}"
            )
        body = json_or_none(response)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            raise AuditSourceError(f"malformed page from {where} (offset {offset})")
        return events


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    try:
        return int(cursor)
    except ValueError:
        raise AuditSourceError(f"{cursor!r} is not an Unleash event id cursor") from None


def normalise(entry: dict[str, Any], *, flag_key: str, pulled_at: datetime) -> AuditRecord:
    """One Unleash event as a normalised record.

    Raises:
        ValueError: The entry lacks what a record needs (id, type, time, the flag).
    """
    event_id = entry.get("id")
    event_type = entry.get("type")
    created_at = entry.get("createdAt")
    if type(event_id) is not int:
        msg = "no integer id"
        raise ValueError(msg)
    if not isinstance(event_type, str) or not event_type:
        msg = "no type"
        raise ValueError(msg)
    if not isinstance(created_at, str):
        msg = "no createdAt"
        raise ValueError(msg)  # noqa: TRY004 -- malformed vendor data: pull() counts ValueErrors
    try:
        occurred_at = parse_iso(created_at)
    except ValueError:
        msg = f"unreadable createdAt {created_at[:40]!r}"
        raise ValueError(msg) from None
    feature = entry.get("featureName")
    if feature is not None and feature != flag_key:
        msg = f"belongs to flag {str(feature)[:60]!r}"
        raise ValueError(msg)
    action, before, after = _classify(event_type)
    project = entry.get("project")
    environment = entry.get("environment")
    return AuditRecord(
        provider=PROVIDER,
        vendor_event_id=str(event_id),
        vendor_event_type=event_type,
        flag_key=flag_key,
        action=action,
        occurred_at=occurred_at,
        pulled_at=pulled_at,
        actor=_actor(entry.get("createdBy"), entry.get("createdByUserId")),
        project=project if isinstance(project, str) else None,
        environment=environment if isinstance(environment, str) else None,
        value_before=before,
        value_after=after,
        comment=None,
        raw=entry,
    )


def _classify(event_type: str) -> tuple[Action, bool | None, bool | None]:
    if event_type in _KNOWN:
        return _KNOWN[event_type]
    if event_type.startswith("feature-"):
        # Strategy, variant, tag, stale, metadata, revive: the flag changed, its on/off did not.
        return Action.UPDATED, None, None
    return Action.OTHER, None, None


def _actor(created_by: object, user_id: object) -> Actor:
    name = created_by if isinstance(created_by, str) and created_by else None
    if type(user_id) is not int:
        return Actor(kind=ActorKind.UNKNOWN, name=name)
    if user_id == ADMIN_TOKEN_USER_ID:
        # An admin API token: createdBy is the token's name (INIT tokens are all called "admin").
        return Actor(kind=ActorKind.API_TOKEN, id=name, name=name)
    if user_id == SYSTEM_USER_ID:
        return Actor(kind=ActorKind.SYSTEM, name=name)
    if user_id > 0:
        # A person, through the UI or their personal access token (or a service account).
        email = name if name and "@" in name else None
        return Actor(kind=ActorKind.USER, id=str(user_id), email=email, name=name)
    return Actor(kind=ActorKind.UNKNOWN, id=str(user_id), name=name)
