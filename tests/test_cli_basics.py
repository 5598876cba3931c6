"""The command's front door: --version, the providers listing, a provider typo, a missing extra."""

from __future__ import annotations

import json
from importlib.metadata import version
from importlib.util import find_spec
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from breakglass.cli import main

if TYPE_CHECKING:
    from pathlib import Path


def test_version_names_the_installed_distribution(run: CliRunner) -> None:
    result = run.invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"breakglass {version('breakglass')}\n"


def test_providers_json_names_package_and_version(run: CliRunner) -> None:
    result = run.invoke(main, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    found = {entry["name"]: entry for entry in json.loads(result.output)}
    assert found["local"] == {
        "name": "local",
        "package": "breakglass",
        "version": version("breakglass"),
    }
    # The workspace installs every adapter: each is listed with its own distribution.
    assert found["unleash"]["package"] == "breakglass-unleash"
    assert found["unleash"]["version"] == version("breakglass-unleash")


def test_providers_table_is_one_line_each(run: CliRunner) -> None:
    result = run.invoke(main, ["providers"])
    lines = result.output.splitlines()
    assert any(
        line.split() == ["unleash", "breakglass-unleash", version("breakglass-unleash")]
        for line in lines
    )


@pytest.mark.parametrize(
    ("typo", "meant"), [("unlesh", "unleash"), ("launchdarkli", "launchdarkly"), ("locl", "local")]
)
def test_provider_typo_says_did_you_mean(run: CliRunner, typo: str, meant: str) -> None:
    """A typo names the real provider and never advises installing 'breakglass-<typo>'."""
    result = run.invoke(main, ["--provider", typo, "status"])
    assert result.exit_code == 1
    assert f"did you mean {meant!r}?" in result.output
    assert f"breakglass-{typo}" not in result.output
    assert "Traceback" not in result.output


def test_demo_without_its_extra_is_one_line(
    run: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel installed without [demo]: one line naming the extra, exit 1, no traceback."""
    real = find_spec
    monkeypatch.setattr(
        "breakglass.extras.find_spec", lambda name: None if name == "httpx" else real(name)
    )
    result = run.invoke(main, ["demo"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert "breakglass[demo]" in lines[0]
    assert "httpx" in lines[0]


@pytest.mark.parametrize("command", ["halt", "resume"])
@pytest.mark.parametrize(
    ("option", "value"),
    [("--reason", ""), ("--reason", "   "), ("--actor", " "), ("--reason", "a\x1b[2Jb")],
)
def test_blank_or_control_reasons_and_actors_are_refused(
    run: CliRunner, command: str, option: str, value: str
) -> None:
    """Nothing is changed: a usage error (exit 2) naming the option, before any write."""
    args = [command, "--reason", "ok", option, value]
    result = run.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "not blank" in result.output
    status = run.invoke(main, ["status", "--json"])
    assert "flag_missing" in status.output  # never written


def _records(run: CliRunner) -> int:
    result = run.invoke(main, ["audit", "status", "--json"])
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["records"])


def test_read_commands_write_no_audit_record(run: CliRunner) -> None:
    """status and watch after a flip they did not make: the audit trail is as it was."""
    assert run.invoke(main, ["resume", "--reason", "go"]).exit_code == 0
    assert run.invoke(main, ["status"]).exit_code == 0  # remembers active
    assert run.invoke(main, ["halt", "--reason", "stop"]).exit_code == 0
    before = _records(run)
    # Each starts from the remembered state and then reads the halt: a flip, not recorded.
    assert run.invoke(main, ["status"]).exit_code == 3
    assert run.invoke(main, ["watch", "--count", "1", "--interval", "0.05"]).exit_code == 0
    assert _records(run) == before


def test_status_says_who_halted_when_and_why(run: CliRunner, tmp_path: Path) -> None:
    fresh = run.invoke(main, ["status", "--json"])
    assert json.loads(fresh.stdout)["last_change"] is None
    assert not (tmp_path / "state" / "audit.db").exists()  # looking created no store
    assert run.invoke(main, ["resume", "--actor", "alice", "--reason", "go live"]).exit_code == 0
    assert run.invoke(main, ["halt", "--actor", "bob", "--reason", "incident 4711"]).exit_code == 0
    # A halt of a halted flag changes nothing: it is not the last change.
    assert run.invoke(main, ["halt", "--actor", "eve", "--reason", "again"]).exit_code == 0
    result = run.invoke(main, ["status", "--json"])
    change = json.loads(result.stdout)["last_change"]
    assert (change["action"], change["actor"], change["reason"], change["provider"]) == (
        "halted",
        "bob",
        "incident 4711",
        "local",
    )
    assert change["at"].endswith("Z")
    assert "local.db" in change["target"]
    text = run.invoke(main, ["status"]).stdout
    assert f"last change: halted by bob at {change['at']} through local: incident 4711" in text


def test_global_options_also_after_the_command(run: CliRunner, tmp_path: Path) -> None:
    """--state-dir, --flag-key and --provider mean the same before or after status/halt/resume/watch."""
    other = tmp_path / "other"
    done = run.invoke(main, ["resume", "--reason", "go", "--state-dir", str(other), "--json"])
    assert done.exit_code == 0, done.output
    assert (other / "local.db").exists()
    assert run.invoke(main, ["status"]).exit_code == 3  # the default state dir: untouched
    assert run.invoke(main, ["--state-dir", str(other), "status"]).exit_code == 0
    assert run.invoke(main, ["status", "--state-dir", str(other)]).exit_code == 0
    keyed = run.invoke(
        main, ["status", "--state-dir", str(other), "--flag-key", "other-flag", "--json"]
    )
    assert json.loads(keyed.stdout)["flag"] == "other-flag"
    typo = run.invoke(main, ["watch", "--count", "1", "--provider", "unlesh"])
    assert typo.exit_code == 1
    assert "did you mean 'unleash'?" in typo.output


def _exported(run: CliRunner, tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "export.jsonl"
    result = run.invoke(main, ["audit", "export", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()[:-1]]  # less the manifest
    return sorted({r["flag_key"] for r in records})


def test_audit_export_defaults_to_the_production_flag(run: CliRunner, tmp_path: Path) -> None:
    assert run.invoke(main, ["resume", "--reason", "go"]).exit_code == 0
    probe = ["--flag-key", "system-active-probe"]
    assert run.invoke(main, [*probe, "resume", "--reason", "probe round"]).exit_code == 0
    assert _exported(run, tmp_path) == ["system-active"]
    assert _exported(run, tmp_path, "--flag", "system-active-probe") == ["system-active-probe"]
    assert _exported(run, tmp_path, "--all") == ["system-active", "system-active-probe"]
    mixed = run.invoke(main, ["audit", "export", "--all", "--flag", "system-active"])
    assert mixed.exit_code == 1
    assert "--all exports everything" in mixed.output


@pytest.mark.parametrize(
    ("provider", "read_settings", "admin_setting"),
    [
        (
            "unleash",
            {
                "BREAKGLASS_UNLEASH__URL": "http://127.0.0.1:9/api",
                "BREAKGLASS_UNLEASH__CLIENT_TOKEN": "x",
            },
            "BREAKGLASS_UNLEASH__ADMIN_TOKEN",
        ),
        (
            "launchdarkly",
            {"BREAKGLASS_LAUNCHDARKLY__SDK_KEY": "sdk-x"},
            "BREAKGLASS_LAUNCHDARKLY__API_TOKEN",
        ),
        (
            "flagsmith",
            {"BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY": "ser.x"},
            "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN",
        ),
    ],
)
def test_missing_admin_credentials_name_the_setting(
    run: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    read_settings: dict[str, str],
    admin_setting: str,
) -> None:
    for name, value in read_settings.items():
        monkeypatch.setenv(name, value)
    result = run.invoke(main, ["--provider", provider, "halt", "--reason", "incident"])
    assert result.exit_code == 4, result.output  # NOT HALTED
    assert f"no admin credentials configured: set {admin_setting}" in result.output


def test_halt_on_a_relay_worker_says_where_to_halt(run: CliRunner) -> None:
    """No credentials would help: a worker only reads its relay, so the error says to halt upstream."""
    result = run.invoke(main, ["--provider", "relay", "halt", "--reason", "incident"])
    assert result.exit_code == 4, result.output  # NOT HALTED
    assert "relay provider cannot change the flag" in result.output
    assert "halt through the provider the relay reads" in result.output
    assert "credentials" not in result.output.split("fallback")[0]


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "--interval", "0"],  # drew the state as fast as the terminal took it
        ["watch", "--interval", "-5"],
        ["watch", "--count", "-1"],
        ["status", "--wait", "-1"],
    ],
)
def test_impossible_timings_are_usage_errors(run: CliRunner, args: list[str]) -> None:
    result = run.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "is not in the range" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--concurrency", "0"],  # ran with no traffic and blamed the product
        ["demo", "--load-seconds", "0"],
        ["drill", "due", "--interval-days", "-1"],  # "one is due every -1 days"
        ["serve", "--port", "99999"],
        ["notify", "test", "--group", "on-call", "--wait", "-1"],
    ],
)
def test_impossible_numbers_are_usage_errors_before_anything_starts(
    run: CliRunner, args: list[str]
) -> None:
    result = run.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "is not in the range" in result.output


def test_every_serve_role_can_be_given_to_a_token_from_the_command_line(run: CliRunner) -> None:
    """docs/relay.md has the fleet's reports sent under a reporter token made with the CLI."""
    from breakglass.serve.auth import Role

    create = main.get_command(click.Context(main), "serve")
    assert isinstance(create, click.Group)
    token = create.get_command(click.Context(create), "token")
    assert isinstance(token, click.Group)
    command = token.get_command(click.Context(token), "create")
    assert command is not None
    (role,) = [p for p in command.params if p.name == "role"]
    assert isinstance(role.type, click.Choice)
    assert set(role.type.choices) == {r.name.lower() for r in Role}
    made = run.invoke(main, ["serve", "token", "create", "--name", "fleet", "--role", "reporter"])
    assert made.exit_code == 0, made.output
    assert "token 'fleet' (reporter)" in made.output
