"""The probe against the real local provider: real reader processes, real signals, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from breakglass.cli import main
from breakglass.errors import ProbeError
from breakglass.local import LocalAdmin, LocalStore
from breakglass.probe import Bounds, ProbeOptions, check_flag_key, run_probe
from breakglass.probe.fleet import Fleet
from breakglass.settings import Settings
from breakglass.testing.conformance import wait_for

PROBE_KEY = "system-active-probe"


def _env(tmp_path: Path) -> dict[str, str]:
    # TMPDIR puts the readers' private directories (and so their command lines) under tmp_path.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path / "tmp"),
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "breakglass", "probe", "--provider", "local", *args]


def _probe(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        env={**_env(tmp_path), **(env or {})},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(*args),
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _admin(tmp_path: Path, key: str = PROBE_KEY) -> LocalAdmin:
    return LocalAdmin(LocalStore(tmp_path / "state" / "local.db"), key)


def _readers_alive(tmp_path: Path) -> list[int]:
    """Reader processes whose command line names a directory under tmp_path."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        zombie = "State:\tZ" in status
        if "breakglass.probe.reader" in cmdline and str(tmp_path) in cmdline and not zombie:
            alive.append(int(entry.name))
    return alive


def _junit_cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()  # noqa: S314 -- our own output
    return {str(case.get("name")): case for case in root.iter("testcase")}


# ---------------------------------------------------------------- the production flag


def test_the_production_flag_is_refused() -> None:
    settings = Settings(provider="local")
    for key in ("system-active", settings.flag_key):
        with pytest.raises(ProbeError, match="refusing to toggle 'system-active'"):
            check_flag_key(settings, ProbeOptions(flag_key=key))
    custom = Settings(provider="local", flag_key="prod-stop")
    with pytest.raises(ProbeError, match="--allow-production-flag"):
        check_flag_key(custom, ProbeOptions(flag_key="prod-stop"))
    with pytest.raises(ProbeError):  # the default name is refused wherever it is used
        check_flag_key(custom, ProbeOptions(flag_key="system-active"))
    check_flag_key(custom, ProbeOptions(flag_key="system-active-probe"))
    with pytest.raises(ProbeError):  # whitespace does not hide it
        check_flag_key(settings, ProbeOptions(flag_key=" system-active "))
    with pytest.raises(ProbeError, match="must not be empty"):
        ProbeOptions(flag_key="  ")
    check_flag_key(settings, ProbeOptions(flag_key="system-active", allow_production_flag=True))


def test_the_cli_refuses_the_production_flag_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREAKGLASS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["probe", "--probe-flag", "system-active"])
    assert result.exit_code == 1
    assert "refusing to toggle 'system-active'" in result.output
    result = runner.invoke(main, ["--flag-key", "prod-stop", "probe", "--probe-flag", "prod-stop"])
    assert result.exit_code == 1
    assert "--allow-production-flag" in result.output
    assert not (tmp_path / "state").exists()  # nothing was read, nothing was written


