"""LaunchDarkly's audit log for the flag, as normalised audit records.

Source: ``GET {api}/api/v2/auditlog?spec=proj/<p>:env/<e>:flag/<key>&limit=20``
(newest first), paged by following ``_links.next.href``, and made incremental
with ``after=<epoch ms>``. Each new entry is read once more in detail
(``GET /api/v2/auditlog/{id}``) for ``previousVersion`` / ``currentVersion``,
which give the flag's on-state in the environment before and after.

The cursor (an opaque string to the caller) holds the newest entry time seen
and the ids of the entries of the last few minutes. A pull asks from a little
*before* that time (``lookback``), so an entry that LaunchDarkly indexes late
with an earlier date is still found, and the ids keep it from coming twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import AuditSourceError, ConfigurationError
from breakglass.retry import RetryPolicy, safe_url
from breakglass.seams import AuditPage
from breakglass.wording import counted
from breakglass_launchdarkly._http import (
    json_or_none,
    new_session,
    request_with_retries,
    server_message,
)
from breakglass_launchdarkly.settings import API_TOKEN_SETTING, PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests

    from breakglass_launchdarkly.settings import LaunchDarklySettings

logger = logging.getLogger("breakglass.launchdarkly")

PROVIDER = "launchdarkly"
PAGE_LIMIT = 20
"""LaunchDarkly's largest ``limit`` for the audit log listing."""
_MAX_PAGES = 5_000
_CURSOR_VERSION = 1

# LaunchDarkly access actions (role actions) that name what happened to a flag.
_ACTIONS: dict[str, Action] = {
    "createFlag": Action.CREATED,
    "cloneFlag": Action.CREATED,
    "deleteFlag": Action.DELETED,
    "updateGlobalArchived": Action.ARCHIVED,
    "archiveFlag": Action.ARCHIVED,
}


@dataclass
class _Cursor:
    """Where the last pull stopped: the newest entry time (ms) and the ids seen near it."""

    newest: int | None = None
    seen: dict[str, int] = field(default_factory=dict)

    def dump(self) -> str:
        return json.dumps(
            {"v": _CURSOR_VERSION, "t": self.newest, "seen": self.seen}, separators=(",", ":")
        )

    def advance(self, entry_id: str, date: int, lookback_ms: int) -> None:
        self.newest = date if self.newest is None else max(self.newest, date)
        self.seen[entry_id] = date
        floor = self.newest - lookback_ms
        self.seen = {k: v for k, v in self.seen.items() if v >= floor}


def _parse_cursor(cursor: str | None) -> _Cursor:
    if not cursor:
        return _Cursor()
    parsed = _decode_cursor(cursor)
    if parsed is None:
        raise AuditSourceError(
            "the audit cursor is not a LaunchDarkly cursor from this adapter; pull from the start"
        )
    return parsed


def _decode_cursor(cursor: str) -> _Cursor | None:
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
        return None
    newest, seen = data.get("t"), data.get("seen")
    if (newest is not None and type(newest) is not int) or not isinstance(seen, dict):
        return None
    if not all(isinstance(k, str) and type(v) is int for k, v in seen.items()):
        return None
    return _Cursor(newest=newest, seen=dict(seen))


@dataclass(frozen=True, slots=True)
class _Resource:
    project: str | None
    environment: str | None
    flag: str | None


def parse_resource(spec: str) -> _Resource:
    """Split a resource specifier such as ``proj/default:env/production:flag/system-active``."""
    parts: dict[str, str] = {}
    for piece in spec.split(":"):
        kind, sep, name = piece.partition("/")
        if sep:
            # Tags and actions may follow a ';' (e.g. flag/*;tag1); the name is before it.
            parts[kind] = name.split(";", 1)[0]
    return _Resource(parts.get("proj"), parts.get("env"), parts.get("flag"))


