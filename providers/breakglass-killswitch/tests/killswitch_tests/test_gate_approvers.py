"""The resumption gate's approvers reach the kill switch: its signed resume authorisation names the
people who approved through ``breakglass serve``'s gate, not merely whoever pressed resume.

breakglass runs as its own processes here (the CLI and ``breakglass serve``), driven over HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from breakglass_killswitch.tokens import create_token
from killswitch_tests.support import control_plane_switch, serving

if TYPE_CHECKING:
    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
BREAKGLASS = str(Path(sys.executable).parent / "breakglass")


def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "breakglass serve exited"
        assert time.monotonic() < deadline, "breakglass serve did not answer within 30 s"
        time.sleep(0.1)


def test_the_kill_switch_authorisation_names_the_gate_approvers(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    key_file, store, switch = control_plane_switch(tmp_path, kube)
    policy = tmp_path / "breakglass-policy.toml"
    policy.write_text("[resume]\napprovals = 2\nchecklist = []\n", encoding="utf-8")

    with serving(switch) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
        env |= {
            "BREAKGLASS_STATE_DIR": str(tmp_path / "bridge"),
            "BREAKGLASS_MAX_STALENESS": "5",
            "BREAKGLASS_POLICY_FILE": str(policy),
            "BREAKGLASS_KILLSWITCH__URL": url,
            "BREAKGLASS_KILLSWITCH__TOKEN": create_token(store, "control-plane", "halter"),
            "BREAKGLASS_KILLSWITCH__SWITCH": "test-switch",
            "BREAKGLASS_KILLSWITCH__SIGNING_KEY": str(key_file),
        }

        def breakglass(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [BREAKGLASS, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=180,
                check=False,
                cwd=tmp_path,
            )

        first = breakglass("resume", "--reason", "first start")
        assert first.returncode == 0, first.stdout + first.stderr
        halted = breakglass("halt", "--actor", "oncall", "--reason", "incident 4711")
        assert halted.returncode == 0, halted.stdout + halted.stderr
        assert switch.status()["state"] == "halted"
        refused = breakglass(
            "resume", "--actor", "carol", "--reason", "early", "--classification", "drill"
        )
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert switch.status()["state"] == "halted"

        tokens = {}
        for name in ("alice", "bob"):
            made = breakglass(
                "serve", "token", "create", "--name", name, "--role", "approver", "--json"
            )
            assert made.returncode == 0, made.stderr
            tokens[name] = json.loads(made.stdout)["token"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve = subprocess.Popen(
            [BREAKGLASS, "serve"],
            env=env | {"BREAKGLASS_SERVE__PORT": str(port)},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, serve)
            for name in ("alice", "bob"):
                approved = httpx.post(
                    f"{base}/v1/resume/approvals",
                    json={},
                    headers={"Authorization": f"Bearer {tokens[name]}"},
                    timeout=30,
                )
                assert approved.status_code == 200, approved.text
            resumed = httpx.post(
                f"{base}/v1/resume",
                json={"reason": "fixed", "classification": "precautionary"},
                headers={"Authorization": f"Bearer {tokens['alice']}"},
                timeout=180,
            )
            assert resumed.status_code == 200, resumed.text
        finally:
            serve.terminate()
            serve.wait(15)
        assert switch.status()["state"] == "active"

    grants = [
        r["raw"]["authorisation"]
        for _, r in store.audit_after(0, 1000)
        if isinstance(r.get("raw"), dict) and r["raw"].get("authorisation")
    ]
    assert grants, "the switch recorded no authorised resume"
    assert grants[-1]["approvers"] == ["token:alice", "token:bob"]
    assert grants[-1]["by"] == "control-plane"
    switch.close()
