"""`breakglass audit`: the whole story on the command line, as an operator would run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from breakglass.audit import cli as audit_cli
from breakglass.audit.cli import TIME
from breakglass.cli import main
from breakglass.seams import Backend
from breakglass.testing import ScriptedSource
from breakglass.testing.audit import SampleVendor
from tests.audit_support import reset_postgres

# The store fixtures (SQLite, and a real PostgreSQL) live there.
pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from pathlib import Path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env.update(BREAKGLASS_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


def bg(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "breakglass", *args],
        env=env or _env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _story(tmp_path: Path, env: dict[str, str]) -> Path:
    """Resume, halt, resume through the local provider; pull; export; verify."""
    for args in (
        ("resume", "--actor", "alice", "--reason", "go live"),
        ("halt", "--actor", "bob", "--reason", "incident 4711: harmful outputs"),
        ("resume", "--actor", "carol", "--reason", "fixed"),
    ):
        assert bg(tmp_path, *args, env=env).returncode == 0
    pulled = bg(tmp_path, "audit", "pull", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "local (system-active): 3 new" in pulled.stdout
    again = bg(tmp_path, "audit", "pull", "--json", env=env)
    assert json.loads(again.stdout)[0]["stored"] == 0
    out = tmp_path / "evidence.jsonl"
    exported = bg(tmp_path, "audit", "export", "--format", "jsonl", "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert "exported 6 records" in exported.stderr  # 3 from the vendor, 3 the bridge kept itself
    verified = bg(tmp_path, "audit", "verify", str(out), env=env)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("intact: 6 records")
    return out


@pytest.mark.live
def test_halt_resume_pull_export_verify_and_an_edit_is_caught(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = _story(tmp_path, env)
    lines = out.read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines[:-1]]
    halts = [r for r in records if r["action"] == "disabled"]
    assert {r["provider"] for r in halts} == {"local", "breakglass"}
    assert all(r["comment"] == "incident 4711: harmful outputs" for r in halts)
    assert all(r["actor"]["id"] == "bob" for r in halts)

    export_hash = json.loads(lines[-1])["hash"]
    anchored = bg(tmp_path, "audit", "verify", "--expect", export_hash, str(out), env=env)
    assert anchored.returncode == 0

    for number in range(1, len(lines) + 1):
        edited = lines[:]
        edited[number - 1] = edited[number - 1].replace(b"Z", b"Y", 1)
        out.write_bytes(b"".join(edited))
        broken = bg(tmp_path, "audit", "verify", str(out), env=env)
        assert broken.returncode == 1
        assert broken.stdout.startswith(f"BROKEN at line {number}:"), broken.stdout


@pytest.mark.live
def test_the_same_story_on_postgres(tmp_path: Path, postgres_url: str, writer_url: str) -> None:
    """The owner runs `audit migrate --writer`; halts, pulls, exports and verifies run as the writer."""
    from tests.audit_fixtures import writer_role

    reset_postgres(postgres_url)
    owner = _env(tmp_path, BREAKGLASS_AUDIT__DATABASE_URL=postgres_url)
    migrated = bg(tmp_path, "audit", "migrate", "--writer", writer_role(writer_url), env=owner)
    assert migrated.returncode == 0, migrated.stderr
    assert "schema version 2; writers: breakglass_writer_" in migrated.stdout
    env = _env(tmp_path, BREAKGLASS_AUDIT__DATABASE_URL=writer_url)
    _story(tmp_path, env)
    assert bg(tmp_path, "audit", "verify", "--store", env=env).returncode == 0
    assert not (tmp_path / "state" / "audit.db").exists()
    status = bg(tmp_path, "audit", "status", "--json", env=env)
    info = json.loads(status.stdout)
    assert info["location"].startswith("postgresql://127.0.0.1:5432/breakglass_test_")
    assert info["records"] == 6


def test_csv_export_and_status(tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    assert runner.invoke(main, [*state, "resume", "--actor", "a", "--reason", "go"]).exit_code == 0
    assert runner.invoke(main, [*state, "audit", "pull"]).exit_code == 0
    result = runner.invoke(
        main, [*state, "audit", "export", "--format", "csv", "--provider", "local"]
    )
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.startswith("id,occurred_at,provider,flag_key")
    assert re.match(r"local:[0-9a-f]{8}-1,", row)
    status = runner.invoke(main, [*state, "audit", "status"])
    columns, *rows = (re.split(r"\s{2,}", line.strip()) for line in status.stdout.splitlines()[1:])
    assert columns == ["PROVIDER", "FLAG", "RECORDS", "FIRST", "LAST", "CURSOR"]
    local = next(r for r in rows if r[0] == "local")
    assert local[1:3] == ["system-active", "1"]
    assert re.fullmatch(r"[0-9a-f]{8}-1", local[5])


def test_pull_exits_4_when_entries_were_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = SampleVendor.generate("unleash", 5, page_size=2)
    del vendor.entries[1]["createdAt"]

    class Plugin:
        name = "unleash"

        def create(self, settings: Any, clock: Any) -> Backend:
            return Backend("unleash", ScriptedSource("unleash"), None, vendor, 0.0)

    monkeypatch.setattr(audit_cli, "load_plugin", lambda name: Plugin())
    runner = CliRunner()
    result = runner.invoke(
        main, ["--state-dir", str(tmp_path), "audit", "pull", "--provider", "unleash"]
    )
    assert result.exit_code == audit_cli.EXIT_PROBLEMS, result.output
    assert "4 new, 0 already stored, 1 malformed" in result.stdout
    assert "problem: unleash entry #2: KeyError: 'createdAt'" in result.stdout


def test_pulling_the_bridges_own_records_is_explained(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--state-dir", str(tmp_path), "audit", "pull", "--provider", "breakglass"]
    )
    assert result.exit_code == 1
    assert "nothing to pull" in result.stderr


def test_pulling_a_feed_that_is_not_configured_says_how_to_configure_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit pull --provider killswitch` before [audit.feeds.killswitch]: the feed's table, not
    BREAKGLASS_PROVIDER (which the operator did not set); once configured, the feed is pulled."""
    monkeypatch.chdir(tmp_path)  # no breakglass.toml of the caller's
    pull = ["--state-dir", str(tmp_path), "audit", "pull", "--provider", "killswitch"]
    result = CliRunner().invoke(main, pull)
    assert result.exit_code == 1
    assert "[audit.feeds.killswitch]" in result.stderr
    assert "BREAKGLASS_PROVIDER" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    monkeypatch.setenv("BREAKGLASS_AUDIT__FEEDS__KILLSWITCH__URL", "http://127.0.0.1:9/v1/audit")
    reached = CliRunner().invoke(main, pull)
    assert "[audit.feeds.killswitch]" not in reached.stderr  # it tried the feed's URL instead
    assert "127.0.0.1:9" in reached.output + reached.stderr


