"""Running the real ``breakglass`` command as an operator would, for the providers' CLI tests.

Each call runs the console script installed beside the interpreter in its own
process, with a fixed environment and working directory, and fails when any
secret of the test reaches its output. The checks below are the steps every
provider's end-to-end CLI test shares: status, watch, and the audit trail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ACTOR",
    "CLI_TIMEOUT",
    "EXIT_HALTED",
    "HALT_REASON",
    "RESUME_REASON",
    "STATUS_KEYS",
    "Cli",
    "check_own_records",
    "check_watch",
    "command",
    "describe",
    "pull_export_verify",
    "read_status",
]

ACTOR = "cli-test-operator"
HALT_REASON = "cli test: incident drill"
RESUME_REASON = "cli test: drill over"
STATUS_KEYS = {"flag", "active", "reason", "source", "confirmed_at", "age_ms"}
EXIT_HALTED = 3
"""``status``'s exit code while halted, as documented (not read from the code it checks)."""
CLI_TIMEOUT = 30.0


def command() -> list[str]:
    """The console script installed beside this interpreter (``python -m breakglass`` otherwise)."""
    script = Path(sys.executable).with_name("breakglass")
    return [str(script)] if script.exists() else [sys.executable, "-m", "breakglass"]


class Cli:
    """Runs ``breakglass`` with a fixed environment and checks no secret reaches its output."""

    def __init__(self, env: dict[str, str], cwd: Path, secrets: list[str]) -> None:
        self.env = env
        self.cwd = cwd
        self.secrets = secrets

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``breakglass <args>``; fails when a secret is in its stdout or stderr."""
        result = subprocess.run(
            [*command(), *args],
            env=self.env,
            cwd=self.cwd,  # no breakglass.toml or .env of the checkout is picked up
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        for secret in self.secrets:
            # Never echo the secret itself in an assertion message.
            assert secret not in result.stdout, f"a token in the stdout of {args[:2]}"
            assert secret not in result.stderr, f"a token in the stderr of {args[:2]}"
        return result


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A command's exit code and the ends of its output, for an assertion message."""
    return f"exit {result.returncode}\nstdout: {result.stdout[-1500:]}\nstderr: {result.stderr[-1500:]}"


def check_watch(cli: Cli, flag: str, provider: str) -> None:
    """``watch --json`` prints three status lines of ``flag`` read through ``provider``."""
    watched = cli("watch", "--json", "--count", "3", "--interval", "0.1")
    assert watched.returncode == 0, describe(watched)
    lines = watched.stdout.splitlines()
    assert len(lines) == 3, describe(watched)
    for line in lines:
        entry = json.loads(line)
        assert entry.keys() >= STATUS_KEYS, entry
        assert (entry["flag"], entry["provider"]) == (flag, provider), entry


def pull_export_verify(cli: Cli, tmp_path: Path) -> list[dict[str, Any]]:
    """``audit pull``, ``audit export --format jsonl``, ``audit verify``; the exported records."""
    pulled = cli("audit", "pull")
    assert pulled.returncode == 0, describe(pulled)
    export = tmp_path / "export.jsonl"
    exported = cli("audit", "export", "--format", "jsonl", "--out", str(export))
    assert exported.returncode == 0, describe(exported)
    verified = cli("audit", "verify", str(export))
    assert verified.returncode == 0, describe(verified)
    text = export.read_text()
    for secret in cli.secrets:
        assert secret not in text, "a token in the audit export"
    return [r for r in map(json.loads, text.splitlines()) if r.get("kind") != "manifest"]


def check_own_records(records: list[dict[str, Any]], flag: str) -> None:
    """The bridge's own records of the halt and the resume, with who and why."""
    own = {
        r["vendor_event_type"]: r
        for r in records
        if r["provider"] == "breakglass" and r["flag_key"] == flag
    }
    assert {"halt", "resume"} <= own.keys(), sorted(own)
    # A module outside the tests gets no assertion rewriting: every assert says what it saw.
    halt, resume = own["halt"], own["resume"]
    assert (halt["actor"]["id"], halt["comment"]) == (ACTOR, HALT_REASON), halt
    assert (resume["actor"]["id"], resume["comment"]) == (ACTOR, RESUME_REASON), resume


def read_status(cli: Cli) -> tuple[int, dict[str, Any]]:
    """``status --json --wait 10``: its exit code (0 running, 3 halted) and what it printed."""
    result = cli("status", "--json", "--wait", "10")
    assert result.returncode in (0, EXIT_HALTED), describe(result)
    info = json.loads(result.stdout)
    assert info.keys() >= STATUS_KEYS, info
    return result.returncode, info
