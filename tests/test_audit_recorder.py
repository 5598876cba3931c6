"""The bridge's own evidence: observed flips and changes made through it, never in the way."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from breakglass.audit.recorder import (
    OBSERVED,
    OBSERVED_HOLD_S,
    PROVIDER,
    AuditRecorder,
    RecordingAdmin,
)
from breakglass.audit.settings import AuditSettings
from breakglass.audit.spool import Spool
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.bridge import Bridge
from breakglass.errors import AdminUnavailableError, AuditStoreError
from breakglass.local import LocalAdmin, LocalStore
from breakglass.seams import Acknowledgement
from breakglass.settings import LocalSettings, Settings
from breakglass.state import Cause, FlagState
from breakglass.testing.conformance import wait_for
from tests.audit_support import FlakyStore

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.audit.store import AuditStore

KEY = "system-active"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        provider="local",
        state_dir=tmp_path / "state",
        local=LocalSettings(path=tmp_path / "vendor.db", poll_interval=0.01),
    )


def _own(store: AuditStore) -> list[dict[str, Any]]:
    return [json.loads(text) for text in store.iter_canonical(AuditQuery(providers=(PROVIDER,)))]


@pytest.fixture
def audit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BREAKGLASS_AUDIT__DATABASE_URL", "BREAKGLASS_AUDIT__PATH"):
        monkeypatch.delenv(name, raising=False)


def test_observed_flips_are_recorded_with_where_and_when(tmp_path: Path, audit_env: None) -> None:
    vendor = LocalAdmin(LocalStore(tmp_path / "vendor.db"), KEY)
    vendor.set_active(True, actor="dashboard", reason="on")
    with Bridge.from_settings(_settings(tmp_path)) as bridge:
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
        vendor.set_active(False, actor="dashboard", reason="incident")
        assert wait_for(lambda: not bridge.engine.active, 5.0) is not None
        vendor.set_active(True, actor="dashboard", reason="fixed")
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
    store = SqliteAuditStore(tmp_path / "state" / "audit.db")
    records = _own(store)
    # The first confirmation after start is the baseline, not a flip; closing is not one either.
    assert [(r["action"], r["value_before"], r["value_after"]) for r in records] == [
        ("disabled", True, False),
        ("enabled", False, True),
    ]
    halt = records[0]
    assert halt["vendor_event_type"] == OBSERVED
    assert halt["actor"]["kind"] == "system"
    assert halt["raw"]["cause"] == Cause.OFF.value
    assert halt["raw"]["source"] == "local"
    assert halt["raw"]["backend"] == "local"
    assert isinstance(halt["raw"]["pid"], int)
    assert halt["raw"]["observed_at"] == halt["occurred_at"]
    assert halt["id"].startswith("breakglass:")
    assert len({r["id"] for r in records}) == 2


def test_changes_through_the_bridge_are_recorded_with_actor_and_reason(
    tmp_path: Path, audit_env: None
) -> None:
    bridge = Bridge.from_settings(_settings(tmp_path))
    try:
        assert isinstance(bridge.admin, RecordingAdmin)
        bridge.resume(actor="alice", reason="go live")
        bridge.halt(actor="bob", reason="incident 4711")
        bridge.admin.set_active(False, actor="bob", reason="again")
    finally:
        bridge.close()
    records = _own(SqliteAuditStore(tmp_path / "state" / "audit.db"))
    assert [(r["vendor_event_type"], r["actor"]["id"], r["comment"]) for r in records] == [
        ("resume", "alice", "go live"),
        ("halt", "bob", "incident 4711"),
        ("halt", "bob", "again"),
    ]
    assert re.fullmatch(r"local:[0-9a-f]{8}-2", records[1]["raw"]["change_id"])
    assert records[1]["value_after"] is False
    assert records[2]["raw"]["changed"] is False
    assert records[2]["value_before"] is False  # it already was halted


def test_a_failed_change_is_recorded_and_still_raised(tmp_path: Path) -> None:
    class Refusing:
        def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:
            raise AdminUnavailableError("vendor down (timeout)")

        def get_active(self) -> bool | None:
            return None

    store = SqliteAuditStore(tmp_path / "audit.db")
    recorder = AuditRecorder(lambda: store, backend="unleash", flag_key=KEY)
    admin = recorder.wrap_admin(Refusing())
    with pytest.raises(AdminUnavailableError):
        admin.set_active(False, actor="alice", reason="stop it")
    assert recorder.flush(5.0)
    [record] = _own(store)
    assert (record["vendor_event_type"], record["action"], record["value_after"]) == (
        "halt-failed",
        "other",
        None,
    )
    assert record["raw"]["error"] == "AdminUnavailableError: vendor down (timeout)"
    recorder.close()


def test_a_halt_readers_do_not_see_is_recorded_as_not_served(tmp_path: Path) -> None:
    """The vendor said 2xx, but readers are still served true: the record must not say 'disabled'."""

    class OffVariationTrue:
        def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:
            return Acknowledgement(
                KEY,
                active,
                datetime.now(UTC),
                change_id="7",
                served=True,
                served_detail="the flag is off; its off variation serves true",
                target="LaunchDarkly project 'p', environment 'e', flag 'system-active'",
            )

        def get_active(self) -> bool | None:
            return False

    store = SqliteAuditStore(tmp_path / "audit.db")
    recorder = AuditRecorder(lambda: store, backend="launchdarkly", flag_key=KEY)
    recorder.wrap_admin(OffVariationTrue()).set_active(False, actor="alice", reason="stop it")
    assert recorder.flush(5.0)
    [record] = _own(store)
    assert (record["vendor_event_type"], record["action"], record["value_after"]) == (
        "halt-not-served",
        "other",
        True,
    )
    assert record["raw"]["served"] is True
    assert "off variation serves true" in record["raw"]["served_detail"]
    assert record["raw"]["target"].startswith("LaunchDarkly project")
    recorder.close()


def test_a_failing_store_never_stops_the_bridge_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0

    class Broken:
        def save(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal attempts
            attempts += 1
            raise AuditStoreError("audit store postgresql://db:5432/x: connection refused")

        def close(self) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="breakglass")
    recorder = AuditRecorder(Broken, backend="local", flag_key=KEY)  # type: ignore[arg-type]
    inner = LocalAdmin(LocalStore(tmp_path / "vendor.db"), KEY)
    admin = recorder.wrap_admin(inner)
    for i in range(5):
        assert admin.set_active(i % 2 == 0, actor="t", reason=f"r{i}").active is (i % 2 == 0)
    assert wait_for(lambda: attempts >= 2, 5.0) is not None
    assert recorder.flush(0.2) is False  # bounded
    started = time.monotonic()
    recorder.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    unusable = [r for r in caplog.records if "audit store unusable" in r.getMessage()]
    assert len(unusable) == 1
    assert recorder.dropped == 5
    assert inner.get_active() is True  # every change went through


def test_records_wait_in_memory_and_are_written_when_the_store_recovers(tmp_path: Path) -> None:
    real = SqliteAuditStore(tmp_path / "audit.db")
    down = threading.Event()
    down.set()

    recorder = AuditRecorder(
        lambda: FlakyStore(real, down),  # type: ignore[arg-type,return-value]
        backend="local",
        flag_key=KEY,
    )
    admin = recorder.wrap_admin(LocalAdmin(LocalStore(tmp_path / "vendor.db"), KEY))
    admin.set_active(True, actor="t", reason="while down")
    assert recorder.flush(0.3) is False
    down.clear()
    assert recorder.flush(10.0) is True
    assert [r["comment"] for r in _own(real)] == ["while down"]
    recorder.close()


def test_the_listener_does_no_io_on_the_callers_thread(tmp_path: Path) -> None:
    """A store that takes seconds to open must not delay the engine's listener."""
    release = threading.Event()

    def slow_factory() -> AuditStore:
        release.wait(10)
        return SqliteAuditStore(tmp_path / "audit.db")

    recorder = AuditRecorder(slow_factory, backend="local", flag_key=KEY)
    active = FlagState(active=True, cause=Cause.ACTIVE, source="local")
    halted = FlagState(active=False, cause=Cause.OFF, source="local")
    recorder.on_state(active)  # baseline
    started = time.perf_counter()
    for _ in range(100):
        recorder.on_state(halted)
        recorder.on_state(active)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # 200 flips queued while the store is still opening
    release.set()
    assert recorder.flush(10.0)
    assert len(_own(SqliteAuditStore(tmp_path / "audit.db"))) == 200
    recorder.close()


