"""Lists people read are aligned columns, and stay parseable in a pipe (no colour, no boxes)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from typing import TYPE_CHECKING

from breakglass.cli import main
from breakglass.columns import table

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import CliRunner

_FIELDS = re.compile(r"\s{2,}")


def _parse(lines: list[str]) -> list[list[str]]:
    return [_FIELDS.split(line.strip()) for line in lines]


def test_columns_line_up_and_split_back() -> None:
    lines = table(
        ("NAME", "NOTE", "N"),
        [("a", "two  spaces\tand a tab", 1), ("longer-name", None, 22), ("c\x1b[31m", "", 3)],
    )
    # Every row starts its second column where the header's does.
    second = lines[0].index("NOTE")
    assert all(line[second - 2 : second] == "  " and line[second] != " " for line in lines)
    assert _parse(lines) == [
        ["NAME", "NOTE", "N"],
        ["a", "two spaces\\tand a tab", "1"],  # a tab is shown, never a column
        ["longer-name", "-", "22"],
        ["c\\x1b[31m", "-", "3"],  # a control character is shown, never sent to the terminal
    ]
    assert all(line == line.rstrip() for line in lines)


def test_providers_piped_through_a_real_process_is_plain_columns(tmp_path: Path) -> None:
    # A real pipe, with a terminal type that would invite colour: still plain text.
    out = subprocess.run(
        [sys.executable, "-m", "breakglass", "providers"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "FORCE_COLOR": "1"},
        timeout=60,
    ).stdout
    assert "\x1b" not in out
    header, *rows = _parse(out.splitlines())
    assert header == ["NAME", "PACKAGE", "VERSION"]
    assert ["unleash", "breakglass-unleash", version("breakglass-unleash")] in rows
    assert all(len(row) == 3 for row in rows)


def test_token_list_is_a_table(run: CliRunner) -> None:
    for name, role in (("pager", "halter"), ("governance lead", "approver")):
        made = run.invoke(main, ["serve", "token", "create", "--name", name, "--role", role])
        assert made.exit_code == 0, made.output
    assert run.invoke(main, ["serve", "token", "revoke", "pager"]).exit_code == 0
    listed = run.invoke(main, ["serve", "token", "list"])
    assert listed.exit_code == 0, listed.output
    header, *rows = _parse(listed.stdout.splitlines())
    assert header == ["NAME", "ROLE", "CREATED", "BY", "STATE"]
    by_name = {row[0]: row for row in rows}
    assert by_name["governance lead"][1] == "approver"
    assert by_name["governance lead"][4] == "live"
    assert by_name["pager"][4].startswith("revoked ")
    assert all(len(row) == 5 for row in rows)
