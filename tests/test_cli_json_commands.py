"""--json on the commands that printed only text: relay, serve, notify check and run, audit
export, keygen and migrate, serve token revoke, drill verify, due and remediate.

Each prints one JSON object describing what it did (a long-running one: a line when it starts
serving, one when it stops), and its failures in the shared error shape.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from breakglass.audit.signing import generate, load_signer
from breakglass.cli import main
from breakglass.drill.evidence import write_evidence

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from click.testing import CliRunner, Result

POLICY = """\
[notify]
system = "Credit scoring"

[notify.groups.on-call]
kind = "on-call"
timeframe = "immediate"
channels = [{ type = "slack", webhook_url = "http://127.0.0.1:9/slack/T/B/x" }]
"""


def _object(result: Result) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.output  # one object, nothing else on stdout
    payload: dict[str, Any] = json.loads(lines[0])
    return payload


def _failure(result: Result) -> dict[str, Any]:
    payload = _object(result)
    assert payload["ok"] is False
    assert payload["error"]["exit_code"] == result.exit_code != 0
    error: dict[str, Any] = payload["error"]
    return error


# -- long-running commands, as processes: a start line, a stop line, errors ---------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env.update(
        BREAKGLASS_PROVIDER="local",
        BREAKGLASS_STATE_DIR=str(tmp_path / "state"),
        BREAKGLASS_LOCAL__PATH=str(tmp_path / "local.db"),
        **extra,
    )
    return env


class _Lines:
    """A ``breakglass`` process whose stdout is read line by line, with a deadline."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "breakglass", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def line(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if sel.select(0.1):
                    text = self.process.stdout.readline().decode()
                    assert text, self.stderr()  # it ended without a line
                    payload: dict[str, Any] = json.loads(text)
                    return payload
        pytest.fail(f"no line within {timeout} s: {self.stderr()}")

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    started: list[_Lines] = []

    def start(args: list[str], **extra: str) -> _Lines:
        started.append(_Lines(tmp_path, args, _env(tmp_path, **extra)))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.mark.live
def test_relay_says_what_it_serves_and_when_it_stops(tmp_path: Path, spawn: Any) -> None:
    # Port 0: the relay binds a free port itself (a port picked here could be taken meanwhile).
    relay = spawn(
        ["relay", "--json"],
        BREAKGLASS_RELAY__PATH=str(tmp_path / "relay.channel"),
        BREAKGLASS_RELAY__OFREP="127.0.0.1:0",
    )
    serving = relay.line()
    port = urlsplit(serving["ofrep"]).port
    assert port, serving  # the port it bound, never the 0 it was given
    assert serving == {
        "event": "serving",
        "flag": "system-active",
        "provider": "local",
        "channel": str(tmp_path / "relay.channel"),
        "ofrep": f"http://127.0.0.1:{port}",
        "pid": relay.process.pid,
    }
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass  # it does listen where it says
    assert (tmp_path / "relay.channel").exists()  # it writes the channel it names
    assert relay.stop() == 0
    assert relay.line() == {"event": "stopped", "pid": relay.process.pid}


@pytest.mark.live
def test_a_relay_that_cannot_start_says_why_in_json(tmp_path: Path, spawn: Any) -> None:
    relay = spawn(
        ["relay", "--json"],
        BREAKGLASS_RELAY__PATH=str(tmp_path / "relay.channel"),
        BREAKGLASS_RELAY__UPSTREAM="relay",
    )
    error = relay.line()
    assert relay.process.wait(20) == 1
    assert error["ok"] is False
    assert error["error"]["type"] == "ConfigurationError"
    assert "the relay reads a vendor, not another relay" in error["error"]["message"]
    assert error["error"]["exit_code"] == 1


@pytest.mark.live
def test_serve_says_where_it_serves(tmp_path: Path, spawn: Any) -> None:
    # Port 0: serve binds a free port itself, and names the one it bound.
    serve = spawn(["serve", "--json", "--port", "0"])
    serving = serve.line()
    port = urlsplit(serving["url"]).port
    assert port, serving
    assert serving == {
        "event": "serving",
        "url": f"http://127.0.0.1:{port}/",
        "providers": "local",
        "pid": serve.process.pid,
    }
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass  # it does listen where it says
    # A second one on the same port: no "serving" line, but the failure.
    second = spawn(["serve", "--json", "--port", str(port)])
    error = second.line()
    assert second.process.wait(20) == 1
    assert error["ok"] is False
    assert f"did not start serving on http://127.0.0.1:{port}/" in error["error"]["message"]
    assert "address already in use" in second.stderr()
    serve.stop()
    assert "the first admin token" in serve.stderr()  # for the person, never on stdout


