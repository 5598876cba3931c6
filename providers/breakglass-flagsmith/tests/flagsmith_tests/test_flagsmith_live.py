"""The Flagsmith adapter with the real ``flagsmith`` SDK against the protocol server on loopback.

Beyond the shared conformance suite: both evaluation modes, the SDK's
lifecycle, propagation figures, admin errors, feature versioning v2 and the
audit log (paging, cursor, hidden by the plan).
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit_record import Action, ActorKind
from breakglass.bridge import Bridge
from breakglass.engine import StateEngine
from breakglass.errors import (
    AdminAuthError,
    AdminNotFoundError,
    AuditSourceError,
    ConfigurationError,
)
from breakglass.observation import NoValue
from breakglass.plugins import load_plugin
from breakglass.settings import Settings
from breakglass.state import Cause, FlagState
from breakglass_flagsmith import FlagsmithAdmin, FlagsmithAudit, FlagsmithSource
from breakglass_flagsmith.source import SourceFlagsmith
from flagsmith_tests.server import FEATURE, OTHER_FEATURE, FlagsmithServer
from flagsmith_tests.support import settings_for, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from breakglass_flagsmith.settings import FlagsmithSettings

pytestmark = pytest.mark.live

READ = 5.0
"""Seconds to wait for a reader's next refresh to show: it comes within 0.05 s on a quiet host."""


@pytest.fixture
def engines() -> Iterator[Callable[..., StateEngine]]:
    made: list[StateEngine] = []

    def make(source: FlagsmithSource, max_staleness: float = 30.0) -> StateEngine:
        engine = StateEngine(FEATURE, [source], max_staleness=max_staleness)
        made.append(engine)
        engine.start()
        return engine

    yield make
    for engine in made:
        engine.close()


# ---------------------------------------------------------------------- reading


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_reads_on_off_and_missing(
    fs_server: FlagsmithServer, engines: Callable[..., StateEngine], mode: str
) -> None:
    settings = settings_for(fs_server, mode=mode)
    source = FlagsmithSource(settings, FEATURE)
    engine = engines(source)
    assert wait_for(lambda: engine.active, 3) is not None, engine.state
    obs = source.current()
    assert (obs.value, obs.error) == (True, None)

    fs_server.set_enabled(False)
    assert wait_for(lambda: not engine.active, 1) is not None
    assert engine.state.cause is Cause.OFF
    fs_server.set_enabled(True)
    assert wait_for(lambda: engine.active, 1) is not None

    fs_server.delete_feature()
    assert wait_for(lambda: engine.state.cause is Cause.FLAG_MISSING, 1) is not None
    assert source.current().value is NoValue.FLAG_MISSING
    # The document fetched is the SDK's: local mode never asks /flags/, remote never the document.
    counters = fs_server.counters.by_kind
    if mode == "local":
        assert counters.get("flags", 0) == 0
        assert counters["environment-document"] > 3
    else:
        assert counters.get("environment-document", 0) == 0
        assert counters["flags"] > 3


def test_remote_mode_takes_a_client_key(
    fs_server: FlagsmithServer, engines: Callable[..., StateEngine]
) -> None:
    settings = settings_for(
        fs_server, mode="remote", environment_key=SecretStr(fs_server.client_key)
    )
    engine = engines(FlagsmithSource(settings, FEATURE))
    assert wait_for(lambda: engine.active, 3) is not None, engine.state


def test_sdk_constructor_does_no_io_and_evaluates_the_installed_document(
    fs_server: FlagsmithServer, fs_settings: FlagsmithSettings
) -> None:
    """Pins the two SDK internals the source relies on against the installed SDK."""
    threads = set(threading.enumerate())
    sdk = SourceFlagsmith(
        environment_key=fs_settings.environment_key.get_secret_value(),
        api_url=fs_settings.api_url,
        enable_local_evaluation=True,
        environment_refresh_interval_seconds=0.05,
    )
    try:
        time.sleep(0.15)
        assert fs_server.counters.by_kind == {}, "the SDK's constructor fetched the document"
        assert set(threading.enumerate()) == threads, "the SDK started a thread of its own"
        sdk.fetch_document(1.0)
        assert sdk.get_environment_flags().is_feature_enabled(FEATURE) is True
        fs_server.set_enabled(False)
        assert sdk.get_environment_flags().is_feature_enabled(FEATURE) is True  # not refreshed yet
        sdk.update_environment()  # the SDK's own entry point still works
        assert sdk.get_environment_flags().is_feature_enabled(FEATURE) is False
        assert fs_server.counters.by_kind == {"environment-document": 2}, "evaluation did I/O"
    finally:
        sdk.session.close()


