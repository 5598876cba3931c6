"""--json everywhere, failures too: one JSON object on stdout, the exit code of the plain run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from breakglass.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import CliRunner, Result

# Every command that takes --json and reads the settings (probe's --json takes a file; '-' is stdout).
JSON_COMMANDS = [
    ["status", "--json", "--wait", "0"],
    ["halt", "--json", "--reason", "test"],
    ["resume", "--json", "--reason", "test"],
    ["watch", "--json", "--count", "1"],
    ["probe", "--json", "-"],
    ["audit", "status", "--json"],
    ["audit", "pull", "--json"],
    ["audit", "verify", "--store", "--json"],
    ["notify", "status", "--json", "s-1"],
    ["notify", "test", "--json", "--group", "on-call"],
    ["drill", "run", "--json"],
    ["drill", "history", "--json"],
    ["serve", "token", "list", "--json"],
    ["serve", "token", "create", "--json", "--name", "pager", "--role", "viewer"],
]


def _error(result: Result) -> dict[str, object]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.output  # one object, nothing else on stdout
    payload = json.loads(lines[0])
    assert payload["ok"] is False
    error: dict[str, object] = payload["error"]
    assert error["exit_code"] == result.exit_code
    return error


@pytest.fixture
def broken_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "breakglass.toml"
    path.write_text('provider = "local"\nflag_key = \n')  # not TOML
    monkeypatch.setenv("BREAKGLASS_CONFIG_FILE", str(path))
    # A valid policy, so that the settings are what fails (its receiver is never reached).
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[notify]\nsystem = "Credit scoring"\n\n[notify.groups.on-call]\nkind = "on-call"\n'
        'timeframe = "immediate"\n'
        'channels = [{ type = "slack", webhook_url = "http://127.0.0.1:9/slack/T/B/x" }]\n'
    )
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(policy))
    return path


@pytest.mark.parametrize("args", JSON_COMMANDS, ids=" ".join)
def test_a_broken_settings_file_is_one_json_error(
    run: CliRunner, broken_config: Path, args: list[str]
) -> None:
    plain = run.invoke(main, [a for a in args if a not in ("--json", "-")])
    result = run.invoke(main, args)
    assert result.exit_code == plain.exit_code != 0, (plain.output, result.output)
    error = _error(result)
    assert error["type"] == "ConfigurationError"
    assert broken_config.name in str(error["message"])
    assert result.stderr == ""
    assert "Traceback" not in result.output


def test_a_provider_typo_is_the_same_shape_in_status_and_halt(run: CliRunner) -> None:
    status = run.invoke(main, ["--provider", "unlesh", "status", "--json"])
    halt = run.invoke(main, ["--provider", "unlesh", "halt", "--json", "--reason", "x"])
    assert status.exit_code == 1
    assert halt.exit_code == 4  # NOT HALTED, as without --json
    for result in (status, halt):
        assert "did you mean 'unleash'" in str(_error(result)["message"])


def test_without_json_a_failure_stays_one_line_on_stderr(
    run: CliRunner, broken_config: Path
) -> None:
    result = run.invoke(main, ["audit", "status"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("breakglass: error: ")
    assert broken_config.name in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_command_error_that_is_not_settings_is_json_too(run: CliRunner) -> None:
    # No such token: the command's own refusal, after the settings loaded.
    result = run.invoke(main, ["serve", "token", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    missing = run.invoke(main, ["drill", "history", "--json", "--public-key", "absent.pem"])
    assert missing.exit_code != 0
    assert "absent.pem" in str(_error(missing)["message"])