@pytest.mark.live
def test_allow_production_flag_toggles_it_and_restores_it(tmp_path: Path) -> None:
    prod = _admin(tmp_path, "system-active")
    prod.set_active(True, actor="test", reason="production is running")
    done = _probe(
        tmp_path, "--probe-flag", "system-active", "--allow-production-flag", "--rounds", "3"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert prod.get_active() is True
    reasons = [c.reason for c in prod._store.changes("system-active").changes]
    assert sum("latency probe" in r for r in reasons) == 4  # three rounds and the restore


# ---------------------------------------------------------------- passing and failing on bounds


@pytest.mark.live
def test_done_when_the_bound_holds_it_passes(tmp_path: Path) -> None:
    """On a fresh state dir (no probe flag yet): 20 rounds, 5 readers, p99 <= 500 ms passes."""
    junit = tmp_path / "out.xml"
    done = _probe(
        tmp_path, "--rounds", "20", "--readers", "5", "--max-p99", "500", "--junit", str(junit)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "PASS"
    cases = _junit_cases(junit)
    assert len(cases) == 6
    assert "fleet propagation (last of 5 readers)" in cases
    assert all(case.find("failure") is None for case in cases.values())
    # The flag did not exist: it is left false, which reads the same as missing (halted).
    assert _admin(tmp_path).get_active() is False
    assert _readers_alive(tmp_path) == []


@pytest.mark.live
def test_done_when_the_bound_is_breached_it_fails(tmp_path: Path) -> None:
    junit, report = tmp_path / "out.xml", tmp_path / "out.json"
    done = _probe(
        tmp_path,
        "--rounds",
        "20",
        "--readers",
        "5",
        "--max-p99",
        "0.001",
        "--junit",
        str(junit),
        "--json",
        str(report),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "FAIL"
    fleet = _junit_cases(junit)["fleet propagation (last of 5 readers)"].find("failure")
    assert fleet is not None
    assert "> bound 0.001 ms" in (fleet.get("message") or "")
    data = json.loads(report.read_text())
    assert data["passed"] is False
    assert data["rounds_completed"] == 20  # it measured everything, then judged
    assert data["figures"]["fleet"]["propagation_ms"]["n"] == 20
    assert data["restored"] is True


@pytest.mark.live
def test_rounds_nobody_observes_are_counted_as_timed_out(tmp_path: Path) -> None:
    """Readers polling every 5 s cannot see rounds 0.2 s apart: each round counts as timed out."""
    _admin(tmp_path).set_active(True, actor="test", reason="before")
    env_poll = {"BREAKGLASS_LOCAL__POLL_INTERVAL": "5"}
    junit, report = tmp_path / "out.xml", tmp_path / "out.json"
    done = _probe(
        tmp_path,
        *("--rounds", "3", "--timeout", "0.2", "--spacing", "0", "--max-p99", "1000"),
        *("--junit", str(junit), "--json", str(report)),
        env=env_poll,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(report.read_text())
    fleet = data["figures"]["fleet"]["propagation_ms"]
    assert (fleet["rounds"], fleet["n"], fleet["timed_out"]) == (3, 0, 3)
    assert fleet["p99"] is None
    assert [r["timed_out"] for r in data["rounds"]] == [1, 1, 1]
    failure = _junit_cases(junit)["fleet propagation (last of 1 readers)"].find("failure")
    assert failure is not None
    assert "3 of 3 rounds timed out" in (failure.text or "")
    assert ">200" in done.stdout  # the table shows "beyond the timeout"
    assert _admin(tmp_path).get_active() is True


# ---------------------------------------------------------------- always restored, never orphaned


@pytest.mark.live
@pytest.mark.parametrize(("signum", "original"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_a_signal_mid_run_restores_the_flag(
    tmp_path: Path, signum: signal.Signals, original: bool
) -> None:
    """A real probe process, signalled mid-run, puts the flag back and ends its readers."""
    admin = _admin(tmp_path)
    admin.set_active(original, actor="test", reason="before the probe")
    report = tmp_path / "out.json"
    proc = _start(
        tmp_path,
        *("--rounds", "100000", "--readers", "2", "--spacing", "0.02", "--json", str(report)),
    )
    try:

        def rounds_done() -> int:
            changes = admin._store.changes(PROBE_KEY).changes
            return sum("round" in c.reason for c in changes)

        assert wait_for(lambda: rounds_done() >= 3, 60) is not None, "the probe never toggled"
        assert len(_readers_alive(tmp_path)) == 2
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, out + err
    assert admin.get_active() is original
    data = json.loads(report.read_text())
    assert data["interrupted"] == signal.Signals(signum).name
    assert data["restored"] is True
    assert data["rounds_completed"] >= 2  # the third may have been cut short: not counted
    assert "FAIL" in out  # an interrupted run never passes
    assert _readers_alive(tmp_path) == []


@pytest.mark.live
def test_a_reader_that_dies_aborts_the_run_and_the_flag_is_restored(tmp_path: Path) -> None:
    admin = _admin(tmp_path)
    admin.set_active(True, actor="test", reason="before the probe")
    report = tmp_path / "out.json"
    proc = _start(
        tmp_path,
        *("--rounds", "100000", "--readers", "3", "--spacing", "0.02", "--json", str(report)),
    )
    try:
        assert wait_for(lambda: len(admin._store.changes(PROBE_KEY).changes) >= 4, 60) is not None
        victim = _readers_alive(tmp_path)[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    data = json.loads(report.read_text())
    assert "exited" in data["aborted"]
    assert data["restored"] is True
    assert admin.get_active() is True
    assert _readers_alive(tmp_path) == []


# ---------------------------------------------------------------- the library call


@pytest.mark.live
def test_run_probe_in_process(tmp_path: Path) -> None:
    admin = _admin(tmp_path)
    admin.set_active(False, actor="test", reason="before the probe")
    settings = Settings(provider="local", state_dir=tmp_path / "state")
    lines: list[str] = []
    seen: list[int] = []
    result = run_probe(
        settings,
        ProbeOptions(rounds=5, readers=2, seed=42, bounds=Bounds(max_p95_ms=1000.0)),
        on_round=lambda r: seen.append(len(r.rounds)),
        say=lines.append,
    )
    assert result.passed, result.problems
    assert seen == [1, 2, 3, 4, 5]
    # It starts from False, so it resumes first, and ends on True: the restore puts False back.
    assert [r.target for r in result.rounds] == [True, False, True, False, True]
    assert all(r.timed_out == 0 for r in result.rounds)
    assert result.seed == 42
    assert result.original is False
    assert admin.get_active() is False
    assert any("restored" in line for line in lines)
    assert result.fleet_summary("propagation_ms").p99 is not None


@pytest.mark.live
def test_readers_end_when_the_probe_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no time to clean up: the readers see their stdin close and end themselves."""
    admin = _admin(tmp_path)
    admin.set_active(True, actor="test", reason="before the probe")
    proc = _start(tmp_path, "--rounds", "100000", "--readers", "2", "--spacing", "0.02")
    try:
        assert wait_for(lambda: len(admin._store.changes(PROBE_KEY).changes) >= 3, 60) is not None
        assert len(_readers_alive(tmp_path)) == 2
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for(lambda: _readers_alive(tmp_path) == [], 10) is not None


@pytest.mark.live
def test_a_reader_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    with Fleet(1, {"provider": "nosuchvendor"}, tmp_path, ready_timeout=5, lifetime=30) as fleet:
        fleet.start()
        with pytest.raises(ProbeError, match=r"reader 0 .* failed: ProviderNotFoundError"):
            fleet.wait_ready(30, lambda: None)
    assert fleet.readers[0].process.returncode == 1


@pytest.mark.live
def test_via_relay_readers_read_one_relay(tmp_path: Path) -> None:
    """``--via relay``: one relay reads the local store, the readers read the relay; the flag is restored."""
    report = tmp_path / "out.json"
    done = _probe(
        tmp_path, "--via", "relay", "--rounds", "10", "--readers", "3", "--json", str(report)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "PASS"
    data = json.loads(report.read_text())
    assert data["provider"] == "local via relay"
    assert _admin(tmp_path).get_active() is False
    assert _readers_alive(tmp_path) == []


@pytest.mark.live
def test_json_to_stdout_and_the_default_timeout(tmp_path: Path) -> None:
    """`--json -` writes the report to stdout (the table to stderr); no file named '-'."""
    _admin(tmp_path).set_active(True, actor="test", reason="before")
    done = _probe(
        tmp_path, "--rounds", "2", "--spacing", "0", "--max-halt-p99", "5000", "--json", "-"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["timeout_s"] == 5.0  # the local provider's bound is tiny: the 5 s floor
    assert data["bounds"]["max_halt_p99_ms"] == 5000.0
    assert "fleet" in done.stderr  # the table
    assert not (tmp_path / "-").exists()


@pytest.mark.live
def test_ctrl_c_before_the_first_round_is_one_line(tmp_path: Path) -> None:
    """Interrupted while its readers start: one line, exit 130, no table of empty rows."""
    admin = _admin(tmp_path)
    admin.set_active(True, actor="test", reason="before the probe")
    # A long random pause before each round (seeded) keeps the run before its first round.
    proc = _start(tmp_path, "--rounds", "3", "--readers", "2", "--spacing", "600", "--seed", "7")
    try:
        assert wait_for(lambda: len(_readers_alive(tmp_path)) == 2, 60) is not None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert out == ""
    lines = [line for line in err.splitlines() if not line.startswith("probe: ")]
    assert lines == [
        "breakglass probe: interrupted by SIGINT before the first round; "
        "nothing measured, the flag is as it was"
    ]
    assert "FAIL" not in err
    assert admin.get_active() is True
    assert wait_for(lambda: _readers_alive(tmp_path) == [], 10) is not None