def test_unconfirmed_start_and_closing_are_not_flips() -> None:
    recorder = AuditRecorder(None, backend="local", flag_key=KEY)
    recorder.record_observed = True  # a factory-less recorder would otherwise refuse
    seen: list[Any] = []
    recorder._submit = lambda record, **_: seen.append(record)  # type: ignore[method-assign]
    recorder.on_state(FlagState(active=False, cause=Cause.UNCONFIRMED))
    recorder.on_state(
        FlagState(active=False, cause=Cause.STALE, source="local")
    )  # baseline: halted
    recorder.on_state(FlagState(active=False, cause=Cause.OFF, source="local"))  # still halted
    recorder.on_state(FlagState(active=True, cause=Cause.ACTIVE, source="local"))
    recorder.on_state(FlagState(active=False, cause=Cause.CLOSED))
    assert [r.action.value for r in seen] == ["enabled"]


def test_recording_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKGLASS_AUDIT__RECORD_OBSERVED", "false")
    monkeypatch.setenv("BREAKGLASS_AUDIT__RECORD_CHANGES", "false")
    bridge = Bridge.from_settings(_settings(tmp_path))
    try:
        assert not isinstance(bridge.admin, RecordingAdmin)
        bridge.resume(actor="alice", reason="go")
    finally:
        bridge.close()
    assert not (tmp_path / "state" / "audit.db").exists()