@pytest.mark.live
def test_notify_run_says_what_it_delivers_from_and_when_it_stops(
    tmp_path: Path, spawn: Any
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    runner = spawn(["notify", "run", "--json", "--policy", str(tmp_path / "policy.toml")])
    delivering = runner.line()
    assert delivering["event"] == "delivering"
    assert delivering["pid"] == runner.process.pid
    assert str(tmp_path / "state") in delivering["store"]
    assert runner.stop() == 0
    assert runner.line() == {"event": "stopped", "pid": runner.process.pid}


def test_notify_run_without_a_policy_fails_in_json(run: CliRunner) -> None:
    error = _failure(run.invoke(main, ["notify", "run", "--json", "--policy", "absent.toml"]))
    assert "absent.toml" in error["message"]


# -- one-shot commands ---------------------------------------------------------------------------


def test_notify_check_lists_the_groups(run: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    result = run.invoke(main, ["notify", "check", "--json", "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    assert _object(result) == {
        "ok": True,
        "valid": True,
        "groups": [
            {
                "group": "on-call",
                "kind": "on-call",
                "immediate": True,
                "ack_within": json.loads(result.stdout)["groups"][0]["ack_within"],
                "when": "always",
                "channels": ["slack"],
            }
        ],
        "warnings": [],
    }
    # The same facts as the text.
    text = run.invoke(main, ["notify", "check", "--policy", str(policy)])
    assert "on-call (on-call): immediate" in text.stdout
    assert f"ack within {_object(result)['groups'][0]['ack_within']}" in text.stdout
    policy.write_text(POLICY.replace('timeframe = "immediate"', 'timeframe = "sometime"'))
    bad = run.invoke(main, ["notify", "check", "--json", "--policy", str(policy)])
    assert bad.exit_code == 1
    assert _failure(bad)["type"] == "ConfigurationError"


def test_keygen_export_and_verify_agree(run: CliRunner, tmp_path: Path) -> None:
    assert run.invoke(main, ["resume", "--reason", "first start"]).exit_code == 0
    assert run.invoke(main, ["halt", "--reason", "drill"]).exit_code == 0
    keys = run.invoke(
        main, ["audit", "keygen", "--json", "--private", "k.key", "--public", "k.pub"]
    )
    assert keys.exit_code == 0, keys.output
    made = _object(keys)
    assert made["ok"] is True
    assert (made["private"], made["public"]) == ("k.key", "k.pub")
    assert made["key_id"] == load_signer(tmp_path / "k.key").key_id

    again = run.invoke(
        main, ["audit", "keygen", "--json", "--private", "k.key", "--public", "k2.pub"]
    )
    assert "k.key" in _failure(again)["message"]  # never overwrites a key

    exported = run.invoke(
        main, ["audit", "export", "--json", "--out", "x.jsonl", "--sign-key", "k.key"]
    )
    assert exported.exit_code == 0, exported.output
    summary = _object(exported)
    lines = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    records = [line for line in lines if line.get("kind") not in ("manifest", "signature")]
    (manifest,) = [line for line in lines if line.get("kind") == "manifest"]
    assert summary["records"] == manifest["count"] == len(records) >= 2
    assert summary["export_hash"] == manifest["hash"]
    assert summary["key_id"] == made["key_id"]
    assert (summary["format"], summary["out"], summary["timestamped"]) == (
        "jsonl",
        "x.jsonl",
        False,
    )
    checked = run.invoke(
        main,
        [
            *("audit", "verify", "--json", "--expect", summary["export_hash"]),
            *("--public-key", "k.pub", "x.jsonl"),
        ],
    )
    assert checked.exit_code == 0, checked.output
    assert _object(checked)["ok"] is True

    csv = run.invoke(main, ["audit", "export", "--json", "--format", "csv", "--out", "x.csv"])
    assert csv.exit_code == 0, csv.output
    rows = (tmp_path / "x.csv").read_text().splitlines()
    assert _object(csv) == {"ok": True, "format": "csv", "records": len(rows) - 1, "out": "x.csv"}


def test_an_export_json_without_a_file_exports_nothing(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(main, ["audit", "export", "--json"])
    assert result.exit_code == 2
    assert _failure(result)["type"] == "UsageError"
    assert not (tmp_path / "state" / "audit.db").exists()  # refused before the store was opened


def test_migrate_names_the_store_and_its_schema(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(main, ["audit", "migrate", "--json"])
    assert result.exit_code == 0, result.output
    done = _object(result)
    assert done["ok"] is True
    assert done["store"] == str(tmp_path / "state" / "audit.db")
    assert isinstance(done["schema_version"], int)
    assert done["schema_version"] >= 1
    assert done["writers"] == []
    refused = run.invoke(main, ["audit", "migrate", "--json", "--writer", "app"])
    assert "--writer is for a PostgreSQL store" in _failure(refused)["message"]


def test_token_revoke_in_json_and_the_group_flag_counts(run: CliRunner) -> None:
    made = run.invoke(main, ["serve", "token", "create", "--name", "pager", "--role", "viewer"])
    assert made.exit_code == 0, made.output
    revoked = run.invoke(main, ["serve", "token", "revoke", "--json", "pager"])
    assert revoked.exit_code == 0, revoked.output
    assert _object(revoked) == {"ok": True, "name": "pager", "revoked": True}
    twice = run.invoke(main, ["serve", "token", "revoke", "--json", "pager"])
    assert "no live token called 'pager'" in _failure(twice)["message"]
    # `serve --json` before the subcommand asks the same.
    listed = run.invoke(main, ["serve", "--json", "token", "list"])
    assert [t["name"] for t in json.loads(listed.stdout)] == ["pager"]
    missing = run.invoke(main, ["serve", "--json", "token", "revoke", "nobody"])
    assert "nobody" in _failure(missing)["message"]


# -- drill evidence: verify, due, remediate -----------------------------------------------------


@pytest.fixture
def drill_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One signed, failed drill with a deficiency (only the evidence layer is exercised)."""
    generate(tmp_path / "k.key", tmp_path / "k.pub")
    data: dict[str, Any] = {
        "drill_id": "drill-20261201T100000Z-0000",
        "started_at": "2026-12-01T10:00:00.000Z",
        "environment": "staging",
        "verdict": "failed",
        "deficiencies": [{"id": "D1", "text": "the approver was never paged"}],
        "limitations": [],
    }
    # The HTML template needs a whole drill's data; the PDF needs chromium: neither is tested here.
    monkeypatch.setattr(
        "breakglass.drill.report.render_html",
        lambda d, signature=None: f"<html>{d['drill_id']}</html>",
    )
    write_evidence(
        tmp_path / "drills",
        data,
        load_signer(tmp_path / "k.key"),
        pdf_printer=lambda d, s: b"%PDF-1.4 not printed here",
    )
    return tmp_path / "drills" / str(data["drill_id"])


def test_drill_verify_due_and_remediate_in_json(
    run: CliRunner, tmp_path: Path, drill_folder: Path
) -> None:
    key = ["--public-key", str(tmp_path / "k.pub")]
    verified = run.invoke(main, ["drill", "verify", "--json", str(drill_folder), *key])
    assert verified.exit_code == 0, verified.output
    assert _object(verified) == {
        "ok": True,
        "drill_id": drill_folder.name,
        "verdict": "failed",
        "problems": [],
    }

    due = run.invoke(
        main, ["drill", "due", "--json", "--evidence-dir", str(drill_folder.parent), *key]
    )
    assert due.exit_code == 1  # a failed drill does not count
    assert _object(due) == {
        "due": True,
        "detail": "no passed drill on record",
        "interval_days": 365,
    }

    closed = run.invoke(
        main,
        [
            *("drill", "remediate", "--json", str(drill_folder), "D1"),
            *("--action", "paging fixed", "--by", "owner@example.com"),
        ],
    )
    assert closed.exit_code == 0, closed.output
    entry = _object(closed)
    assert (entry["ok"], entry["deficiency"], entry["closed"]) == (True, "D1", True)
    assert entry["drill_id"] == drill_folder.name
    assert entry["by"] == "owner@example.com"
    unknown = run.invoke(
        main,
        ["drill", "remediate", "--json", str(drill_folder), "D9", "--action", "x", "--by", "y"],
    )
    assert "no deficiency 'D9'" in _failure(unknown)["message"]

    (drill_folder / "report.json").write_text("{}")  # tampered
    broken = run.invoke(main, ["drill", "verify", "--json", str(drill_folder), *key])
    assert broken.exit_code == 1
    report = _object(broken)
    assert report["ok"] is False
    assert report["verdict"] is None
    assert any("report.json" in p for p in report["problems"])


@pytest.mark.live
@pytest.mark.parametrize("command", ["relay", "notify"])
def test_sigterm_right_after_start_always_stops_it(
    tmp_path: Path, spawn: Any, command: str
) -> None:
    """A handler setting an Event the main thread waited on left `breakglass relay` running after
    about one SIGTERM in three sent just after it answered an OFREP connection (the signal taken
    by another thread, the main thread asleep on its lock). Several tries; each must stop."""
    (tmp_path / "policy.toml").write_text(POLICY)
    args = {
        "relay": ["relay", "--json"],
        "notify": ["notify", "run", "--json", "--policy", str(tmp_path / "policy.toml")],
    }[command]
    for attempt in range(8):
        process = spawn(
            args,
            BREAKGLASS_RELAY__PATH=str(tmp_path / f"relay-{attempt}.channel"),
            BREAKGLASS_RELAY__OFREP="127.0.0.1:0",
        )
        first = process.line()
        if first.get("ofrep"):  # a connection just served: another thread at work
            with socket.create_connection(("127.0.0.1", urlsplit(first["ofrep"]).port), 10):
                pass
        process.process.send_signal(signal.SIGTERM)
        try:
            code = process.process.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"attempt {attempt + 1}: still running 10 s after SIGTERM")
        assert code == 0, process.stderr()
        assert process.line()["event"] == "stopped"