def test_api_stopped_mid_run_halts_within_staleness_then_recovers(
    fs_server: FlagsmithServer, engines: Callable[..., StateEngine]
) -> None:
    settings = settings_for(fs_server)  # refresh 0.05 s
    source = FlagsmithSource(settings, FEATURE)
    engine = engines(source, max_staleness=1.0)
    assert wait_for(lambda: engine.active, 3) is not None, engine.state
    fs_server.stop()
    stopped = time.monotonic()
    took = wait_for(lambda: not engine.active, 1.0 + settings.refresh_interval + 1.0)
    assert took is not None, engine.state
    # Nothing confirmed since the stop: the guard's deadline (the last confirmation +
    # max_staleness) passed at most max_staleness after it. Checked on the confirmation, not on
    # when this thread saw the halt, which a loaded host can delay.
    assert (engine.state.confirmed_mono or math.inf) <= stopped, engine.state
    assert engine.state.cause is Cause.STALE
    # The reason comes with the reader's first failed refresh; the value may age out first.
    reason = wait_for(lambda: "cannot connect" in (source.current().error or ""), 5.0)
    assert reason is not None, source.current()
    frozen = source.current().confirmed_at
    time.sleep(0.2)
    assert source.current().confirmed_at == frozen, "a failed refresh confirmed something"
    fs_server.start()
    assert wait_for(lambda: engine.active, 2) is not None, engine.state
    assert source.current().error is None


