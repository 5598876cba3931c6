"""Settings, the audit normaliser and narrow HTTP error cases (``responses`` mocks ``requests`` only here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import SecretStr

from breakglass.audit_record import Action, ActorKind
from breakglass.errors import (
    AdminAuthError,
    AdminRejectedError,
    AdminUnavailableError,
    AuditSourceError,
    ConfigurationError,
)
from breakglass.retry import RetryPolicy
from breakglass.testing import ManualClock
from breakglass.testing.settings import check_section_is_strict
from breakglass_flagsmith import FlagsmithAdmin, FlagsmithAudit, load_flagsmith_settings
from breakglass_flagsmith.admin import _typed_value
from breakglass_flagsmith.audit import normalise
from breakglass_flagsmith.plugin import create_backend
from breakglass_flagsmith.settings import DEFAULT_API_URL, SAAS_ADMIN_API_URL, FlagsmithSettings
from flagsmith_tests.server import FIXTURES, FlagsmithServer, sample

API = "http://flagsmith.test/api/v1/"
SERVER_KEY = "ser.unit-test-server-key"
ADMIN = "Api-Key unitpfx.unit-test-admin-secret"
ENV = "2pGhP9KtwMPjfvtzLNyeQP"
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def settings(**overrides: Any) -> FlagsmithSettings:
    values: dict[str, Any] = {
        "api_url": API,
        "environment_key": SecretStr(SERVER_KEY),
        "admin_token": SecretStr(ADMIN),
        "project_id": 1,
        "environment_api_key": ENV,
        "request_timeout": 0.5,
        # The served-value read after a change is proven against the protocol servers;
        # here it meets no mocked endpoint and must give up at once (served: unknown).
        "confirm_timeout": 0.01,
    }
    values.update(overrides)
    return FlagsmithSettings(**values)


def body_of(request: Any) -> Any:
    body = request.body
    return json.loads(body) if isinstance(body, (bytes, str)) else None


def no_sleep(_seconds: float) -> None:
    return


FAST = RetryPolicy(attempts=3, budget=5.0, base_delay=0.0)


# ---------------------------------------------------------------------- settings


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__API_URL", "http://127.0.0.1:8000/api/v1")
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY", SERVER_KEY)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__PROJECT_ID", "7")
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY", ENV)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__FEATURE_NAME", "kill-switch")
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL", "0.5")
    monkeypatch.setenv("MODE", "remote")  # unprefixed variables are never read
    loaded = load_flagsmith_settings()
    assert loaded.api_url == "http://127.0.0.1:8000/api/v1/"  # the SDK needs the slash
    assert loaded.mode == "local"
    assert (loaded.project_id, loaded.environment_api_key) == (7, ENV)
    assert loaded.feature("system-active") == "kill-switch"
    assert loaded.admin_scheme == "Api-Key"
    assert loaded.poll_bound == pytest.approx(0.5 + 2.0)
    assert SERVER_KEY not in repr(loaded)
    assert "unit-test-admin-secret" not in repr(loaded)


def test_defaults_point_at_the_public_api() -> None:
    defaults = FlagsmithSettings(environment_key=SecretStr(SERVER_KEY))
    assert defaults.api_url == DEFAULT_API_URL == "https://edge.api.flagsmith.com/api/v1/"
    # The Edge API serves no management calls: those go to the hosted API.
    assert defaults.admin_base == SAAS_ADMIN_API_URL
    assert defaults.refresh_interval == 0.2
    self_hosted = settings()
    assert self_hosted.admin_base == API
    edge_proxy = settings(
        api_url="http://edge-proxy.internal:8000/api/v1/", admin_api_url="http://flagsmith/api/v1"
    )
    assert edge_proxy.admin_base == "http://flagsmith/api/v1/"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ENVIRONMENT_KEY", "clientSideKey123", "server-side key"),
        ("ADMIN_TOKEN", "bare-secret-without-scheme", "Api-Key"),
        ("ADMIN_TOKEN", "Bearer bare-secret-value", "Token"),
        ("API_URL", "ftp://nowhere", "http(s) URL"),
        ("API_URL", "https://user:pw@host/api/v1/", "no credentials"),
        ("REFRESH_INTERVAL", "0", "greater than 0"),
        ("PROJECT_ID", "abc", "whole number"),
    ],
)
def test_settings_errors_name_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY", SERVER_KEY)
    monkeypatch.setenv(f"BREAKGLASS_FLAGSMITH__{variable}", value)
    with pytest.raises(ConfigurationError) as err:
        load_flagsmith_settings()
    assert f"BREAKGLASS_FLAGSMITH__{variable}" in str(err.value)
    assert expected in str(err.value)
    assert "secret" not in str(err.value)
    assert "clientSideKey123" not in str(err.value)


def test_remote_mode_accepts_a_client_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__MODE", "remote")
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY", ENV)
    assert load_flagsmith_settings().mode == "remote"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY"):
        load_flagsmith_settings()


def test_admin_and_audit_name_missing_settings() -> None:
    with pytest.raises(ConfigurationError, match="ENVIRONMENT_API_KEY"):
        FlagsmithAdmin(settings(environment_api_key=None), "system-active")
    with pytest.raises(ConfigurationError, match="PROJECT_ID"):
        FlagsmithAudit(settings(project_id=None), "system-active")


def test_typed_values_for_v2_versions() -> None:
    assert _typed_value(None) == {"type": "unicode", "string_value": None}
    assert _typed_value("x") == {"type": "unicode", "string_value": "x"}
    assert _typed_value(True) == {"type": "bool", "boolean_value": True}
    assert _typed_value(3) == {"type": "int", "integer_value": 3}


# ---------------------------------------------------------------------- normaliser


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 12,
        "created_date": "2026-11-27T22:48:41.940000Z",
        "log": "Flag state updated for feature: system-active",
        "author": None,
        "environment": sample("04-environment-create-production"),
        "project": sample("03-project-create"),
        "related_object_id": 2,
        "related_object_uuid": None,
        "related_object_type": "FEATURE_STATE",
        "is_system_event": False,
        "change_type": "UPDATE",
        "change_details": [{"field": "enabled", "old": True, "new": False}],
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("fields", "action", "before", "after"),
    [
        ({}, Action.DISABLED, True, False),
        (
            {"change_details": [{"field": "enabled", "old": False, "new": True}]},
            Action.ENABLED,
            False,
            True,
        ),
        (
            {"change_details": [{"field": "feature_state_value", "old": "a", "new": "b"}]},
            Action.UPDATED,
            None,
            None,
        ),
        (
            {"change_type": "CREATE", "related_object_type": "FEATURE", "change_details": []},
            Action.CREATED,
            None,
            None,
        ),
        (
            {
                "change_type": "CREATE",
                "change_details": [{"field": "enabled", "old": None, "new": True}],
            },
            Action.CREATED,
            None,
            True,
        ),
        ({"change_type": "DELETE", "change_details": []}, Action.DELETED, None, None),
        (
            {
                "related_object_type": "FEATURE",
                "change_details": [{"field": "is_archived", "old": False, "new": True}],
            },
            Action.ARCHIVED,
            None,
            None,
        ),
        ({"related_object_type": "EF_VERSION", "change_details": []}, Action.UPDATED, None, None),
        ({"related_object_type": "SEGMENT", "change_details": []}, Action.OTHER, None, None),
        (
            {"change_details": [{"field": "enabled", "old": "yes", "new": 0}]},
            Action.UPDATED,
            None,
            None,
        ),
    ],
)
def test_entries_map_to_actions(
    fields: dict[str, Any], action: Action, before: bool | None, after: bool | None
) -> None:
    record = normalise(entry(**fields), flag_key="system-active", pulled_at=NOW)
    assert (record.action, record.value_before, record.value_after) == (action, before, after)
    assert record.provider == "flagsmith"
    assert record.id == "flagsmith:12"
    assert record.occurred_at == datetime(2026, 11, 27, 22, 48, 41, 940000, tzinfo=UTC)
    json.dumps(record.to_dict())  # JSON-ready


@pytest.mark.parametrize(
    ("author", "system", "kind"),
    [
        (sample("05-feature-create")["owners"][0], False, ActorKind.USER),
        (None, False, ActorKind.UNKNOWN),  # an organisation Api-Key: Flagsmith does not say which
        (None, True, ActorKind.SYSTEM),
    ],
)
def test_actors(author: Any, system: bool, kind: ActorKind) -> None:
    record = normalise(
        entry(author=author, is_system_event=system), flag_key="system-active", pulled_at=NOW
    )
    assert record.actor.kind is kind
    if kind is ActorKind.USER:
        assert (record.actor.email, record.actor.name) == ("admin@example.com", "Admin User")


@pytest.mark.parametrize(
    "broken",
    [
        {"id": "12"},
        {"created_date": None},
        {"created_date": "yesterday"},
        {"log": 5},
    ],
)
def test_malformed_entries_raise_value_error(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the message varies by field
        normalise(entry(**broken), flag_key="system-active", pulled_at=NOW)


# ---------------------------------------------------------------------- audit over HTTP


AUDIT = f"{API}projects/1/audit/"


def page(results: list[Any], *, next_page: bool = False) -> dict[str, Any]:
    return {
        "count": len(results),
        "next": f"{AUDIT}?page=2" if next_page else None,
        "previous": None,
        "results": results,
    }


@responses.activate
def test_pull_counts_malformed_entries_and_never_crashes() -> None:
    good = {k: v for k, v in entry(id=5).items() if k not in ("change_type", "change_details")}
    bad_date = {**good, "id": 6, "created_date": "not a date"}
    responses.get(
        AUDIT,
        json=page([bad_date, "junk", {"id": None}, good]),
    )
    responses.get(f"{AUDIT}5/", json=entry(id=5))
    responses.get(f"{AUDIT}6/", json={**entry(id=6), "created_date": "not a date"})
    audit = FlagsmithAudit(settings(), "system-active", policy=FAST, sleep=no_sleep)
    pages = list(audit.pull(None))
    assert [r.vendor_event_id for p in pages for r in p.records] == ["5"]
    assert sum(p.malformed for p in pages) == 3
    assert any("no integer id" in problem for p in pages for problem in p.problems)
    assert pages[-1].cursor == "6"


@responses.activate
def test_pull_honours_retry_after_and_fails_plainly() -> None:
    waits: list[float] = []
    responses.get(AUDIT, status=429, headers={"Retry-After": "2"})
    responses.get(AUDIT, json=page([]))
    responses.get(f"{API}projects/1/", json=sample("03-project-create"))
    meta = sample("42-organisation-subscription-metadata")
    meta["audit_log_visibility_days"] = 30
    responses.get(f"{API}organisations/1/get-subscription-metadata/", json=meta)
    audit = FlagsmithAudit(settings(), "system-active", policy=FAST, sleep=waits.append)
    assert list(audit.pull(None)) == []
    assert waits == [2.0]

    responses.replace(responses.GET, AUDIT, status=200, body="<html>not json</html>")
    with pytest.raises(AuditSourceError, match="malformed page"):
        list(audit.pull(None))
    responses.replace(responses.GET, AUDIT, status=500)
    with pytest.raises(AuditSourceError, match="HTTP 500"):
        list(audit.pull(None))


# ---------------------------------------------------------------------- admin over HTTP


FEATURES = f"{API}projects/1/features/"
STATES = f"{API}environments/{ENV}/featurestates/"


def admin_api(*, patch: list[dict[str, Any]]) -> None:
    responses.get(FEATURES, json=page([sample("05-feature-create")]))
    responses.get(STATES, json=sample("08-featurestates-list"))
    for answer in patch:
        responses.patch(f"{STATES}2/", **answer)


@responses.activate
def test_admin_retries_5xx_then_acknowledges() -> None:
    admin_api(
        patch=[
            {"status": 502},
            {"status": 503, "body": "upstream"},
            {"json": sample("10-featurestate-patch-off")},
        ]
    )
    waits: list[float] = []
    admin = FlagsmithAdmin(settings(), "system-active", policy=FAST, sleep=waits.append)
    ack = admin.set_active(False, actor="ops", reason="drill")
    assert ack.active is False
    assert ack.changed is True  # sample 08 says enabled
    assert len(waits) == 2
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert [body_of(c.request) for c in patches] == [{"enabled": False}] * 3
    assert patches[0].request.headers["Authorization"] == ADMIN


@responses.activate
def test_admin_gives_up_within_its_budget() -> None:
    admin_api(patch=[{"status": 500}] * 3)
    admin = FlagsmithAdmin(settings(), "system-active", policy=FAST, sleep=no_sleep)
    with pytest.raises(AdminUnavailableError, match="HTTP 500"):
        admin.set_active(False, actor="ops", reason="drill")


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, {"detail": "Invalid token."}, AdminAuthError, "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN"),
        (403, {"detail": "You do not have permission."}, AdminAuthError, "admin rights"),
        (400, {"enabled": ["Must be a valid boolean."]}, AdminRejectedError, "valid boolean"),
        # The server echoing the key back is scrubbed from the message.
        (400, {"detail": f"bad key {ADMIN}"}, AdminRejectedError, "**********"),
    ],
)
@responses.activate
def test_admin_client_errors(status: int, body: Any, error: type[Exception], text: str) -> None:
    admin_api(patch=[{"status": status, "json": body}])
    admin = FlagsmithAdmin(settings(), "system-active", policy=FAST, sleep=no_sleep)
    with pytest.raises(error) as raised:
        admin.set_active(False, actor="ops", reason="drill")
    assert text in str(raised.value)
    assert "unit-test-admin-secret" not in str(raised.value)


@responses.activate
def test_admin_on_v2_refusal_switches_to_versions() -> None:
    admin_api(patch=[{"status": 400, "json": sample("55-v1-patch-on-v2-environment")}])
    version = sample("51-v2-version-create-publish-off")
    responses.post(f"{API}environments/2/features/1/versions/", status=201, json=version)
    admin = FlagsmithAdmin(settings(), "system-active", policy=FAST, sleep=no_sleep)
    ack = admin.set_active(False, actor="ops", reason="drill")
    assert ack.change_id == version["uuid"]
    (posted,) = [
        body_of(call.request)
        for call in responses.calls
        if call.request.method == "POST" and "/versions/" in str(call.request.url)
    ]
    assert posted == {
        "publish_immediately": True,
        "feature_states_to_update": [
            {
                "feature_segment": None,
                "enabled": False,
                "feature_state_value": {"type": "unicode", "string_value": None},
            }
        ],
    }
    # The sample request that published "off" on the real server had the same shape.
    real = json.loads((FIXTURES / "51-v2-version-create-publish-off.json").read_text())
    assert posted == real["request_body"]


# ---------------------------------------------------------------------- the protocol server itself


def test_protocol_server_shapes_match_the_real_servers_schema() -> None:
    """The audit and feature-state shapes the test server invents follow the real OpenAPI schema."""
    schemas = json.loads((FIXTURES / "36-openapi-audit-and-sdk-schemas.json").read_text())
    components = schemas["components"]

    def props(name: str) -> set[str]:
        return set(components[name]["properties"])

    server = FlagsmithServer(audit_delay=0.0)  # never started: payloads only
    server.set_enabled(False)
    entry = server.audit[-1]
    assert set(entry.listed()) == props("AuditLogList")
    assert set(entry.detail) == props("AuditLogRetrieve")
    assert set(entry.detail["project"]) == props("ProjectList")
    assert set(entry.detail["author"]) == props("UserList")
    assert set(entry.detail["environment"]) == props("EnvironmentSerializerLight")
    assert set(server.feature_state(server.feature)) <= props("FeatureStateSerializerBasic")
    document = server.document()
    assert set(document) >= set(components["V1EnvironmentDocumentResponse"]["required"])
    state = document["feature_states"][0]
    assert set(state) >= set(components["V1EnvironmentDocumentResponseFeatureState"]["required"])


def test_admin_target_follows_feature_name_so_the_probe_can_refuse_it() -> None:
    """With FEATURE_NAME set, the probe's key and the production key write the same feature."""
    mapped = settings(feature_name="kill-switch")
    production = FlagsmithAdmin(mapped, "system-active")
    probe = FlagsmithAdmin(mapped, "system-active-probe")
    assert production.target == probe.target
    assert "kill-switch" in production.target
    plain = settings()
    assert (
        FlagsmithAdmin(plain, "system-active").target
        != FlagsmithAdmin(plain, "system-active-probe").target
    )


def test_flagsmith_settings_without_a_table_or_with_a_typo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No [flagsmith] table: the required setting is named; a misspelt key in it is refused."""
    check_section_is_strict(
        load_flagsmith_settings,
        "flagsmith",
        required="environment_key",
        table='environment_key = "ser.k"\n',
        directory=tmp_path,
        monkeypatch=monkeypatch,
    )


def test_source_id_names_the_environment_without_its_key() -> None:
    def sid(**overrides: Any) -> str | None:
        return create_backend(settings(**overrides), "system-active", ManualClock()).source_id

    same = sid()
    assert same is not None
    assert same.startswith(f"flagsmith:{API}:#")
    assert SERVER_KEY not in same
    assert "unit-test" not in same
    assert same == sid(admin_token=None, refresh_interval=1.0)
    assert sid(environment_key=SecretStr("ser.another-environment-key")) != same
    assert sid(api_url="http://edge-proxy.test/api/v1/") != same