def test_verify_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", "verify", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2


def test_verify_json_output(tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    out = tmp_path / "e.jsonl"
    assert runner.invoke(main, [*state, "audit", "export", "--out", str(out)]).exit_code == 0
    result = runner.invoke(main, ["audit", "verify", "--json", str(out)])
    data = json.loads(result.stdout)
    assert (data["ok"], data["records"], data["manifest"]["count"]) == (True, 0, 0)


def test_an_export_that_fails_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breakglass.errors import AuditStoreError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AuditStoreError("disk on fire")

    monkeypatch.setattr("breakglass.audit.export.export_jsonl", broken)
    out = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        main, ["--state-dir", str(tmp_path), "audit", "export", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "disk on fire" in result.stderr
    assert list(tmp_path.glob("*e.jsonl*")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-21", datetime(2026, 8, 21, tzinfo=UTC)),
        ("2026-08-21T10:15:00Z", datetime(2026, 8, 21, 10, 15, tzinfo=UTC)),
        ("2026-08-21T12:15:00+02:00", datetime(2026, 8, 21, 10, 15, tzinfo=UTC)),
        ("2026-08-21T10:15:00", datetime(2026, 8, 21, 10, 15, tzinfo=UTC)),
    ],
)
def test_time_options(text: str, expected: datetime) -> None:
    assert TIME.convert(text, None, None) == expected


def test_relative_and_bad_times() -> None:
    week = TIME.convert("7d", None, None)
    assert abs((datetime.now(UTC) - week) - timedelta(days=7)) < timedelta(seconds=5)
    with pytest.raises(click.BadParameter):
        TIME.convert("last tuesday", None, None)


def test_verifying_with_the_private_key_says_to_give_the_public_half(tmp_path: Path) -> None:
    keys = ["--private", str(tmp_path / "signing.key"), "--public", str(tmp_path / "audit.pub")]
    assert CliRunner().invoke(main, ["audit", "keygen", *keys]).exit_code == 0
    export = tmp_path / "x.jsonl"
    export.write_text("")
    result = CliRunner().invoke(
        main, ["audit", "verify", "--public-key", str(tmp_path / "signing.key"), str(export)]
    )
    assert result.exit_code == 1
    assert "is a private key: give its public half" in result.stderr