def test_cold_start_with_the_api_down(
    fs_server: FlagsmithServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs_server.stop()
    _configure_env(monkeypatch, fs_server)
    bridge = Bridge.from_settings(
        Settings(provider="flagsmith", state_dir=tmp_path / "state", max_staleness=1.0)
    )
    started = time.monotonic()
    bridge.start()
    try:
        assert time.monotonic() - started < 0.1, "start() blocked on the network"
        assert bridge.engine.active is False
        state = bridge.engine.wait_for_confirmation(3.0)
        assert state.active is False
        # Nothing was ever confirmed: halted, unconfirmed, with the reason in the detail.
        assert state.cause is Cause.UNCONFIRMED
        assert "cannot connect" in (state.detail or "")
        fs_server.start()
        assert wait_for(lambda: bridge.engine.active, 2) is not None, bridge.engine.state
    finally:
        bridge.close()


def test_wrong_server_key_names_the_setting_never_the_key(
    fs_server: FlagsmithServer,
    engines: Callable[..., StateEngine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ser.wrong-key-0123456789abcdef"
    source = FlagsmithSource(settings_for(fs_server, environment_key=SecretStr(wrong)), FEATURE)
    engine = engines(source)
    state = engine.wait_for_confirmation(3.0)
    assert state.active is False
    assert state.cause is Cause.ERROR  # a 403 is an answer, not an outage: halted at once
    assert "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY" in (state.detail or "")
    error = source.current().error or ""
    assert "HTTP 403" in error
    assert "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY" in error
    for text in (error, repr(source), repr(state), caplog.text):
        assert wrong not in text
        assert fs_server.server_key not in text


def test_malformed_documents_never_confirm(
    fs_server: FlagsmithServer, engines: Callable[..., StateEngine]
) -> None:
    source = FlagsmithSource(settings_for(fs_server), FEATURE)
    engine = engines(source, max_staleness=1.0)
    assert wait_for(lambda: engine.active, 3) is not None
    fs_server.document_hook = lambda doc: doc.pop("feature_states")
    # Each wait is for the reader's next refresh (every 0.05 s): a few seconds for a loaded host.
    assert wait_for(lambda: source.current().error is not None, READ) is not None
    assert "not an environment document" in (source.current().error or "")
    assert wait_for(lambda: engine.state.cause is Cause.STALE, 2) is not None, engine.state

    def half_feature(doc: dict[str, Any]) -> None:
        doc["feature_states"][0].pop("enabled")

    fs_server.document_hook = half_feature
    time.sleep(0.2)
    assert engine.state.cause is Cause.STALE

    def wrong_type(doc: dict[str, Any]) -> None:
        doc["feature_states"][0]["enabled"] = "true"

    # Not something Flagsmith serves, but a relay could: never coerced to true.
    fs_server.document_hook = wrong_type
    assert wait_for(lambda: engine.state.cause is Cause.WRONG_TYPE, READ) is not None, engine.state
    assert engine.active is False
    fs_server.document_hook = None
    assert wait_for(lambda: engine.active, READ) is not None


def test_close_is_prompt_even_with_a_request_hung(
    fs_server: FlagsmithServer, engines: Callable[..., StateEngine]
) -> None:
    settings = settings_for(fs_server, request_timeout=0.5)
    source = FlagsmithSource(settings, FEATURE)
    seen: list[Any] = []
    source.start(seen.append)
    assert wait_for(lambda: source.current().value is True, 3) is not None
    fs_server.stall()
    time.sleep(0.1)  # a refresh is now in flight, unanswered
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 1.0
    count = len(seen)
    fs_server.restore()
    (loop,) = source.readers()
    assert wait_for(lambda: not loop.alive, settings.request_timeout + 0.5) is not None
    assert len(seen) == count, "the listener was called after close()"


# ---------------------------------------------------------------------- propagation


class Watch:
    """Records when the engine's decision flips, from the engine's own notification."""

    def __init__(self, engine: StateEngine) -> None:
        self._cond = threading.Condition()
        self._last: tuple[bool, float] | None = None
        engine.subscribe(self._on_change)

    def _on_change(self, state: FlagState) -> None:
        with self._cond:
            self._last = (state.active, time.monotonic())
            self._cond.notify_all()

    def wait(self, *, active: bool, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._last is None or self._last[0] is not active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._last[1]


def test_propagation_halt_p95_p99(fs_server: FlagsmithServer) -> None:
    """Toggle acknowledged -> engine halted (the guard refuses from then), DEFAULT refresh_interval."""
    settings = settings_for(fs_server, refresh_interval=0.2, request_timeout=2.0)
    assert settings.refresh_interval == type(settings).model_fields["refresh_interval"].default
    admin = FlagsmithAdmin(settings, FEATURE)
    engine = StateEngine(FEATURE, [FlagsmithSource(settings, FEATURE)], max_staleness=30.0)
    watch = Watch(engine)
    engine.start()
    rng = random.Random(7)  # noqa: S311 -- phase jitter, not crypto
    samples: list[float] = []
    try:
        assert watch.wait(active=True, timeout=5) is not None, engine.state
        for _ in range(24):
            time.sleep(rng.uniform(0.0, 0.2))  # random phase against the refresh
            admin.set_active(False, actor="test", reason="propagation")
            acked = time.monotonic()
            changed = watch.wait(active=False, timeout=3)
            assert changed is not None, engine.state
            samples.append((changed - acked) * 1000)
            admin.set_active(True, actor="test", reason="propagation")
            assert watch.wait(active=True, timeout=3) is not None, engine.state
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


# ---------------------------------------------------------------------- admin


def test_admin_toggles_and_reports_change(
    fs_server: FlagsmithServer, fs_settings: FlagsmithSettings
) -> None:
    admin = FlagsmithAdmin(fs_settings, FEATURE)
    try:
        ack = admin.set_active(False, actor="ops@example.com", reason="drill")
        assert (ack.active, ack.changed, ack.flag_key, ack.change_id) == (
            False,
            True,
            FEATURE,
            None,
        )
        assert fs_server.vendor_value() is False
        assert admin.get_active() is False
        assert admin.set_active(False, actor="ops", reason="twice").changed is False
        assert admin.set_active(True, actor="ops", reason="over").changed is True
        assert admin.get_active() is True
        assert fs_server.patches == 3
        # The feature is re-created under new ids: the admin finds it again by name.
        fs_server.delete_feature()
        assert admin.get_active() is None
        fs_server.restore_feature()
        assert admin.set_active(False, actor="ops", reason="after re-creation").active is False
        assert fs_server.vendor_value() is False
    finally:
        admin.close()


def test_admin_with_a_user_token(fs_server: FlagsmithServer) -> None:
    settings = settings_for(fs_server, admin_token=SecretStr(f"Token {fs_server.user_token}"))
    admin = FlagsmithAdmin(settings, FEATURE)
    try:
        admin.set_active(False, actor="ops", reason="token")
        assert fs_server.vendor_value() is False
        assert "Token" in repr(admin)
        assert fs_server.user_token not in repr(admin)
    finally:
        admin.close()


def test_admin_errors_are_clear_and_secret_free(fs_server: FlagsmithServer) -> None:
    wrong = "Api-Key wrongpfx.0123456789abcdefghij"
    admin = FlagsmithAdmin(settings_for(fs_server, admin_token=SecretStr(wrong)), FEATURE)
    with pytest.raises(AdminAuthError) as auth:
        admin.set_active(False, actor="a", reason="r")
    assert "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN" in str(auth.value)
    assert "0123456789abcdefghij" not in str(auth.value)
    assert fs_server.vendor_value() is True

    with pytest.raises(AdminNotFoundError, match="PROJECT_ID"):
        FlagsmithAdmin(settings_for(fs_server, project_id=99), FEATURE).set_active(
            False, actor="a", reason="r"
        )
    wrong_env = FlagsmithAdmin(settings_for(fs_server, environment_api_key="nosuchenv"), FEATURE)
    with pytest.raises(AdminNotFoundError, match="ENVIRONMENT_API_KEY"):
        wrong_env.set_active(False, actor="a", reason="r")
    with pytest.raises(AdminNotFoundError, match="ENVIRONMENT_API_KEY"):
        wrong_env.get_active()  # a wrong setting, not a missing flag
    missing = FlagsmithAdmin(settings_for(fs_server), "no-such-feature")
    assert missing.get_active() is None
    with pytest.raises(AdminNotFoundError, match="FEATURE_NAME"):
        missing.set_active(False, actor="a", reason="r")
    with pytest.raises(ConfigurationError, match="BREAKGLASS_FLAGSMITH__PROJECT_ID"):
        FlagsmithAdmin(settings_for(fs_server, project_id=None), FEATURE)


def test_admin_on_a_v2_versioned_environment_publishes_versions(
    fs_server: FlagsmithServer, fs_settings: FlagsmithSettings, engines: Callable[..., StateEngine]
) -> None:
    fs_server.v2 = True
    engine = engines(FlagsmithSource(fs_settings, FEATURE))
    assert wait_for(lambda: engine.active, 3) is not None
    admin = FlagsmithAdmin(fs_settings, FEATURE)
    audit = FlagsmithAudit(fs_settings, FEATURE)
    try:
        ack = admin.set_active(False, actor="ops", reason="v2 halt")
        assert ack.change_id == fs_server.versions[-1]["uuid"]
        assert fs_server.patches == 0
        assert fs_server.vendor_value() is False
        assert wait_for(lambda: not engine.active, 1) is not None
        assert admin.get_active() is False
        ack = admin.set_active(True, actor="ops", reason="v2 resume")
        assert ack.changed is True
        assert len(fs_server.versions) == 2
        assert wait_for(lambda: engine.active, 1) is not None
        time.sleep(fs_server.audit_delay * 2)
        records = [r for page in audit.pull(None) for r in page.records]
        versions = [r for r in records if r.vendor_event_type.startswith("EF_VERSION")]
        assert [r.action for r in versions] == [Action.UPDATED, Action.UPDATED]
        assert versions[0].actor.kind is ActorKind.UNKNOWN  # an Api-Key change: author null
    finally:
        admin.close()
        audit.close()


# ---------------------------------------------------------------------- audit


def test_audit_pull_pages_incremental_and_normalised(fs_server: FlagsmithServer) -> None:
    settings = settings_for(fs_server)
    admin = FlagsmithAdmin(settings, FEATURE)
    audit = FlagsmithAudit(settings, FEATURE, page_size=2)  # small pages: exercise paging
    try:
        admin.set_active(False, actor="ops", reason="off")  # Api-Key: author null
        fs_server.set_enabled(True)  # a user at the dashboard
        admin.set_active(False, actor="ops", reason="off again")
        fs_server.features[1].enabled = False  # the other feature, written directly
        with fs_server._lock:
            fs_server._write_audit(
                f"Flag state updated for feature: {OTHER_FEATURE}",
                author=fs_server.user,
                object_type="FEATURE_STATE",
                object_id=3,
                change_type="UPDATE",
                details=[{"field": "enabled", "old": True, "new": False}],
            )
        time.sleep(fs_server.audit_delay * 2)

        pages = list(audit.pull(None))
        records = [r for page in pages for r in page.records]
        assert sum(page.malformed for page in pages) == 0
        assert len(pages) >= 2
        assert [r.action for r in records] == [
            Action.CREATED,
            Action.DISABLED,
            Action.ENABLED,
            Action.DISABLED,
        ]
        assert [(r.value_before, r.value_after) for r in records[1:]] == [
            (True, False),
            (False, True),
            (True, False),
        ]
        assert all(r.flag_key == FEATURE for r in records), "the other feature leaked in"
        assert [r.actor.kind for r in records[1:]] == [
            ActorKind.UNKNOWN,
            ActorKind.USER,
            ActorKind.UNKNOWN,
        ]
        user = records[2].actor
        assert (user.email, user.name, user.id) == ("admin@example.com", "Admin User", "1")
        assert records[1].environment == "Production"
        assert records[1].project == "Acceptance Project"
        assert records[1].vendor_event_type == "FEATURE_STATE:UPDATE"
        assert records[1].raw["change_details"][0]["field"] == "enabled"
        assert len({r.id for r in records}) == len(records)
        assert records == sorted(records, key=lambda r: int(r.vendor_event_id))

        cursor = pages[-1].cursor
        assert list(audit.pull(cursor)) == []
        admin.set_active(True, actor="ops", reason="on")
        time.sleep(fs_server.audit_delay * 2)
        new = [r for page in audit.pull(cursor) for r in page.records]
        assert [(r.action, r.value_before, r.value_after) for r in new] == [
            (Action.ENABLED, False, True)
        ]
        assert not {r.id for r in new} & {r.id for r in records}
        with pytest.raises(AuditSourceError, match="cursor"):
            list(audit.pull("not-a-number"))
    finally:
        admin.close()
        audit.close()


def test_audit_hidden_by_the_plan_says_so(fs_server: FlagsmithServer) -> None:
    fs_server.audit_visibility_days = 0  # a free or open-source plan: 200 with an empty list
    audit = FlagsmithAudit(settings_for(fs_server), FEATURE)
    try:
        with pytest.raises(AuditSourceError, match="audit_log_visibility_days is 0"):
            list(audit.pull(None))
    finally:
        audit.close()


def test_audit_with_a_wrong_token_names_the_setting(fs_server: FlagsmithServer) -> None:
    wrong = "Token 0000000000000000000000000000000000000000"
    audit = FlagsmithAudit(settings_for(fs_server, admin_token=SecretStr(wrong)), FEATURE)
    with pytest.raises(AuditSourceError, match="BREAKGLASS_FLAGSMITH__ADMIN_TOKEN") as err:
        list(audit.pull(None))
    assert "0000000000" not in str(err.value)


# ---------------------------------------------------------------------- plugin


def _configure_env(monkeypatch: pytest.MonkeyPatch, server: FlagsmithServer) -> None:
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__API_URL", server.api_url)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY", server.server_key)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ADMIN_TOKEN", f"Api-Key {server.master_key}")
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__PROJECT_ID", str(server.project["id"]))
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY", server.client_key)
    monkeypatch.setenv("BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL", "0.05")


def test_plugin_is_registered_and_builds_from_the_environment(
    fs_server: FlagsmithServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_env(monkeypatch, fs_server)
    assert load_plugin("flagsmith").name == "flagsmith"
    with Bridge.from_settings(
        Settings(provider="flagsmith", state_dir=tmp_path / "state")
    ) as bridge:
        assert bridge.backend.poll_bound == pytest.approx(0.05 + 2.0)
        assert wait_for(lambda: bridge.engine.active, 3) is not None, bridge.engine.state
        bridge.halt(actor="ops", reason="plugin")
        assert wait_for(lambda: not bridge.engine.active, 1) is not None
        assert fs_server.master_key not in repr(bridge.backend)
        assert fs_server.server_key not in repr(bridge.backend)
    # Values given in code win over the environment.
    in_code = Settings(
        provider="flagsmith",
        state_dir=tmp_path / "state2",
        sections={"flagsmith": {"refresh_interval": 0.5, "feature_name": "other"}},
    )
    backend = load_plugin("flagsmith").create(in_code, _clock())
    assert backend.poll_bound == pytest.approx(0.5 + 2.0)
    assert "'other'" in repr(backend.source)


def _clock() -> Any:
    from breakglass.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK
