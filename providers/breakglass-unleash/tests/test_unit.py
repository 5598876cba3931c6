"""The Unleash adapter's narrow cases, without a server: settings, mapping, retries, error answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr

from breakglass.audit_record import Action, ActorKind
from breakglass.bridge import check_staleness
from breakglass.errors import (
    AdminAuthError,
    AdminNotFoundError,
    AdminRejectedError,
    AdminUnavailableError,
    AuditSourceError,
    ConfigurationError,
)
from breakglass.observation import NoValue
from breakglass.retry import RetryPolicy
from breakglass.testing import ManualClock
from breakglass.testing.conformance import wait_for
from breakglass.testing.settings import check_section_is_strict
from breakglass_unleash import UnleashAdmin, UnleashAudit, UnleashSource
from breakglass_unleash._http import new_session
from breakglass_unleash.audit import normalise
from breakglass_unleash.plugin import create_backend
from breakglass_unleash.settings import UnleashSettings, load_unleash_settings

API = "http://127.0.0.1:9/api"
CLIENT = "default:development.unit-client-secret"
ADMIN = "*:*.unit-admin-secret"
FLAG = "system-active"
ENV_URL = f"{API}/admin/projects/default/features/{FLAG}/environments/development"
EVENTS = f"{API}/admin/search/events"
PULLED = datetime(2026, 1, 1, tzinfo=UTC)


def settings(**overrides: Any) -> UnleashSettings:
    values: dict[str, Any] = {
        "url": API,
        "client_token": SecretStr(CLIENT),
        "admin_token": SecretStr(ADMIN),
        "request_timeout": 0.5,
        # The served-value read after a change is proven against the protocol servers;
        # here it meets no mocked endpoint and must give up at once (served: unknown).
        "confirm_timeout": 0.01,
    }
    values.update(overrides)
    return UnleashSettings(**values)


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# ---------------------------------------------------------------- settings


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKGLASS_UNLEASH__URL", "http://127.0.0.1:4242/api/")
    monkeypatch.setenv("BREAKGLASS_UNLEASH__CLIENT_TOKEN", CLIENT)
    monkeypatch.setenv("BREAKGLASS_UNLEASH__ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("BREAKGLASS_UNLEASH__ENVIRONMENT", "production")
    monkeypatch.setenv("BREAKGLASS_UNLEASH__REFRESH_INTERVAL", "0.1")
    loaded = load_unleash_settings()
    assert loaded.url == "http://127.0.0.1:4242/api"
    assert loaded.environment == "production"
    assert loaded.project == "default"
    assert loaded.refresh_interval == 0.1
    assert CLIENT not in repr(loaded)
    assert ADMIN not in repr(loaded)


def test_settings_errors_name_the_variable_never_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BREAKGLASS_UNLEASH__URL", raising=False)
    monkeypatch.setenv("BREAKGLASS_UNLEASH__CLIENT_TOKEN", CLIENT)
    with pytest.raises(ConfigurationError, match="BREAKGLASS_UNLEASH__URL"):
        load_unleash_settings()
    monkeypatch.setenv("BREAKGLASS_UNLEASH__URL", "http://127.0.0.1:4242")
    with pytest.raises(ConfigurationError, match="ending in /api") as missing_api:
        load_unleash_settings()
    assert CLIENT not in str(missing_api.value)
    monkeypatch.setenv("BREAKGLASS_UNLEASH__URL", "http://user:pw@127.0.0.1:4242/api")
    with pytest.raises(ConfigurationError, match="credentials") as creds:
        load_unleash_settings()
    assert "pw" not in str(creds.value)


def test_poll_bound_covers_the_resume_path() -> None:
    bound = settings(refresh_interval=0.2, sdk_refresh_interval=5, request_timeout=2).poll_bound
    assert bound == pytest.approx(1 + 5 + 2)


# ---------------------------------------------------------------- audit mapping


def event(event_id: int, event_type: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "createdBy": "admin",
        "createdByUserId": -42,
        "createdAt": f"2026-11-27T22:58:{event_id % 60:02d}.058Z",
        "featureName": FLAG,
        "project": "default",
        "environment": "development",
        "data": None,
        "preData": None,
    }
    entry.update(extra)
    return entry


@pytest.mark.parametrize(
    ("event_type", "action", "before", "after"),
    [
        ("feature-environment-enabled", Action.ENABLED, False, True),
        ("feature-environment-disabled", Action.DISABLED, True, False),
        ("feature-created", Action.CREATED, None, None),
        ("feature-archived", Action.ARCHIVED, None, None),
        ("feature-deleted", Action.DELETED, None, None),
        ("feature-revived", Action.UPDATED, None, None),
        ("feature-strategy-update", Action.UPDATED, None, None),
        ("segment-updated", Action.OTHER, None, None),
    ],
)
def test_event_types_map_to_actions(
    event_type: str, action: Action, before: bool | None, after: bool | None
) -> None:
    record = normalise(event(7, event_type), flag_key=FLAG, pulled_at=PULLED)
    assert (record.action, record.value_before, record.value_after) == (action, before, after)
    assert record.vendor_event_type == event_type
    assert record.id == "unleash:7"
    assert record.occurred_at == datetime(2026, 11, 27, 22, 58, 7, 58000, tzinfo=UTC)
    assert record.raw["id"] == 7


@pytest.mark.parametrize(
    ("created_by", "user_id", "kind", "actor_id", "email"),
    [
        ("admin", -42, ActorKind.API_TOKEN, "admin", None),
        ("unleash_system_user", -1337, ActorKind.SYSTEM, None, None),
        ("ops@example.com", 3, ActorKind.USER, "3", "ops@example.com"),
        ("admin", 1, ActorKind.USER, "1", None),
        ("someone", None, ActorKind.UNKNOWN, None, None),
    ],
)
def test_actors(
    created_by: str, user_id: int | None, kind: ActorKind, actor_id: str | None, email: str | None
) -> None:
    entry = event(1, "feature-environment-disabled", createdBy=created_by, createdByUserId=user_id)
    actor = normalise(entry, flag_key=FLAG, pulled_at=PULLED).actor
    assert (actor.kind, actor.id, actor.email, actor.name) == (kind, actor_id, email, created_by)


@pytest.mark.parametrize(
    "broken",
    [
        {"id": "7"},
        {"type": None},
        {"createdAt": None},
        {"createdAt": "yesterday"},
        {"featureName": "another-flag"},
    ],
)
def test_malformed_entries_raise_value_error(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalise(event(7, "feature-created", **broken), flag_key=FLAG, pulled_at=PULLED)


# ---------------------------------------------------------------- audit pulls


def page_callback(events: list[dict[str, Any]]) -> Any:
    """Serve ``events`` newest first with offset/limit, as Unleash does."""

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = dict(part.split("=", 1) for part in (request.url or "").split("?", 1)[1].split("&"))
        offset, limit = int(query["offset"]), int(query["limit"])
        ordered = sorted(events, key=lambda e: -e["id"] if isinstance(e.get("id"), int) else 0)
        chunk = ordered[offset : offset + limit]
        return 200, {}, json.dumps({"events": chunk, "total": len(events)})

    return callback


@responses.activate
def test_pull_pages_oldest_first_counts_malformed_and_resumes() -> None:
    events = [
        event(i, "feature-environment-enabled" if i % 2 else "feature-environment-disabled")
        for i in range(1, 8)
    ]
    events[2]["createdAt"] = "not a time"  # id 3
    events.append(event(8, "feature-environment-enabled", environment="production"))  # skipped
    responses.add_callback(responses.GET, EVENTS, callback=page_callback(events))
    audit = UnleashAudit(settings(), FLAG, page_size=3, clock=ManualClock())
    pages = list(audit.pull(None))
    ids = [r.vendor_event_id for page in pages for r in page.records]
    assert ids == ["1", "2", "4", "5", "6", "7"]
    assert sum(p.malformed for p in pages) == 1
    assert any("event 3" in problem for p in pages for problem in p.problems)
    assert pages[-1].cursor == "8"
    assert list(audit.pull("8")) == []
    assert [r.vendor_event_id for p in audit.pull("5") for r in p.records] == ["6", "7"]


@responses.activate
def test_pull_honours_retry_after_and_names_the_token_setting() -> None:
    responses.add(responses.GET, EVENTS, status=429, headers={"Retry-After": "2"}, json={})
    responses.add(responses.GET, EVENTS, json={"events": [event(1, "feature-created")], "total": 1})
    sleep = FakeSleep()
    audit = UnleashAudit(settings(), FLAG, sleep=sleep)
    records = [r for p in audit.pull(None) for r in p.records]
    assert [r.action for r in records] == [Action.CREATED]
    assert sleep.waits == [2.0]

    responses.add(responses.GET, EVENTS, status=401, json={"message": f"bad token {ADMIN}"})
    with pytest.raises(AuditSourceError, match="BREAKGLASS_UNLEASH__ADMIN_TOKEN") as denied:
        list(audit.pull(None))
    assert ADMIN not in str(denied.value)


@responses.activate
def test_pull_rejects_a_malformed_page_and_a_bad_cursor() -> None:
    responses.add(responses.GET, EVENTS, body="<html>proxy error</html>")
    audit = UnleashAudit(settings(), FLAG)
    with pytest.raises(AuditSourceError, match="malformed page"):
        list(audit.pull(None))
    with pytest.raises(AuditSourceError, match="cursor"):
        list(audit.pull("not-a-number"))


# ---------------------------------------------------------------- admin retries and errors


def admin_for_tests(sleep: FakeSleep) -> UnleashAdmin:
    return UnleashAdmin(settings(), FLAG, policy=RetryPolicy(attempts=3, budget=5.0), sleep=sleep)


@responses.activate
def test_admin_retries_5xx_with_backoff_then_acknowledges() -> None:
    responses.add(responses.GET, ENV_URL, json={"enabled": True})
    responses.add(responses.POST, f"{ENV_URL}/off", status=503)
    responses.add(responses.POST, f"{ENV_URL}/off", status=502)
    responses.add(responses.POST, f"{ENV_URL}/off", status=200, body="")
    sleep = FakeSleep()
    ack = admin_for_tests(sleep).set_active(False, actor="ops", reason="test")
    assert (ack.active, ack.changed, ack.change_id) == (False, True, None)
    assert len(sleep.waits) == 2
    assert 0 < sleep.waits[0] <= sleep.waits[1] <= 2.0


@responses.activate
def test_admin_honours_429_retry_after() -> None:
    responses.add(responses.GET, ENV_URL, json={"enabled": False})
    responses.add(responses.POST, f"{ENV_URL}/on", status=429, headers={"Retry-After": "1"})
    responses.add(responses.POST, f"{ENV_URL}/on", status=200)
    sleep = FakeSleep()
    ack = admin_for_tests(sleep).set_active(True, actor="ops", reason="test")
    assert ack.changed is True
    assert sleep.waits == [1.0]


@responses.activate
def test_admin_gives_up_within_its_budget() -> None:
    responses.add(responses.GET, ENV_URL, json={"enabled": True})
    responses.add(responses.POST, f"{ENV_URL}/off", status=500)
    sleep = FakeSleep()
    with pytest.raises(AdminUnavailableError, match="after 3 attempt"):
        admin_for_tests(sleep).set_active(False, actor="ops", reason="test")
    assert len(sleep.waits) == 2

    responses.replace(responses.POST, f"{ENV_URL}/off", body=requests.ConnectTimeout("boom"))
    with pytest.raises(AdminUnavailableError, match="no answer"):
        admin_for_tests(FakeSleep()).set_active(False, actor="ops", reason="test")


@responses.activate
def test_admin_counts_its_attempts_in_words() -> None:
    """One attempt reads "1 attempt", several read "3 attempts": no "attempt(s)"."""
    responses.add(responses.GET, ENV_URL, json={"enabled": True})
    responses.add(responses.POST, f"{ENV_URL}/off", status=503)
    once = UnleashAdmin(settings(), FLAG, policy=RetryPolicy(attempts=1, budget=5.0))
    with pytest.raises(AdminUnavailableError) as one:
        once.set_active(False, actor="ops", reason="test")
    assert str(one.value).startswith("HTTP 503 ")
    assert " after 1 attempt" in str(one.value)
    assert "attempt(s)" not in str(one.value)
    assert "attempts" not in str(one.value)
    with pytest.raises(AdminUnavailableError) as several:
        admin_for_tests(FakeSleep()).set_active(False, actor="ops", reason="test")
    assert " after 3 attempts" in str(several.value)


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, AdminAuthError, "BREAKGLASS_UNLEASH__ADMIN_TOKEN"),
        (403, AdminAuthError, "personal access token"),
        (404, AdminNotFoundError, "BREAKGLASS_UNLEASH__PROJECT"),
        (400, AdminRejectedError, "archived"),
    ],
)
@responses.activate
def test_admin_client_errors(status: int, error: type[Exception], text: str) -> None:
    responses.add(responses.GET, ENV_URL, status=status)
    responses.add(
        responses.POST,
        f"{ENV_URL}/off",
        status=status,
        json={"message": f"Cannot perform this operation on archived features {ADMIN}"},
    )
    sleep = FakeSleep()
    with pytest.raises(error, match=text) as raised:
        admin_for_tests(sleep).set_active(False, actor="ops", reason="test")
    assert ADMIN not in str(raised.value)
    assert sleep.waits == []


def test_admin_needs_a_token() -> None:
    with pytest.raises(ConfigurationError, match="BREAKGLASS_UNLEASH__ADMIN_TOKEN"):
        UnleashAdmin(settings(admin_token=None), FLAG)


# ---------------------------------------------------------------- source answers


FLAG_URL = f"{API}/client/features/{FLAG}"


def polling_source() -> UnleashSource:
    source = UnleashSource(settings(), FLAG, clock=ManualClock())
    source._session = new_session(SecretStr(CLIENT))  # poll without starting the SDK
    return source


@responses.activate
def test_source_failures_keep_the_value_and_name_the_problem() -> None:
    source = polling_source()
    responses.add(responses.GET, FLAG_URL, json={"name": FLAG, "enabled": False})
    assert source.poll_once().value is False
    confirmed = source.current().confirmed_at
    cases: list[tuple[dict[str, Any], str]] = [
        ({"status": 500}, "HTTP 500"),
        ({"body": "{not json"}, "malformed JSON"),
        ({"json": ["a", "list"]}, "unexpected answer"),
        ({"body": requests.ConnectionError("refused")}, "cannot connect"),
        ({"body": requests.ReadTimeout("slow")}, "no answer"),
    ]
    for answer, problem in cases:
        responses.replace(responses.GET, FLAG_URL, **answer)
        obs = source.poll_once()
        assert obs.value is False
        assert obs.confirmed_at == confirmed
        assert problem in (obs.error or ""), obs
        assert CLIENT not in (obs.error or "")


@responses.activate
@pytest.mark.parametrize(("status", "problem"), [(401, "CLIENT_TOKEN"), (403, "backend token")])
def test_source_denied_is_unreadable_at_once(status: int, problem: str) -> None:
    """A 401/403 is Unleash's answer, not an outage: the value is unknown from that moment."""
    source = polling_source()
    responses.add(responses.GET, FLAG_URL, json={"name": FLAG, "enabled": True})
    source.poll_once()
    responses.replace(responses.GET, FLAG_URL, status=status)
    obs = source.poll_once()
    assert obs.value is NoValue.UNREADABLE
    assert problem in (obs.error or "")
    assert CLIENT not in (obs.error or "")


