"""UnleashClient's own logging, tamed: an unreachable server is a line per problem, not tracebacks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.live  # real processes and the real SDK against a closed port


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def _watch(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_PROVIDER": "unleash",
        "BREAKGLASS_UNLEASH__URL": f"http://127.0.0.1:{_closed_port()}/api",
        "BREAKGLASS_UNLEASH__CLIENT_TOKEN": "default:development.not-a-real-token",
        "BREAKGLASS_UNLEASH__SDK_REFRESH_INTERVAL": "1",
    }
    # About 6 s: several of the SDK's own polls, each of which logs a traceback untamed.
    cmd = [
        sys.executable,
        "-m",
        "breakglass",
        *flags,
        "watch",
        "--count",
        "12",
        "--interval",
        "0.5",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_unreachable_unleash_is_quiet_by_default(tmp_path: Path) -> None:
    done = _watch(tmp_path)
    assert "Traceback" not in done.stderr
    assert "UnleashClient" not in done.stderr
    assert "HALTED" in done.stdout


def test_unreachable_unleash_with_v_is_one_line_per_problem(tmp_path: Path) -> None:
    done = _watch(tmp_path, "-v")
    assert "Traceback" not in done.stderr
    vendor = [
        line.split(" UnleashClient: ", 1)[1]
        for line in done.stderr.splitlines()
        if " UnleashClient: " in line
    ]
    assert vendor, done.stderr  # the problem is said, once
    assert all(count == 1 for count in Counter(vendor).values()), vendor
    assert all(
        " WARNING UnleashClient" in line
        for line in done.stderr.splitlines()
        if " UnleashClient: " in line
    )
    assert "token" not in done.stderr.lower().replace("client_token", "")