def test_bad_audit_settings_do_not_stop_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BREAKGLASS_AUDIT__CONNECT_TIMEOUT", "not a number")
    with Bridge.from_settings(_settings(tmp_path)) as bridge:
        bridge.resume(actor="alice", reason="go")
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
    assert "audit recording is off" in caplog.text
    assert "BREAKGLASS_AUDIT__CONNECT_TIMEOUT" in caplog.text


def test_a_short_lived_process_writes_its_change_before_exit(tmp_path: Path) -> None:
    """`breakglass halt` never closes its bridge: the recorder flushes at interpreter exit."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["BREAKGLASS_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-m", "breakglass", "halt", "--actor", "alice", "--reason", "stop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [record] = _own(SqliteAuditStore(tmp_path / "state" / "audit.db"))
    assert (record["vendor_event_type"], record["actor"]["id"]) == ("halt", "alice")


def test_from_settings_reads_the_audit_section(tmp_path: Path) -> None:
    off = AuditRecorder.for_bridge(
        _settings(tmp_path), "local", audit=AuditSettings(record_observed=False)
    )
    assert (off.record_observed, off.record_changes) == (False, True)
    assert "observed=False" in repr(off)


class _TimedStore(SqliteAuditStore):
    """The real store, noting when each save began and how many records it carried."""

    saves: ClassVar[list[tuple[float, int]]] = []

    def save(self, records: Any, **kwargs: Any) -> Any:
        type(self).saves.append((time.monotonic(), len(records)))
        return super().save(records, **kwargs)


def test_an_observed_flip_is_written_after_the_rest_of_the_host_stopped(tmp_path: Path) -> None:
    """Stop first, record after: the record of a flip is written no sooner than 50 ms after it."""
    _TimedStore.saves = []
    recorder = AuditRecorder(
        lambda: _TimedStore(tmp_path / "audit.db"), backend="local", flag_key=KEY
    )
    try:
        recorder.on_state(FlagState(active=True, cause=Cause.ACTIVE, source="local"))  # baseline
        for n in range(1, 7):
            flipped = time.monotonic()
            recorder.on_state(
                FlagState(active=n % 2 == 0, cause=Cause.ACTIVE if n % 2 == 0 else Cause.OFF)
            )
            assert wait_for(lambda n=n: recorder.written == n, 10.0) is not None  # type: ignore[misc]
            assert _TimedStore.saves[-1][0] - flipped >= OBSERVED_HOLD_S[0]
        assert len(_own(SqliteAuditStore(tmp_path / "audit.db"))) == 6
    finally:
        recorder.close()


def test_a_change_a_flush_and_closing_do_not_wait_for_the_moment(tmp_path: Path) -> None:
    _TimedStore.saves = []
    recorder = AuditRecorder(
        lambda: _TimedStore(tmp_path / "audit.db"),
        backend="local",
        flag_key=KEY,
        observed_hold=(600.0, 600.0),
    )
    try:
        recorder.on_state(FlagState(active=True, cause=Cause.ACTIVE, source="local"))  # baseline
        recorder.on_state(FlagState(active=False, cause=Cause.OFF, source="local"))
        recorder.record_change(
            flag_key=KEY,
            active=False,
            actor="alice",
            reason="stop",
            started_at=recorder._clock.now(),
        )
        # The change is written at once and takes the flip held before it along, in one save.
        assert wait_for(lambda: recorder.written == 2, 10.0) is not None
        assert [n for _, n in _TimedStore.saves] == [2]
        recorder.on_state(FlagState(active=True, cause=Cause.ACTIVE, source="local"))
        assert recorder.flush(10.0)  # a flush writes what is held
        assert recorder.written == 3
        recorder.on_state(FlagState(active=False, cause=Cause.OFF, source="local"))
    finally:
        recorder.close(timeout=10.0)  # a process on its way out writes what is held
    assert recorder.written == 4
    assert len(_own(SqliteAuditStore(tmp_path / "audit.db"))) == 4


def test_a_started_bridge_opens_its_store_before_the_first_flip(tmp_path: Path) -> None:
    """Opening (a fresh schema, the spool) is paid at start, not by every reader at the first halt."""
    recorder = AuditRecorder(
        lambda: SqliteAuditStore(tmp_path / "audit.db"), backend="local", flag_key=KEY
    )
    try:
        recorder.warm()

        def migrated() -> bool:
            if not (tmp_path / "audit.db").exists():
                return False
            with closing(sqlite3.connect(tmp_path / "audit.db")) as db:
                return bool(
                    db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'"
                    ).fetchone()
                )

        assert wait_for(migrated, 10.0) is not None  # the schema made before any record
    finally:
        recorder.close()
    looking = AuditRecorder(
        lambda: SqliteAuditStore(tmp_path / "other.db"), backend="local", flag_key=KEY
    )
    looking.record_observed = False  # status and watch: the store stays as it was found
    looking.warm()
    looking.close()
    assert not (tmp_path / "other.db").exists()


def test_a_store_that_cannot_be_opened_at_start_is_said_and_records_still_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "audit.db").mkdir()  # not a database file
    recorder = AuditRecorder(
        lambda: SqliteAuditStore(tmp_path / "audit.db"),
        backend="local",
        flag_key=KEY,
        spool=Spool(tmp_path / "spool"),
    )
    with caplog.at_level(logging.WARNING, logger="breakglass.audit"):
        recorder.warm()
        assert wait_for(lambda: "audit store not usable yet" in caplog.text, 10.0) is not None, (
            caplog.text
        )
    recorder.on_state(FlagState(active=True, cause=Cause.ACTIVE, source="local"))
    recorder.on_state(FlagState(active=False, cause=Cause.OFF, source="local"))
    recorder.close(timeout=5.0)
    assert recorder.spooled == 1