@responses.activate
def test_a_contact_is_dated_when_its_request_left() -> None:
    """An answer read 5 s after the request left (a thread kept off the CPU, a slow network) was
    current then, not when it was read: dating it at the read would lend it 5 s of freshness."""
    clock = ManualClock()
    source = UnleashSource(settings(), FLAG, clock=clock)
    source._session = new_session(SecretStr(CLIENT))
    left = clock.monotonic()

    def slow(_request: Any) -> tuple[int, dict[str, str], str]:
        clock.advance(5.0)
        return 200, {}, json.dumps({"name": FLAG, "enabled": False})

    responses.add_callback(responses.GET, FLAG_URL, callback=slow)
    obs = source.poll_once()
    assert obs.value is False
    assert obs.confirmed_at == left


@responses.activate
def test_source_missing_and_wrong_type() -> None:
    source = polling_source()
    responses.add(
        responses.GET, FLAG_URL, status=404, json={"message": "Could not find feature flag"}
    )
    assert source.poll_once().value is NoValue.FLAG_MISSING
    responses.replace(responses.GET, FLAG_URL, json={"name": FLAG, "enabled": "false"})
    obs = source.poll_once()
    assert obs.value == "false"
    assert obs.confirmed_at is not None


@responses.activate
def test_source_true_needs_the_sdk() -> None:
    source = polling_source()
    responses.add(responses.GET, FLAG_URL, json={"name": FLAG, "enabled": True})
    obs = source.poll_once()
    assert obs.value is NoValue.UNREAD  # the SDK has not evaluated it: nothing confirmed
    assert obs.error is None


def test_sdk_hook_tracks_contacts_and_failures() -> None:
    source = UnleashSource(settings(), FLAG, clock=ManualClock())

    def response(status: int, body: bytes = b"") -> requests.Response:
        resp = requests.Response()
        resp.status_code = status
        resp.url = f"{API}/client/features"
        resp._content = body
        return resp

    def problem() -> str | None:
        return source._sdk_problem

    source._on_sdk_response(response(304))
    assert source._sdk_contact is not None
    assert problem() is None
    source._on_sdk_response(response(500))
    assert "500" in (problem() or "")
    source._on_sdk_response(response(200, b"<html>"))
    assert "200" in (problem() or "")
    source._on_sdk_response(response(200, b'{"version": 2, "features": []}'))
    assert problem() is None


class _StaleSdk:
    """Stands in for UnleashClient holding a bulk payload: it answers what that payload said."""

    def __init__(self) -> None:
        self.enabled = True

    def is_enabled(self, name: str, context: dict[str, Any], fallback_function: Any) -> bool:
        return self.enabled


def test_a_resume_waits_for_an_sdk_payload_newer_than_the_revision_tick() -> None:
    """After a halt, an SDK payload from before the resume's revision tick cannot resume the flag.

    Otherwise the reader would resume on a payload older than the halt, then halt again
    when the SDK fetches a payload that has the halt but not yet the resume.
    """
    from breakglass_unleash.source import _REVISION_TICK, _Contact

    clock = ManualClock()
    source = UnleashSource(settings(), FLAG, clock=clock)
    sdk = _StaleSdk()
    source._sdk = sdk  # type: ignore[assignment]

    def contact() -> _Contact:
        return _Contact(clock.monotonic(), clock.now())

    source._sdk_contact = contact()
    assert source._combine(True, contact()).value is True  # cold start: no halt seen, SDK agrees
    clock.advance(0.2)
    assert source._combine(False, contact()).value is False  # the halt, from the single-flag read
    clock.advance(1.5)
    source._sdk_contact = contact()  # a poll whose payload still predates the halt (stale "on")
    resumed_at = contact()
    assert source._combine(True, resumed_at).value is False, (
        "resumed on a payload older than the halt"
    )
    clock.advance(_REVISION_TICK / 2)
    source._sdk_contact = contact()  # fetched within the tick after the resume: not trusted yet
    assert source._combine(True, contact()).value is False
    clock.advance(_REVISION_TICK)
    source._sdk_contact = contact()  # fetched after the tick: the payload has the resume
    obs = source._combine(True, contact())
    assert obs.value is True
    assert obs.confirmed_at is not None
    assert obs.confirmed_at >= resumed_at.mono + _REVISION_TICK


def test_unleash_settings_without_a_table_or_with_a_typo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No [unleash] table: the required setting is named; a misspelt key in it is refused."""
    check_section_is_strict(
        load_unleash_settings,
        "unleash",
        required="url",
        table='url = "http://127.0.0.1:4242/api"\nclient_token = "t"\n',
        directory=tmp_path,
        monkeypatch=monkeypatch,
    )


def test_a_staleness_budget_below_the_sdk_refresh_is_refused() -> None:
    """max_staleness 3 s with the SDK's 5 s refresh would flap a healthy flag: refused at start."""
    backend = create_backend(settings(sdk_refresh_interval=5.0), FLAG, ManualClock())
    assert backend.confirm_interval == 5.0
    with pytest.raises(ConfigurationError, match=r"BREAKGLASS_MAX_STALENESS=3 .*every 5 s"):
        check_staleness(3.0, [backend])
    check_staleness(30.0, [backend])


@responses.activate
def test_a_deeply_nested_answer_halts_at_once_and_the_poll_carries_on() -> None:
    """A body that makes the JSON decoder raise RecursionError used to kill the poll thread."""
    source = polling_source()
    responses.add(responses.GET, FLAG_URL, json={"name": FLAG, "enabled": False})
    nested = "[" * 100_000 + "]" * 100_000
    responses.add(responses.GET, FLAG_URL, body=nested, content_type="application/json")
    assert source.poll_once().value is False
    with pytest.raises(RecursionError):
        source.poll_once()  # what the adapter alone does with it
    seen: list[Any] = []
    (loop,) = source.readers()
    loop.start(seen.append)
    try:
        assert wait_for(lambda: loop.crashes >= 2, 10.0) is not None
        assert loop.alive
        crashed = [o for o in seen if o.value is NoValue.UNREADABLE]
        assert crashed, seen
        assert "RecursionError" in (crashed[0].error or "")
    finally:
        loop.close()


def test_source_id_names_server_project_and_environment_without_tokens() -> None:
    def sid(**overrides: Any) -> str | None:
        return create_backend(settings(**overrides), FLAG, ManualClock()).source_id

    same = sid()
    assert same == f"unleash:{API}:default:development"
    assert same == sid(admin_token=None, app_name="another-app", refresh_interval=1.0)
    assert sid(environment="production") != same
    assert sid(project="other") != same
    assert sid(url="http://127.0.0.1:9/edge/api") != same
    assert "secret" not in (same or "")