class LaunchDarklyAudit:
    """A :class:`breakglass.seams.AuditSource` on LaunchDarkly's audit log.

    Args:
        settings: The ``launchdarkly`` settings section; ``api_token`` must be set.
        flag_key: The flag's key in LaunchDarkly.
        page_size: Records per yielded page.
        lookback: Seconds before the cursor a pull asks from again (late-indexed entries).
        clock: Stamps ``pulled_at``.
        policy: Retry budget for 5xx, 429 (``Retry-After`` / ``X-Ratelimit-Reset``), timeouts.
        sleep: Waits between retries (tests pass a fake).
    """

    def __init__(
        self,
        settings: LaunchDarklySettings,
        flag_key: str,
        *,
        page_size: int = PAGE_LIMIT,
        lookback: float = 300.0,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.api_token is None:
            raise ConfigurationError(
                f"{API_TOKEN_SETTING} is needed to read LaunchDarkly's audit log"
            )
        self._settings = settings
        self._flag_key = flag_key
        self._page_size = max(1, page_size)
        self._lookback_ms = int(lookback * 1000)
        self._clock = clock
        self._policy = policy or RetryPolicy(attempts=6, budget=60.0, max_retry_after=30.0)
        self._sleep = sleep
        self._secret = settings.api_token.get_secret_value()
        self._session = new_session(settings.api_token, settings.api_base_url, settings.http_proxy)
        self._base = settings.api_base_url
        self._spec = f"proj/{settings.project_key}:env/{settings.environment_key}:flag/{flag_key}"

    def __repr__(self) -> str:
        return f"LaunchDarklyAudit(url={safe_url(self._base)!r}, spec={self._spec!r})"

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield the entries after ``cursor``, oldest first, as normalised records.

        Raises:
            AuditSourceError: The cursor is foreign, the token is rejected, or
                the log cannot be read within the retry budget.
        """
        state = _parse_cursor(cursor)
        entries, malformed, problems = self._list(state)
        if not entries:
            if malformed:
                yield AuditPage(records=[], cursor=cursor, malformed=malformed, problems=problems)
            return
        pulled_at = self._clock.now()
        for start in range(0, len(entries), self._page_size):
            records: list[AuditRecord] = []
            for entry_id, date, entry in entries[start : start + self._page_size]:
                try:
                    record = self._record(entry, pulled_at)
                except ValueError as exc:
                    malformed += 1
                    problems.append(f"entry {entry_id}: {exc}")
                    record = None
                if record is not None:
                    records.append(record)
                state.advance(entry_id, date, self._lookback_ms)
            yield AuditPage(
                records=records, cursor=state.dump(), malformed=malformed, problems=problems
            )
            malformed, problems = 0, []

    # ------------------------------------------------------------------ listing

    def _list(self, state: _Cursor) -> tuple[list[tuple[str, int, dict[str, Any]]], int, list[str]]:
        params: dict[str, str] | None = {"spec": self._spec, "limit": str(PAGE_LIMIT)}
        floor = None if state.newest is None else state.newest - self._lookback_ms
        if floor is not None and params is not None:
            params["after"] = str(floor - 1)
        url = f"{self._base}/api/v2/auditlog"
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        malformed = 0
        problems: list[str] = []
        for _ in range(_MAX_PAGES):
            body = self._get_json(url, params, "the audit log")
            items = body.get("items")
            if not isinstance(items, list):
                raise AuditSourceError(f"malformed audit log page from {safe_url(url)}")
            for item in items:
                entry_id = item.get("_id") if isinstance(item, dict) else None
                date = item.get("date") if isinstance(item, dict) else None
                if not isinstance(entry_id, str) or type(date) is not int:
                    malformed += 1
                    problems.append(
                        f"listing entry without a string _id and integer date: {str(item)[:120]}"
                    )
                    continue
                assert isinstance(item, dict)  # noqa: S101 -- checked just above
                if entry_id in state.seen or (floor is not None and date < floor):
                    continue
                found.setdefault(entry_id, (date, item))
            url_next = _next_href(body)
            if url_next is None:
                break
            url, params = self._follow(url_next), None
        else:
            raise AuditSourceError(
                f"{safe_url(self._base)} kept returning audit pages; stopped after {_MAX_PAGES}"
            )
        ordered = sorted(((d, i, e) for i, (d, e) in found.items()), key=lambda t: (t[0], t[1]))
        return [(i, d, e) for d, i, e in ordered], malformed, problems

    def _follow(self, href: str) -> str:
        # LaunchDarkly gives a path relative to the API host; never send the token anywhere else.
        if href.startswith("/"):
            return self._base + href
        base, target = urlsplit(self._base), urlsplit(href)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise AuditSourceError(
                f"the audit log's next page points at another host ({target.hostname}); not following it"
            )
        return href

    def _get_json(self, url: str, params: dict[str, str] | None, what: str) -> dict[str, Any]:
        body = self._get_json_or_none(url, params, what)
        if body is None:
            raise AuditSourceError(f"HTTP 404 from {safe_url(url)} reading {what}")
        return body

    def _get_json_or_none(
        self, url: str, params: dict[str, str] | None, what: str
    ) -> dict[str, Any] | None:
        """The JSON object at ``url``; ``None`` on 404; raises on any other failure."""
        response = self._get(url, params)
        where = safe_url(url)
        status = response.status_code
        if status == 404:
            return None
        if status in (401, 403):
            message = server_message(response, (self._secret,))
            raise AuditSourceError(
                f"HTTP {status} from {where}: {API_TOKEN_SETTING} may not read {what} "
                "(its role needs the audit log / 'viewAuditLog')"
                + (f": {message}" if message else "")
            )
        if status == 400:
            message = server_message(response, (self._secret,))
            raise AuditSourceError(
                f"HTTP 400 from {where}: check {PREFIX}PROJECT_KEY and {PREFIX}ENVIRONMENT_KEY"
                + (f": {message}" if message else "")
            )
        if status != 200:
            raise AuditSourceError(
                f"HTTP {status} from {where} reading {what}"
                + (f" after {counted(self._policy.attempts, 'attempt')}" if status >= 500 else "")
            )
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise AuditSourceError(f"malformed answer from {where} reading {what}")
        return body

    def _get(self, url: str, params: dict[str, str] | None) -> requests.Response:
        settings = self._settings
        outcome = request_with_retries(
            lambda t: self._session.get(
                url, params=params, timeout=(min(settings.connect_timeout, t), t)
            ),
            url,
            self._policy,
            timeout=settings.request_timeout,
            sleep=self._sleep,
        )
        if outcome.response is None:
            raise AuditSourceError(f"cannot read {safe_url(url)}: {outcome.error}")
        if outcome.response.status_code == 429:
            raise AuditSourceError(
                f"{safe_url(url)} kept answering 429 (rate limited) for "
                f"{counted(outcome.attempts, 'attempt')}; "
                "pull again later"
            )
        return outcome.response

    # ------------------------------------------------------------------ records

    def _record(self, entry: dict[str, Any], pulled_at: datetime) -> AuditRecord | None:
        """The record for one listing entry; ``None`` when it is not about this flag and environment."""
        concerns = self._concerns(entry)
        if concerns is None:
            return None
        detail = self._detail(entry)
        return normalise(
            entry,
            detail,
            flag_key=self._flag_key,
            project=self._settings.project_key,
            environment=self._settings.environment_key,
            access_action=concerns,
            pulled_at=pulled_at,
        )

    def _concerns(self, entry: dict[str, Any]) -> str | None:
        """The access action on this flag in this environment (or all of them), else ``None``."""
        accesses = entry.get("accesses")
        if accesses is not None and not isinstance(accesses, list):
            raise ValueError("accesses is not a list")
        candidates: list[tuple[str | None, str]] = []
        for access in accesses or []:
            if isinstance(access, dict) and isinstance(access.get("resource"), str):
                action = access.get("action")
                candidates.append((action if isinstance(action, str) else None, access["resource"]))
        target = entry.get("target")
        if isinstance(target, dict) and isinstance(target.get("resources"), list):
            candidates.extend((None, r) for r in target["resources"] if isinstance(r, str))
        settings = self._settings
        matched: str | None = None
        hit = False
        for action, spec in candidates:
            resource = parse_resource(spec)
            if resource.flag != self._flag_key or resource.project not in (
                None,
                settings.project_key,
            ):
                continue
            if resource.environment not in (None, "*", settings.environment_key):
                continue
            hit = True
            matched = matched or action
        if not hit:
            return None
        return matched or str(entry.get("kind") or "unknown")

    def _detail(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        entry_id = entry["_id"]
        url = f"{self._base}/api/v2/auditlog/{quote(entry_id, safe='')}"
        # None on 404 (gone, or not visible to this token): the listing entry still stands as evidence.
        return self._get_json_or_none(url, None, f"audit entry {entry_id}")


def normalise(
    entry: dict[str, Any],
    detail: dict[str, Any] | None,
    *,
    flag_key: str,
    project: str,
    environment: str,
    access_action: str,
    pulled_at: datetime,
) -> AuditRecord:
    """One LaunchDarkly audit entry (listing form, plus its detail when read) as a normalised record.

    Raises:
        ValueError: The entry lacks what every record needs (id, date).
    """
    entry_id = entry.get("_id")
    date = entry.get("date")
    if not isinstance(entry_id, str) or type(date) is not int:
        raise ValueError("no string _id or integer date")
    before = _on_state(detail, "previousVersion", environment)
    after = _on_state(detail, "currentVersion", environment)
    verb = _str(entry, "titleVerb") or ""
    action = _action(access_action, verb, before, after)
    if action is Action.ENABLED and before is None and after is None:
        before, after = False, True  # a toggle logged without detail: the verb says which way
    elif action is Action.DISABLED and before is None and after is None:
        before, after = True, False
    comment = entry.get("comment")
    return AuditRecord(
        provider=PROVIDER,
        vendor_event_id=entry_id,
        vendor_event_type=access_action,
        flag_key=flag_key,
        action=action,
        occurred_at=datetime.fromtimestamp(date / 1000, tz=UTC),
        pulled_at=pulled_at,
        actor=_actor(entry),
        project=project,
        environment=environment,
        value_before=before,
        value_after=after,
        comment=comment if isinstance(comment, str) and comment else None,
        raw=detail if detail is not None else entry,
    )


def _on_state(detail: dict[str, Any] | None, which: str, environment: str) -> bool | None:
    version = detail.get(which) if isinstance(detail, dict) else None
    environments = version.get("environments") if isinstance(version, dict) else None
    env = environments.get(environment) if isinstance(environments, dict) else None
    on = env.get("on") if isinstance(env, dict) else None
    return on if type(on) is bool else None


def _action(access_action: str, verb: str, before: bool | None, after: bool | None) -> Action:  # noqa: FBT001 -- values, not switches
    if before is not None and after is not None and before != after:
        return Action.ENABLED if after else Action.DISABLED
    if access_action in _ACTIONS:
        return _ACTIONS[access_action]
    if access_action == "updateOn":
        if "turned on" in verb:
            return Action.ENABLED
        if "turned off" in verb:
            return Action.DISABLED
    return Action.UPDATED


def _actor(entry: dict[str, Any]) -> Actor:
    member = entry.get("member") if isinstance(entry.get("member"), dict) else None
    token = entry.get("token") if isinstance(entry.get("token"), dict) else None
    app = entry.get("app") if isinstance(entry.get("app"), dict) else None
    email = _str(member, "email")
    if token is not None:
        # A token acts for a member (personal token) or for nobody (service token).
        return Actor(
            kind=ActorKind.API_TOKEN, id=_str(token, "_id"), email=email, name=_str(token, "name")
        )
    if member is not None:
        name = " ".join(n for n in (_str(member, "firstName"), _str(member, "lastName")) if n)
        return Actor(kind=ActorKind.USER, id=_str(member, "_id"), email=email, name=name or None)
    if app is not None:
        return Actor(kind=ActorKind.INTEGRATION, id=_str(app, "_id"), name=_str(app, "name"))
    return Actor()


def _str(obj: dict[str, Any] | None, key: str) -> str | None:
    value = obj.get(key) if obj is not None else None
    return value if isinstance(value, str) and value else None


def _next_href(body: dict[str, Any]) -> str | None:
    links = body.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None
