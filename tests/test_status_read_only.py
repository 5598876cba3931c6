"""status and watch only look: the remembered state is loaded, and nothing on disk changes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from breakglass.cli import main
from breakglass.persistence import StateStore

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import CliRunner


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_status_on_a_missing_state_dir_creates_nothing(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(main, ["status", "--wait", "0.5"])
    assert result.exit_code == 3, result.output  # no flag: halted
    assert list(tmp_path.iterdir()) == []  # not the state dir, not state.db, not an audit file
    watched = run.invoke(main, ["watch", "--count", "2", "--interval", "0.05"])
    assert watched.exit_code == 0, watched.output
    assert list(tmp_path.iterdir()) == []


def test_status_and_watch_leave_every_file_as_they_found_it(run: CliRunner, tmp_path: Path) -> None:
    for args in (["resume", "--reason", "first start"], ["halt", "--reason", "drill"]):
        assert run.invoke(main, args).exit_code == 0, args
    state = tmp_path / "state"
    # Remembered as a guarded service would remember the halt.
    StateStore(state / "state.db", "local", "system-active").save(
        active=False, confirmed_at=datetime.now(UTC), source="local"
    )
    before = _snapshot(state)
    assert "state.db" in before
    status = run.invoke(main, ["status", "--wait", "2"])
    assert status.exit_code == 3, status.output
    watched = run.invoke(main, ["watch", "--count", "3", "--interval", "0.05", "--json"])
    assert watched.exit_code == 0, watched.output
    assert _snapshot(state) == before


def test_a_read_only_store_loads_what_was_remembered_and_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path, "local", "system-active").save(
        active=False, confirmed_at=datetime(2026, 8, 21, tzinfo=UTC), source="local"
    )
    before = _snapshot(tmp_path)
    reader = StateStore(path, "local", "system-active", read_only=True)
    remembered = reader.load()
    assert remembered is not None
    assert remembered.active is False
    reader.save(active=True, confirmed_at=datetime.now(UTC), source="local")
    assert _snapshot(tmp_path) == before
    assert StateStore(path, "local", "system-active").load() == remembered  # the true was not kept
    assert StateStore(tmp_path / "none" / "state.db", "a", "b", read_only=True).load() is None
    assert not (tmp_path / "none").exists()


def test_a_read_only_store_reads_a_file_from_before_the_later_columns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE last_known (provider TEXT, flag_key TEXT, active INTEGER,"
            " confirmed_at TEXT, source TEXT)"
        )
        conn.execute(
            "INSERT INTO last_known VALUES ('local', 'system-active', 0,"
            " '2026-08-21T10:00:00.000Z', 'local')"
        )
    conn.close()
    before = _snapshot(tmp_path)
    remembered = StateStore(path, "local", "system-active", read_only=True).load()
    assert remembered is not None
    assert (remembered.active, remembered.confirmed_mono, remembered.boot_id) == (False, None, None)
    assert _snapshot(tmp_path) == before  # not migrated: that is a writer's job
