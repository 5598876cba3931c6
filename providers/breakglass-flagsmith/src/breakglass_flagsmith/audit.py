"""Flagsmith's audit log for the feature, as normalised audit records.

Source: ``GET {admin}/projects/{project}/audit/?search=<feature>&page=N``
(paged ``{count, next, previous, results}``, newest first), and for each entry
of the feature ``GET …/audit/{id}/``, whose ``change_details``
(``[{field, old, new}]``) carry the before/after of ``enabled``.

* The cursor is the highest audit id already pulled (ids only grow). A pull
  walks pages from the newest entry back to the cursor, drops duplicates (an
  entry written during the walk shifts the pages), then yields oldest first.
* ``search`` matches ``log`` case-insensitively as a substring, so entries are
  kept only when their ``log`` names exactly this feature (``…: system-active``)
  and, when ``environment_api_key`` is set, belong to that environment or to
  none (project-level entries such as "created"). Others still move the cursor.
* ``is_system_event`` is never sent: the server's filter is broken upstream.
* On a plan without audit log (``audit_log_visibility_days`` 0) the server
  answers 200 with an empty list; the pull then raises
  :class:`~breakglass.errors.AuditSourceError` saying so, rather than exporting nothing.
* ``author: null`` (a change made with an organisation ``Api-Key``, whose name
  Flagsmith does not return) becomes an ``unknown`` actor; a system event a
  ``system`` actor.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, parse_iso
from breakglass.errors import AuditSourceError
from breakglass.retry import RetryPolicy, safe_url
from breakglass.seams import AuditPage
from breakglass_flagsmith._http import (
    json_or_none,
    new_session,
    request_with_retries,
    server_message,
)
from breakglass_flagsmith.admin import require
from breakglass_flagsmith.settings import ADMIN_TOKEN_SETTING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    import requests

    from breakglass_flagsmith.settings import FlagsmithSettings

logger = logging.getLogger("breakglass.flagsmith")

PROVIDER = "flagsmith"
_MAX_PAGES = 10_000


class FlagsmithAudit:
    """A :class:`breakglass.seams.AuditSource` on Flagsmith's project audit log.

    Args:
        settings: The ``flagsmith`` section; ``admin_token`` and ``project_id`` must be set.
        flag_key: The flag; the feature is ``settings.feature_name`` or this.
        page_size: Entries per list request and records per yielded page.
        clock: Stamps ``pulled_at``.
        policy: Retry budget for 5xx, 429 (``Retry-After`` honoured), timeouts.
        sleep: Waits between retries (tests pass a fake).

    Raises:
        ConfigurationError: A needed setting is missing (the message names it).
    """

    def __init__(
        self,
        settings: FlagsmithSettings,
        flag_key: str,
        *,
        page_size: int = 100,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        require(settings, "read Flagsmith's audit log", "admin_token", "project_id")
        assert settings.admin_token is not None  # noqa: S101 -- checked by require()
        self._settings = settings
        self._flag_key = flag_key
        self._feature = settings.feature(flag_key)
        self._page_size = max(1, min(999, page_size))
        self._clock = clock
        self._policy = policy or RetryPolicy(budget=30.0)
        self._sleep = sleep
        self._session = new_session(settings.admin_token)
        self._secrets = (settings.admin_token.get_secret_value(),)
        base = settings.admin_base
        self._project_url = f"{base}projects/{settings.project_id}/"
        self._url = f"{self._project_url}audit/"
        self._org_url = f"{base}organisations/"

    def __repr__(self) -> str:
        return (
            f"FlagsmithAudit(url={safe_url(self._url)!r}, feature={self._feature!r}, "
            f"auth={self._settings.admin_scheme!r})"
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield the feature's entries after ``cursor`` (the last audit id pulled), oldest first.

        Raises:
            AuditSourceError: The cursor is not a Flagsmith audit id, the token is
                rejected, the plan hides the audit log, or the log cannot be read
                within the retry budget.
        """
        after = _parse_cursor(cursor)
        entries, malformed, problems, total = self._fetch_after(after)
        if total == 0:
            self._check_visibility()
        if not entries:
            if malformed:
                yield AuditPage(records=[], cursor=cursor, malformed=malformed, problems=problems)
            return
        for start in range(0, len(entries), self._page_size):
            chunk = entries[start : start + self._page_size]
            pulled_at = self._clock.now()
            records: list[AuditRecord] = []
            for audit_id, entry in chunk:
                if not self._concerns_us(entry):
                    continue
                detail = self._detail(audit_id)
                if detail is None:
                    malformed += 1
                    problems.append(
                        f"audit entry {audit_id}: its detail is not available (HTTP 404)"
                    )
                    continue
                try:
                    records.append(
                        normalise({**entry, **detail}, flag_key=self._flag_key, pulled_at=pulled_at)
                    )
                except ValueError as exc:
                    malformed += 1
                    problems.append(f"audit entry {audit_id}: {exc}")
            yield AuditPage(
                records=records, cursor=str(chunk[-1][0]), malformed=malformed, problems=problems
            )
            malformed, problems = 0, []

    # ------------------------------------------------------------------ internals

    def _concerns_us(self, entry: dict[str, Any]) -> bool:
        log = entry.get("log")
        if not isinstance(log, str) or not _names_feature(log, self._feature):
            return False
        wanted = self._settings.environment_api_key
        environment = entry.get("environment")
        if wanted is None or environment is None:
            return True
        return isinstance(environment, dict) and environment.get("api_key") == wanted

    def _fetch_after(
        self, after: int
    ) -> tuple[list[tuple[int, dict[str, Any]]], int, list[str], int | None]:
        seen: dict[int, dict[str, Any]] = {}
        malformed = 0
        problems: list[str] = []
        total: int | None = None
        for page in range(1, _MAX_PAGES + 1):
            body = self._page(page)
            if page == 1 and type(body.get("count")) is int:
                total = int(body["count"])
            reached = False
            for entry in body["results"]:
                audit_id = entry.get("id") if isinstance(entry, dict) else None
                if type(audit_id) is not int:
                    malformed += 1
                    problems.append(f"entry on page {page}: no integer id")
                    continue
                if audit_id <= after:
                    reached = True
                    continue
                assert isinstance(entry, dict)  # noqa: S101 -- checked with the id above
                seen.setdefault(audit_id, entry)
            if reached or not body.get("next"):
                break
        else:
            raise AuditSourceError(
                f"{safe_url(self._url)} kept returning pages; stopped after {_MAX_PAGES}"
            )
        return sorted(seen.items()), malformed, problems, total

    def _page(self, page: int) -> dict[str, Any]:
        # Pages are asked by number against the configured base, never by following the
        # server's absolute `next` link: that could send the token to another host.
        params = {"search": self._feature, "page": str(page), "page_size": str(self._page_size)}
        response = self._get(self._url, params)
        if response.status_code == 404 and page > 1:
            return {"results": [], "next": None}  # the log shrank while walking
        self._check_status(response, self._url)
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise AuditSourceError(f"malformed page from {safe_url(self._url)} (page {page})")
        return body

    def _detail(self, audit_id: int) -> dict[str, Any] | None:
        url = f"{self._url}{audit_id}/"
        response = self._get(url, None)
        if response.status_code == 404:
            return None
        self._check_status(response, url)
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise AuditSourceError(f"malformed audit entry from {safe_url(url)}")
        return body

    def _check_visibility(self) -> None:
        """Raise when the plan hides the audit log (the list is then empty, not absent)."""
        days = self._visibility_days()
        if days == 0:
            raise AuditSourceError(
                "Flagsmith hides the audit log on this organisation's plan "
                "(audit_log_visibility_days is 0): the API answers with an empty list, so "
                "there is nothing to export. The changes breakglass makes itself are still "
                "in breakglass's own audit; a plan with audit logs makes Flagsmith's visible."
            )

    def _visibility_days(self) -> int | None:
        try:
            project = self._get(self._project_url, None)
            body = json_or_none(project) if project.status_code == 200 else None
            organisation = body.get("organisation") if isinstance(body, dict) else None
            if type(organisation) is not int:
                return None
            url = f"{self._org_url}{organisation}/get-subscription-metadata/"
            response = self._get(url, None)
            meta = json_or_none(response) if response.status_code == 200 else None
        except AuditSourceError as exc:
            logger.debug("flagsmith: cannot read the plan's audit visibility: %s", exc)
            return None
        days = meta.get("audit_log_visibility_days") if isinstance(meta, dict) else None
        return int(days) if type(days) is int else None

    def _get(self, url: str, params: dict[str, str] | None) -> requests.Response:
        timeout = self._settings.request_timeout
        outcome = request_with_retries(
            lambda t: self._session.get(url, params=params, timeout=(min(1.0, t), t)),
            url,
            self._policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        if outcome.response is None:
            raise AuditSourceError(f"cannot read {safe_url(url)}: {outcome.error}")
        return outcome.response

    def _check_status(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        where = safe_url(url)
        message = server_message(response, self._secrets)
        suffix = f": {message}" if message else ""
        if status in (401, 403):
            raise AuditSourceError(
                f"HTTP {status} from {where}: {ADMIN_TOKEN_SETTING} "
                f"({self._settings.admin_scheme} …) may not read project "
                f"{self._settings.project_id}'s audit log{suffix}"
            )
        if status == 404:
            raise AuditSourceError(
                f"HTTP 404 from {where}: check BREAKGLASS_FLAGSMITH__PROJECT_ID and "
                f"BREAKGLASS_FLAGSMITH__ADMIN_API_URL{suffix}"
            )
        raise AuditSourceError(f"HTTP {status} from {where}{suffix}")


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    try:
        return int(cursor)
    except ValueError:
        raise AuditSourceError(f"{cursor!r} is not a Flagsmith audit id cursor") from None


def _names_feature(log: str, feature: str) -> bool:
    # Flagsmith's messages end with the feature's name: "Flag state updated for feature:
    # system-active", "New Flag / Remote Config created: system-active".
    return log.rstrip().endswith(f": {feature}")


def normalise(entry: dict[str, Any], *, flag_key: str, pulled_at: datetime) -> AuditRecord:
    """One Flagsmith audit entry (list fields plus the detail's ``change_details``) as a record.

    Raises:
        ValueError: The entry lacks what a record needs (id, time, log text).
    """
    audit_id = entry.get("id")
    created = entry.get("created_date")
    log = entry.get("log")
    if type(audit_id) is not int:
        msg = "no integer id"
        raise ValueError(msg)
    if not isinstance(created, str):
        msg = "no created_date"
        raise ValueError(msg)  # noqa: TRY004 -- malformed vendor data: pull() counts ValueErrors
    if not isinstance(log, str):
        msg = "no log text"
        raise ValueError(msg)  # noqa: TRY004 -- as above
    try:
        occurred_at = parse_iso(created)
    except ValueError:
        msg = f"unreadable created_date {created[:40]!r}"
        raise ValueError(msg) from None
    object_type = entry.get("related_object_type")
    change_type = entry.get("change_type")
    action, before, after = _classify(object_type, change_type, entry.get("change_details"))
    kind = object_type if isinstance(object_type, str) else "UNKNOWN"
    verb = change_type if isinstance(change_type, str) else "UNKNOWN"
    return AuditRecord(
        provider=PROVIDER,
        vendor_event_id=str(audit_id),
        vendor_event_type=f"{kind}:{verb}",
        flag_key=flag_key,
        action=action,
        occurred_at=occurred_at,
        pulled_at=pulled_at,
        actor=_actor(entry.get("author"), entry.get("is_system_event")),
        project=_name_of(entry.get("project")),
        environment=_name_of(entry.get("environment")),
        value_before=before,
        value_after=after,
        comment=None,
        raw=entry,
    )


def _classify(
    object_type: object, change_type: object, details: object
) -> tuple[Action, bool | None, bool | None]:
    changes: dict[str, tuple[object, object]] = {}
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and isinstance(item.get("field"), str):
                changes[item["field"]] = (item.get("old"), item.get("new"))
    old, new = changes.get("enabled", (None, None))
    before = old if type(old) is bool else None
    after = new if type(new) is bool else None
    if change_type == "DELETE":
        return Action.DELETED, before, None
    if change_type == "CREATE":
        return Action.CREATED, None, after
    if after is not None and before is not after:
        return (Action.ENABLED if after else Action.DISABLED), before, after
    archived = changes.get("is_archived", (None, None))[1]
    if object_type == "FEATURE" and archived is True:
        return Action.ARCHIVED, None, None
    if object_type in ("FEATURE", "FEATURE_STATE", "EF_VERSION") or changes:
        return Action.UPDATED, before, after
    return Action.OTHER, before, after


def _actor(author: object, system_event: object) -> Actor:
    if isinstance(author, dict):
        user_id = author.get("id")
        email = author.get("email") if isinstance(author.get("email"), str) else None
        first = author.get("first_name") if isinstance(author.get("first_name"), str) else ""
        last = author.get("last_name") if isinstance(author.get("last_name"), str) else ""
        name = f"{first} {last}".strip() or email
        return Actor(
            kind=ActorKind.USER,
            id=str(user_id) if user_id is not None else None,
            email=email or None,
            name=name or None,
        )
    if system_event is True:
        return Actor(kind=ActorKind.SYSTEM)
    # Flagsmith stores which organisation API key made the change but does not return it;
    # guessing "ours" would be evidence we do not have. The raw entry keeps the null.
    return Actor(kind=ActorKind.UNKNOWN)


def _name_of(item: object) -> str | None:
    if isinstance(item, dict):
        name = item.get("name")
        if isinstance(name, str) and name:
            return name
        if item.get("id") is not None:
            return str(item["id"])
    return None
