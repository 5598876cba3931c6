"""The breakglass command, through click's runner and as a real process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from breakglass.cli import main
from breakglass.demo import DemoOptions, run_demo

if TYPE_CHECKING:
    from pathlib import Path


def test_status_before_any_flag_is_halted(run: CliRunner) -> None:
    """A fresh host has no flag: status exits 3 and says flag_missing."""
    result = run.invoke(main, ["status", "--json"])
    assert result.exit_code == 3, result.output
    info = json.loads(result.output)
    assert info["active"] is False
    assert info["reason"] == "flag_missing"
    assert info["provider"] == "local"
    assert set(info) >= {"flag", "active", "reason", "source", "confirmed_at", "age_ms"}


def test_resume_halt_status_round_trip(run: CliRunner) -> None:
    """resume makes status exit 0; halt makes it exit 3, with the change acknowledged."""
    resumed = run.invoke(main, ["resume", "--actor", "alice", "--reason", "go", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert re.fullmatch(r"local:[0-9a-f]{8}-1", json.loads(resumed.output)["change_id"])
    status = run.invoke(main, ["status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["active"] is True
    halted = run.invoke(main, ["halt", "--actor", "bob", "--reason", "incident"])
    assert halted.exit_code == 0
    assert "halted through local" in halted.output
    status = run.invoke(main, ["status"])
    assert status.exit_code == 3
    assert "HALTED" in status.output
    assert "cause: off" in status.output


def test_halt_requires_a_reason(run: CliRunner) -> None:
    """A halt without a reason is a usage error: the audit trail needs the why."""
    result = run.invoke(main, ["halt"])
    assert result.exit_code == 2
    assert "--reason" in result.output


def test_watch_prints_lines(run: CliRunner) -> None:
    """watch prints the live state, one JSON line per interval."""
    run.invoke(main, ["resume", "--reason", "go"])
    result = run.invoke(main, ["watch", "--json", "--count", "3", "--interval", "0.05"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 3
    assert all(line["active"] for line in lines)


def test_unknown_provider_is_a_clear_error(run: CliRunner) -> None:
    """An unknown provider lists the real ones; it never advises a package that does not exist."""
    result = run.invoke(main, ["--provider", "nosuchvendor", "status"])
    assert result.exit_code == 1
    assert "known providers: " in result.output
    assert "breakglass-nosuchvendor" not in result.output


def test_invalid_setting_names_the_variable(
    run: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad setting names the environment variable to fix."""
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", "-3")
    result = run.invoke(main, ["status"])
    assert result.exit_code == 1
    assert "BREAKGLASS_MAX_STALENESS" in result.output


def test_providers_lists_local(run: CliRunner) -> None:
    """The embedded provider is found through the same entry point as any adapter."""
    result = run.invoke(main, ["providers"])
    assert "local" in result.output.split()


@pytest.mark.live
def test_real_process_status_and_python_m(tmp_path: Path) -> None:
    """The installed script and python -m agree; exit codes are 3 then 0."""
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "breakglass"]
    assert (
        subprocess.run([*cmd, "status"], env=env, capture_output=True, check=False).returncode == 3
    )
    subprocess.run([*cmd, "resume", "--reason", "go"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [*cmd, "status", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["active"] is True


@pytest.mark.live
def test_demo_drill_passes(tmp_path: Path) -> None:
    """The drill halts a loaded service, drops nothing, refuses new work and resumes."""
    report = run_demo(
        DemoOptions(
            concurrency=8, work_ms=100, load_seconds=0.6, halted_seconds=0.3, state_dir=tmp_path
        )
    )
    assert report.passed, report.summary()
    assert report.dropped == 0
    assert report.in_flight_at_halt > 0
    assert report.drained >= report.in_flight_at_halt
    assert report.refused > 0
    assert report.resumed
    assert set(report.as_dict()) >= {
        "halt_latency_ms",
        "in_flight_at_halt",
        "drained",
        "dropped",
        "refused",
        "resumed",
    }


def test_a_staleness_budget_shorter_than_the_provider_confirms_is_refused(
    run: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_staleness below what the provider can confirm: one line naming it, not a flapping flag."""
    run.invoke(main, ["resume", "--reason", "go"])
    monkeypatch.setenv("BREAKGLASS_LOCAL__POLL_INTERVAL", "2")
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", "1")
    result = run.invoke(main, ["status"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert "BREAKGLASS_MAX_STALENESS=1" in lines[0]
    assert "every 2 s" in lines[0]
    # The stop itself never depends on the reading path's settings.
    halted = run.invoke(main, ["halt", "--reason", "still possible"])
    assert halted.exit_code == 0, halted.output
