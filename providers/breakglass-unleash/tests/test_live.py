"""The Unleash adapter against a real unleash-server on loopback (beyond the shared conformance suite)."""

from __future__ import annotations

import logging
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit_record import Action, ActorKind
from breakglass.clock import SYSTEM_CLOCK
from breakglass.engine import StateEngine
from breakglass.errors import AdminAuthError, AdminNotFoundError, AdminRejectedError
from breakglass.observation import NoValue
from breakglass.plugins import load_plugin
from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass_unleash import UnleashAdmin, UnleashAudit, UnleashSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    # The harness lives in conftest.py, which test modules cannot import (importlib mode).
    UnleashServer = Any

pytestmark = pytest.mark.live


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.002) -> float | None:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)
    return time.monotonic() - start


@pytest.fixture
def engines() -> Iterator[Callable[..., StateEngine]]:
    made: list[StateEngine] = []

    def make(source: UnleashSource, max_staleness: float = 30.0) -> StateEngine:
        engine = StateEngine("flag", [source], max_staleness=max_staleness)
        made.append(engine)
        engine.start()
        return engine

    yield make
    for engine in made:
        engine.close()


def test_reads_on_off_and_missing(
    unleash_server: UnleashServer, flag_name: str, engines: Callable[..., StateEngine]
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    source = UnleashSource(unleash_server.settings(), flag_name)
    engine = engines(source)
    assert wait_for(lambda: engine.active, 5) is not None, engine.state
    obs = source.current()
    assert obs.value is True
    assert obs.error is None
    assert obs.confirmed_at is not None

    unleash_server.set_flag(flag_name, enabled=False)
    assert wait_for(lambda: not engine.active, 2) is not None
    assert engine.state.cause is Cause.OFF

    missing = UnleashSource(unleash_server.settings(), f"{flag_name}-never-created")
    other = engines(missing)
    assert wait_for(lambda: other.state.cause is Cause.FLAG_MISSING, 5) is not None, other.state


def test_admin_toggles_and_reports_change(unleash_server: UnleashServer, flag_name: str) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    admin = UnleashAdmin(unleash_server.settings(), flag_name)
    try:
        ack = admin.set_active(False, actor="ops@example.com", reason="drill")
        assert (ack.active, ack.changed, ack.flag_key) == (False, True, flag_name)
        assert admin.get_active() is False
        again = admin.set_active(False, actor="ops@example.com", reason="drill, twice")
        assert again.changed is False
        assert admin.set_active(True, actor="ops@example.com", reason="drill over").changed is True
        assert admin.get_active() is True
        assert UnleashAdmin(unleash_server.settings(), f"{flag_name}-nope").get_active() is None
    finally:
        admin.close()


def test_admin_errors_are_clear_and_secret_free(
    unleash_server: UnleashServer, flag_name: str
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    wrong = "*:*.wrong-admin-secret-0123456789"
    with pytest.raises(AdminAuthError) as auth:
        UnleashAdmin(unleash_server.settings(admin_token=SecretStr(wrong)), flag_name).set_active(
            False, actor="a", reason="r"
        )
    assert "BREAKGLASS_UNLEASH__ADMIN_TOKEN" in str(auth.value)
    assert wrong not in str(auth.value)

    client_as_admin = unleash_server.settings(admin_token=SecretStr(unleash_server.client_token))
    with pytest.raises(AdminAuthError, match="403") as forbidden:
        UnleashAdmin(client_as_admin, flag_name).set_active(False, actor="a", reason="r")
    assert unleash_server.client_token not in str(forbidden.value)

    with pytest.raises(AdminNotFoundError, match="BREAKGLASS_UNLEASH__ENVIRONMENT"):
        UnleashAdmin(unleash_server.settings(environment="nowhere"), flag_name).set_active(
            False, actor="a", reason="r"
        )

    unleash_server.archive_flag(flag_name)
    with pytest.raises(AdminRejectedError, match="archived"):
        UnleashAdmin(unleash_server.settings(), flag_name).set_active(True, actor="a", reason="r")


def test_propagation_halt_p95_p99(unleash_server: UnleashServer, flag_name: str) -> None:
    """Toggle acknowledged -> engine halted, with the DEFAULT refresh_interval (0.2 s)."""
    unleash_server.create_flag(flag_name, enabled=True)
    settings = unleash_server.settings(
        refresh_interval=0.2, sdk_refresh_interval=0.25, request_timeout=2.0
    )
    admin = UnleashAdmin(settings, flag_name)
    engine = StateEngine(flag_name, [UnleashSource(settings, flag_name)], max_staleness=30.0)
    engine.start()
    rng = random.Random(7)  # noqa: S311 -- jitter, not crypto
    samples: list[float] = []
    try:
        assert wait_for(lambda: engine.active, 5) is not None, engine.state
        for _ in range(24):
            time.sleep(rng.uniform(0.0, 0.2))  # random phase against the poll
            admin.set_active(False, actor="test", reason="propagation")
            acked = time.monotonic()
            took = wait_for(lambda: not engine.active, 3, step=0.001)
            assert took is not None, engine.state
            samples.append((time.monotonic() - acked) * 1000)
            admin.set_active(True, actor="test", reason="propagation")
            assert wait_for(lambda: engine.active, 4) is not None, engine.state
    finally:
        engine.close()
        admin.close()
    ordered = sorted(samples)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    p99 = ordered[round(0.99 * (len(ordered) - 1))]
    summary = (
        f"n={len(samples)} p50={statistics.median(samples):.0f} p95={p95:.0f} p99={p99:.0f} ms"
    )
    assert p95 <= 250, summary
    assert p99 <= 400, summary


def test_audit_pull_is_incremental_and_normalised(
    unleash_server: UnleashServer, flag_name: str
) -> None:
    unleash_server.create_flag(flag_name, enabled=False)
    settings = unleash_server.settings()
    admin = UnleashAdmin(settings, flag_name)
    audit = UnleashAudit(settings, flag_name, page_size=2)  # small pages: exercise paging
    admin.set_active(True, actor="ops", reason="on")
    admin.set_active(False, actor="ops", reason="off")
    # A toggle in another environment: skipped by the audit source.
    unleash_server.set_flag(flag_name, enabled=True, environment="production")

    pages = list(audit.pull(None))
    records = [r for page in pages for r in page.records]
    assert sum(page.malformed for page in pages) == 0
    assert [r.vendor_event_type for r in records] == [
        "feature-created",
        "feature-strategy-add",
        "feature-environment-enabled",
        "feature-environment-disabled",
    ]
    created, strategy, enabled, disabled = records
    assert created.action is Action.CREATED
    assert strategy.action is Action.UPDATED
    assert (enabled.action, enabled.value_before, enabled.value_after) == (
        Action.ENABLED,
        False,
        True,
    )
    assert (disabled.action, disabled.value_before, disabled.value_after) == (
        Action.DISABLED,
        True,
        False,
    )
    assert disabled.environment == "development"
    assert disabled.project == "default"
    assert disabled.actor.kind is ActorKind.API_TOKEN
    assert disabled.actor.name == "admin"
    assert disabled.raw["type"] == "feature-environment-disabled"
    assert disabled.id == f"unleash:{disabled.vendor_event_id}"
    assert enabled.occurred_at <= disabled.occurred_at

    cursor = pages[-1].cursor
    assert [r for page in audit.pull(cursor) for r in page.records] == []
    again = [r.id for page in audit.pull(None) for r in page.records]
    assert again == [r.id for r in records]

    admin.set_active(True, actor="ops", reason="back on")
    newer = [r for page in audit.pull(cursor) for r in page.records]
    assert [(r.action, r.value_after) for r in newer] == [(Action.ENABLED, True)]

    unleash_server.delete_flag(flag_name)
    tail = [r.action for page in audit.pull(cursor) for r in page.records]
    assert tail[-2:] == [Action.ARCHIVED, Action.DELETED]


def test_deleted_flag_reads_flag_missing(
    unleash_server: UnleashServer, flag_name: str, engines: Callable[..., StateEngine]
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    source = UnleashSource(unleash_server.settings(), flag_name)
    engine = engines(source)
    assert wait_for(lambda: engine.active, 5) is not None
    unleash_server.delete_flag(flag_name)
    assert wait_for(lambda: engine.state.cause is Cause.FLAG_MISSING, 3) is not None, engine.state
    assert source.current().value is NoValue.FLAG_MISSING


def test_wrong_client_token_halts_with_the_setting_named(
    unleash_server: UnleashServer,
    flag_name: str,
    engines: Callable[..., StateEngine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    unleash_server.create_flag(flag_name, enabled=True)
    wrong = "default:development.not-a-real-token-4242"
    source = UnleashSource(unleash_server.settings(client_token=SecretStr(wrong)), flag_name)
    engine = engines(source)
    assert wait_for(lambda: source.current().error is not None, 3) is not None
    time.sleep(0.3)
    state = engine.state
    assert state.active is False
    assert state.cause is Cause.ERROR  # Unleash answered "not allowed": halted at once
    assert "BREAKGLASS_UNLEASH__CLIENT_TOKEN" in (state.detail or "")
    for text in (caplog.text, repr(source), repr(state), str(source.current())):
        assert wrong not in text
        assert unleash_server.client_token not in text
    # One warning for the failure, not one per poll.
    warnings = [
        r for r in caplog.records if r.name == "breakglass.unleash" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_restart_with_server_away_never_resurrects_true(
    unleash_server: UnleashServer, flag_name: str, engines: Callable[..., StateEngine]
) -> None:
    """The SDK's on-disk cache would bring back the last run's `true`; ours is in memory only."""
    unleash_server.create_flag(flag_name, enabled=True)
    settings = unleash_server.settings(app_name="breakglass-cache-check")
    first = UnleashSource(settings, flag_name)
    engine = engines(first)
    assert wait_for(lambda: engine.active, 5) is not None
    engine.close()
    unleash_server.stop()
    second = UnleashSource(settings, flag_name)
    cold = engines(second)
    seen_active = wait_for(lambda: cold.active, 2.0)
    assert seen_active is None, cold.state
    assert cold.state.cause in (Cause.ERROR, Cause.UNCONFIRMED)
    assert second.current().value is NoValue.UNREAD


def test_stopped_server_goes_stale_then_recovers(
    unleash_server: UnleashServer, flag_name: str, engines: Callable[..., StateEngine]
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    settings = unleash_server.settings()
    engine = engines(UnleashSource(settings, flag_name), max_staleness=1.0)
    assert wait_for(lambda: engine.active, 5) is not None
    unleash_server.stop()
    # Halted within max_staleness + one poll (+ the SDK's last contact, + scheduling slack).
    bound = (
        1.0
        + settings.refresh_interval
        + settings.sdk_refresh_interval
        + settings.request_timeout
        + 0.5
    )
    assert wait_for(lambda: not engine.active, bound) is not None, engine.state
    assert engine.state.cause is Cause.STALE
    # The reason comes with the reader's first failed read; the value may age out before it (a
    # reader kept off the CPU for max_staleness on a loaded host), so it is awaited.
    reason = wait_for(
        lambda: (
            engine.state.cause is Cause.STALE and "cannot connect" in (engine.state.detail or "")
        ),
        5.0,
    )
    assert reason is not None, engine.state
    unleash_server.start()
    assert wait_for(lambda: engine.active, settings.poll_bound + 2) is not None, engine.state


def test_plugin_builds_from_environment(
    unleash_server: UnleashServer, flag_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    monkeypatch.setenv("BREAKGLASS_UNLEASH__URL", unleash_server.api_url + "/")
    monkeypatch.setenv("BREAKGLASS_UNLEASH__CLIENT_TOKEN", unleash_server.client_token)
    monkeypatch.delenv("BREAKGLASS_UNLEASH__ADMIN_TOKEN", raising=False)
    backend = load_plugin("unleash").create(Settings(flag_key=flag_name), clock=SYSTEM_CLOCK)
    assert backend.name == "unleash"
    assert backend.admin is None
    assert backend.audit is None
    assert backend.poll_bound > 1.0
    engine = StateEngine(flag_name, [backend.source], max_staleness=30.0)
    engine.start()
    try:
        assert wait_for(lambda: engine.active, 5) is not None, engine.state
    finally:
        engine.close()
