"""Usage errors under --json: one JSON object on stdout, exit 2, wherever --json stands.

A program that asked for JSON parses what comes back even when its own command line was
wrong (an option a newer version added, a typo in a choice): it must not get Click's usage
text instead. Without --json the text stays as it was.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
import pytest

from breakglass.cli import main
from breakglass.cli_errors import asks_for_json, with_json

if TYPE_CHECKING:
    from click.testing import CliRunner, Result


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command a person runs: each leaf, and each group that runs by itself (serve)."""
    if not isinstance(command, click.Group):
        return [path]
    found = [path] if path and command.invoke_without_command else []
    for name, sub in sorted(command.commands.items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(main)


def _json_args(path: tuple[str, ...]) -> list[str]:
    """How this command asks for JSON on stdout (the probe's --json takes a file; '-' is stdout)."""
    option = _json_option(path)
    assert option is not None, f"breakglass {' '.join(path)} has no --json"
    return ["--json"] if option.is_flag else ["--json", "-"]


def _json_option(path: tuple[str, ...]) -> click.Option | None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    found = [p for p in command.params if "--json" in p.opts]
    return found[0] if found and isinstance(found[0], click.Option) else None


def _json_error(result: Result) -> dict[str, object]:
    assert result.stderr == "", result.stderr  # nothing for a person in between
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    payload = json.loads(lines[0])
    assert set(payload) == {"ok", "error"}
    assert payload["ok"] is False
    error: dict[str, object] = payload["error"]
    assert set(error) == {"type", "message", "exit_code"}
    assert error["exit_code"] == result.exit_code
    return error


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"status", "relay", "demo", "audit export", "audit keygen", "serve"} <= names
    assert {"serve token revoke", "notify run", "drill local", "drill remediate"} <= names
    assert "audit" not in names  # a group that only holds commands runs nothing itself


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    assert _json_option(path) is not None, f"breakglass {' '.join(path)} has no --json"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_an_unknown_option_is_json_before_or_after_json(
    run: CliRunner, path: tuple[str, ...]
) -> None:
    json_args = _json_args(path)
    for args in (
        [*path, *json_args, "--no-such-option"],
        [*path, "--no-such-option", *json_args],  # parsing fails before it reaches --json
    ):
        result = run.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        error = _json_error(result)
        assert error["type"] == "NoSuchOption"
        assert "--no-such-option" in str(error["message"])


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_the_global_json_counts_for_every_command(run: CliRunner, path: tuple[str, ...]) -> None:
    result = run.invoke(main, ["--json", *path, "--no-such-option"])
    assert result.exit_code == 2, result.output
    assert _json_error(result)["type"] == "NoSuchOption"


