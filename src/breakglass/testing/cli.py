"""Running the real ``breakglass`` command as an operator would, for the providers' CLI tests.

Each call runs the console script installed beside the interpreter in its own
process, with a fixed environment and working directory, and fails when any
secret of the test reaches its output. The checks below are the steps every
provider's end-to-end CLI test shares: status, watch, and the audit trail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ACTOR",
    "CLI_TIMEOUT",
    "EXIT_HALTED",
    "HALT_REASON",
    "RESUME_REASON",
    "STATUS_KEYS",
    "Cli",
    "check_halt_and_resume",
    "check_own_records",
    "check_status",
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

    @classmethod
    def for_provider(
        cls,
        tmp_path: Path,
        provider: str,
        flag: str,
        settings: dict[str, str],
        secrets: list[str],
        *,
        keep: str | None = None,
    ) -> Cli:
        """``breakglass`` on ``provider`` configured by ``BREAKGLASS_*`` variables alone, as an operator would.

        The test process's own ``BREAKGLASS_*`` variables are left out (but those starting with
        ``keep``); ``settings`` are the provider's; the state goes under ``tmp_path/state`` and
        each command runs in the empty ``tmp_path/cwd``.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BREAKGLASS_") or (keep is not None and k.startswith(keep))
        }
        env.update(
            {
                "BREAKGLASS_PROVIDER": provider,
                "BREAKGLASS_FLAG_KEY": flag,
                "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
                **settings,
            }
        )
        work = tmp_path / "cwd"
        work.mkdir()
        return cls(env, work, secrets)

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


def check_halt_and_resume(
    cli: Cli, flag: str, provider: str, vendor_on: Callable[[], bool]
) -> None:
    """Running, ``halt``, ``resume``: each answered, and the vendor's own API and ``status`` agree."""
    check_status(cli, flag, provider, active=True)
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON)
    assert halted.returncode == 0, describe(halted)
    assert vendor_on() is False, f"{provider}'s own API still says on after the halt"
    check_status(cli, flag, provider, active=False)
    resumed = cli("resume", "--actor", ACTOR, "--reason", RESUME_REASON)
    assert resumed.returncode == 0, describe(resumed)
    assert vendor_on() is True, f"{provider}'s own API still says off after the resume"
    check_status(cli, flag, provider, active=True)


def check_status(cli: Cli, flag: str, provider: str, *, active: bool) -> None:
    """``status --json``: ``flag`` read through ``provider`` just now, running (exit 0) or halted (3)."""
    code, info = read_status(cli)
    seen = (code, info["flag"], info["active"], info["reason"], info["provider"])
    if active:
        assert seen == (0, flag, True, "active", provider), info
    else:
        assert seen == (EXIT_HALTED, flag, False, "off", provider), info
    assert info["confirmed_at"] is not None, info
    assert info["age_ms"] is not None, info
    assert info["age_ms"] >= 0, info


def read_status(cli: Cli) -> tuple[int, dict[str, Any]]:
    """``status --json --wait 10``: its exit code (0 running, 3 halted) and what it printed."""
    result = cli("status", "--json", "--wait", "10")
    assert result.returncode in (0, EXIT_HALTED), describe(result)
    info = json.loads(result.stdout)
    assert info.keys() >= STATUS_KEYS, info
    return result.returncode, info
