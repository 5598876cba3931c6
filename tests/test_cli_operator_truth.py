"""halt/resume say what they changed and what readers are served; a failed halt says NOT HALTED."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from breakglass.cli import main

EXIT_NOT_HALTED, EXIT_NOT_RESUMED = 4, 5

if TYPE_CHECKING:
    from pathlib import Path


def test_halt_says_where_and_what_readers_are_served(run: CliRunner, tmp_path: Path) -> None:
    """The store's path and the value read back from it, not just the write's success."""
    assert run.invoke(main, ["resume", "--reason", "go"]).exit_code == 0
    halted = run.invoke(main, ["halt", "--reason", "incident"])
    assert halted.exit_code == 0, halted.output
    store = (tmp_path / "state" / "local.db").resolve()
    assert f"changed: store {store}" in halted.output
    assert "readers are served false" in halted.output
    info = json.loads(run.invoke(main, ["halt", "--reason", "again", "--json"]).output)
    assert (info["ok"], info["served"], info["confirmed"], info["created"]) == (
        True,
        False,
        True,
        False,
    )
    assert info["target"] == f"store {store}"


def test_halt_that_created_the_flag_does_not_claim_a_stop(run: CliRunner, tmp_path: Path) -> None:
    """Run without the service's state dir: it creates a new store; it must say so, and where."""
    halted = run.invoke(main, ["halt", "--reason", "incident"])
    assert halted.exit_code == 0, halted.output
    assert "acknowledged" not in halted.output
    assert "created halted in store" in halted.output
    assert "this halt created it" in halted.output
    assert "NOT halted by this" in halted.output
    assert str((tmp_path / "state" / "local.db").resolve()) in halted.output
    info = json.loads(run.invoke(main, ["halt", "--reason", "x", "--json"]).output)
    assert info["created"] is False  # the second halt finds it


def test_a_failed_halt_says_not_halted_with_its_own_exit_code(
    run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store cannot be written: NOT HALTED, exit 4, the fallback, and a JSON error object."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BREAKGLASS_LOCAL__PATH", str(blocker / "local.db"))
    halted = run.invoke(main, ["halt", "--reason", "incident"])
    assert halted.exit_code == EXIT_NOT_HALTED, halted.output
    assert "breakglass: NOT HALTED:" in halted.output
    assert "fallback: or stop the guarded service's processes themselves" in halted.output
    assert "fallback: use the kill switch: breakglass-killswitch halt" in halted.output
    as_json = run.invoke(main, ["halt", "--reason", "incident", "--json"])
    assert as_json.exit_code == EXIT_NOT_HALTED
    info = json.loads(as_json.output)
    assert (info["ok"], info["verdict"]) == (False, "NOT HALTED")
    assert info["error"]["type"] == "StoreError"
    assert info["error"]["message"]
    assert info["fallback"]
    resumed = run.invoke(main, ["resume", "--reason", "go"])
    assert resumed.exit_code == EXIT_NOT_RESUMED
    assert "NOT RESUMED" in resumed.output


def test_a_settings_error_during_halt_is_not_halted(
    run: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A halt that could not even start is a failed halt, with the same exit code and the fallback.

    No provider was reached, so no dashboard can be named; the kill switch and stopping the
    processes still can, and are what the operator needs next.
    """
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", "inf")
    halted = run.invoke(main, ["halt", "--reason", "incident"])
    assert halted.exit_code == EXIT_NOT_HALTED
    assert "NOT HALTED" in halted.output
    assert "BREAKGLASS_MAX_STALENESS" in halted.output
    assert "fallback: use the kill switch: breakglass-killswitch halt" in halted.output
    assert "fallback: or stop the guarded service's processes themselves" in halted.output
    as_json = json.loads(run.invoke(main, ["halt", "--reason", "incident", "--json"]).output)
    assert as_json["fallback"][-1] == "or stop the guarded service's processes themselves"
    resumed = run.invoke(main, ["resume", "--reason", "go", "--json"])
    assert resumed.exit_code == EXIT_NOT_RESUMED
    info = json.loads(resumed.output)
    assert (info["ok"], info["verdict"]) == (False, "NOT RESUMED")
    assert "BREAKGLASS_MAX_STALENESS" in info["error"]["message"]


def test_outside_text_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store path with a terminal escape prints escaped, never raw."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BREAKGLASS_STATE_DIR", str(tmp_path / "st\x1b[2Jate"))
    halted = CliRunner().invoke(main, ["halt", "--reason", "x"])
    assert halted.exit_code == 0, halted.output
    assert "\x1b" not in halted.output
    assert "\\x1b[2J" in halted.output