def test_a_group_without_its_command_is_one_short_json_error(run: CliRunner) -> None:
    for args in (["--json", "audit"], ["--json", "serve", "token"]):
        error = _json_error(run.invoke(main, args))
        assert error["type"] == "NoArgsIsHelpError"
        assert " ".join(args[1:]) + " needs a command: " in str(error["message"])
        assert "Usage" not in str(error["message"])  # not the whole help text


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_without_json_a_usage_error_stays_clicks_text(
    run: CliRunner, path: tuple[str, ...]
) -> None:
    result = run.invoke(main, [*path, "--no-such-option"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Usage: ")
    assert f" {' '.join(path)} [OPTIONS]" in result.stderr.splitlines()[0]
    assert "Error: No such option '--no-such-option'" in result.stderr


# A line wrong only because of --json: an export to stdout leaves no room for the summary.
ONLY_WITH_JSON = [["audit", "export", "--json"]]


@pytest.mark.parametrize(
    ("args", "kind", "words"),
    [
        (["halt", "--json"], "MissingParameter", "Missing option '--reason'"),
        (["notify", "status", "--json"], "MissingParameter", "Missing argument 'SUSPENSION_ID'"),
        (
            ["resume", "--json", "--reason", "x", "--classification", "harmless"],
            "BadParameter",
            "'harmless' is not one of 'confirmed-harm', 'precautionary', 'drill'",
        ),
        (["status", "--wait", "soon", "--json"], "BadParameter", "'soon' is not a valid float"),
        (["halt", "--json", "--reason", "   "], "BadParameter", "must be printable text"),
        (["audit", "pull", "--since", "lately", "--json"], "BadParameter", "is not a time"),
        (["stauts", "--json"], "NoSuchCommand", "Did you mean 'status'?"),
        # The root's own options, parsed before the command's name is even looked at.
        (["--log-format", "yaml", "status", "--json"], "BadParameter", "'yaml' is not one of"),
        (["--json", "status", "--wait", "soon"], "BadParameter", "'soon' is not a valid float"),
        # Refused by the command itself, after parsing.
        (["audit", "verify", "--json"], "UsageError", "give an export FILE"),
        (["audit", "export", "--json"], "UsageError", "give the export --out FILE"),
        (["probe", "--rounds", "many", "--json=-"], "BadParameter", "'many' is not a valid"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_each_kind_of_usage_error_is_json_with_the_plain_exit_code(
    run: CliRunner, args: list[str], kind: str, words: str
) -> None:
    plain = run.invoke(main, [a for a in args if a not in ("--json", "--json=-")])
    result = run.invoke(main, args)
    assert result.exit_code == 2, result.output
    if args not in ONLY_WITH_JSON:
        assert plain.exit_code == 2, plain.output
        assert plain.stdout == ""
        assert words in plain.stderr
    error = _json_error(result)
    assert error["type"] == kind
    assert words in str(error["message"])


def test_the_probe_writing_its_report_to_a_file_keeps_the_text(run: CliRunner) -> None:
    # `--json FILE` is a report file, not JSON on stdout: the error is for the person.
    result = run.invoke(main, ["probe", "--json", "report.json", "--no-such-option"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: No such option" in result.stderr


def test_json_after_the_end_of_options_is_an_argument_not_a_request(run: CliRunner) -> None:
    result = run.invoke(main, ["drill", "verify", "--no-such-option", "--", "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: No such option" in result.stderr


def test_control_characters_in_a_bad_option_do_not_reach_the_json(run: CliRunner) -> None:
    result = run.invoke(main, ["status", "--json", "--x\x1b[2J\x07"])
    message = str(_json_error(result)["message"])
    assert "\x1b" not in message
    assert "\x07" not in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "--json"], True),
        (["--provider", "local", "status", "--bogus", "--json"], True),
        (["notify", "status", "--json", "s-1"], True),
        (["probe", "--json", "-"], True),
        (["probe", "--json=-"], True),
        (["probe", "--json", "out.json"], False),
        (["probe", "--json"], False),  # no value: a usage error for a person
        (["status"], False),
        (["audit", "verify", "--", "--json"], False),
        (["--json"], True),
        (["--json", "probe", "--json", "out.json"], True),  # the global one asks for JSON
        (["audit", "--json", "export"], True),  # audit takes none: a usage error, in JSON
    ],
)
def test_what_counts_as_asking_for_json(args: list[str], *, expected: bool) -> None:
    assert asks_for_json(main, args) is expected


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("status", ["--wait", "0"], ["--wait", "0", "--json"]),
        ("status", ["--json"], ["--json"]),
        ("probe", ["--rounds", "3"], ["--rounds", "3", "--json", "-"]),
        ("probe", ["--json", "out.json"], ["--json", "out.json"]),  # its own report file wins
        ("probe", ["--json=out.json"], ["--json=out.json"]),
        ("audit", ["export", "--out", "x"], ["export", "--out", "x", "--json"]),
        ("audit", [], []),  # no command yet: Click says so
        ("serve", [], ["--json"]),  # serve runs by itself
        ("serve", ["token", "list"], ["token", "list", "--json"]),
        ("drill", ["verify", "--", "-odd-name"], ["verify", "--json", "--", "-odd-name"]),
    ],
)
def test_the_global_json_is_passed_to_the_command_that_runs(
    command: str, args: list[str], expected: list[str]
) -> None:
    assert with_json(main.commands[command], args) == expected


def test_the_global_json_prints_what_the_commands_own_prints(run: CliRunner) -> None:
    for own, global_ in (
        (["status", "--json", "--wait", "0"], ["--json", "status", "--wait", "0"]),
        (["serve", "token", "list", "--json"], ["--json", "serve", "token", "list"]),
        (["providers", "--json"], ["--json", "providers"]),
    ):
        mine, theirs = run.invoke(main, own), run.invoke(main, global_)
        assert mine.exit_code == theirs.exit_code, theirs.output
        first, second = json.loads(mine.stdout), json.loads(theirs.stdout)
        if isinstance(first, dict):  # status: two reads, at two moments
            for moment in ("age_ms", "confirmed_at"):
                assert (first.pop(moment) is None) == (second.pop(moment) is None)
        assert first == second
