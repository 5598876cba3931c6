"""`breakglass watch` as people see it: through a real pseudo-terminal, and through a pipe."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.live  # real processes on a pseudo-terminal

ESC = "\x1b["


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "TERM"}}
    return {**env, "BREAKGLASS_STATE_DIR": str(tmp_path / "state"), "TERM": "xterm", **extra}


def _cli(tmp_path: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "breakglass", *args],
        env=_env(tmp_path),
        check=True,
        capture_output=True,
    )


def _on_terminal(tmp_path: Path, *args: str, **env: str) -> str:
    """Run watch with its stdout on a pseudo-terminal; everything it wrote there."""
    master, slave = pty.openpty()
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "breakglass", "watch", *args],
            stdout=slave,
            stderr=err,
            env=_env(tmp_path, **env),
        )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other side closed (Linux: EIO)
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, errors.read_text()
    return b"".join(chunks).decode()


def test_terminal_refreshes_in_place_in_colour(tmp_path: Path) -> None:
    _cli(tmp_path, "resume", "--reason", "go")
    out = _on_terminal(tmp_path, "--count", "4", "--interval", "0.05")
    assert out.count(f"{ESC}32mACTIVE{ESC}0m") == 4  # green, each redraw
    assert out.count("F" + f"{ESC}J") == 3  # 3 redraws: cursor up over the block, erase below
    assert "changed" not in out


def test_no_color_on_a_terminal_keeps_the_refresh_without_colour(tmp_path: Path) -> None:
    _cli(tmp_path, "resume", "--reason", "go")
    out = _on_terminal(tmp_path, "--count", "3", "--interval", "0.05", NO_COLOR="1")
    assert f"{ESC}32m" not in out
    assert f"{ESC}0m" not in out
    assert out.count(f"{ESC}J") == 2  # still refreshed in place
    assert out.count("ACTIVE") == 3


def test_a_pipe_gets_plain_lines_and_changes_only_on_request(tmp_path: Path) -> None:
    _cli(tmp_path, "resume", "--reason", "go")
    cmd = [sys.executable, "-m", "breakglass", "watch", "--interval", "0.05"]
    plain = subprocess.run(
        [*cmd, "--count", "3"], env=_env(tmp_path), capture_output=True, text=True, check=True
    )
    assert "\x1b" not in plain.stdout
    lines = plain.stdout.splitlines()
    assert len(lines) == 3
    assert all("ACTIVE" in line and " changed " not in line for line in lines)
    # --changes: the first state, then only changes (a halt made while it watches).
    # The halt is made once the first state is shown, and the watch runs until the change is shown:
    # fixed waits and a sample count raced a slow start of either process.
    watcher = subprocess.Popen(
        [*cmd, "--changes", "--json"], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    assert watcher.stdout is not None
    try:
        shown = [watcher.stdout.readline()]
        _cli(tmp_path, "halt", "--reason", "stop")
        shown.append(watcher.stdout.readline())
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=60)
    finally:
        _reap(watcher)
    assert watcher.returncode == 0
    samples = [json.loads(line) for line in [*shown, *out.splitlines()]]
    assert [(s["active"], s["changed"]) for s in samples] == [(True, False), (False, True)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_stops_on_a_signal_even_one_it_inherited_ignored(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A shell's background job, or a parent that ignores Ctrl-C, hands SIGINT down ignored; Python
    then raises no KeyboardInterrupt and a watch ran on for good. It stops, exit status 0."""
    _cli(tmp_path, "resume", "--reason", "go")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "breakglass", "watch", "--interval", "0.05", "--json"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    assert watcher.stdout is not None
    try:
        assert watcher.stdout.readline()
        watcher.send_signal(sig)
        out, _ = watcher.communicate(timeout=20)
    finally:
        _reap(watcher)
    assert watcher.returncode == 0
    assert all(json.loads(line)["active"] for line in out.splitlines())


def _reap(process: subprocess.Popen[str]) -> None:
    """Kill a child a failed assertion left running and close its pipes: a leaked one fails a
    later test of the same worker (ResourceWarning) instead of this one."""
    if process.poll() is None:
        process.kill()
    process.communicate()
