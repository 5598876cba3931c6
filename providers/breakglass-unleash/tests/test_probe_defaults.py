"""`breakglass probe` against a real unleash-server at the SDK's default intervals.

Unleash's resume waits for the SDK's next poll of the whole flag set (5 s by default, plus a
one-second revision tick), so a fixed 5 s timeout timed out every resume round. The default
timeout now follows the adapter's declared bound, and the halts can be gated on their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    UnleashServer = Any  # the harness lives in conftest.py

pytestmark = pytest.mark.live


def test_probe_at_the_defaults_passes_with_a_halt_only_bound(
    unleash_server: UnleashServer, flag_name: str, tmp_path: Path
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env |= {
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_UNLEASH__URL": unleash_server.api_url,
        "BREAKGLASS_UNLEASH__CLIENT_TOKEN": unleash_server.client_token,
        "BREAKGLASS_UNLEASH__ADMIN_TOKEN": unleash_server.admin_token,
    }  # no interval overrides: the adapter's defaults
    cmd = [sys.executable, "-m", "breakglass", "probe", "--provider", "unleash", "--quiet"]
    args = ["--probe-flag", flag_name, "--rounds", "2", "--spacing", "0"]
    done = subprocess.run(
        [*cmd, *args, "--max-halt-p99", "5000", "--json", "-"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["timeout_s"] > 5.0  # from the declared bound, not the old fixed 5 s
    assert report["passed"] is True
    fleet = report["figures"]["fleet"]["propagation_ms"]
    assert (fleet["rounds"], fleet["timed_out"]) == (2, 0)
