"""The gate survives kill -9 of serve: a real ``breakglass serve`` process is killed after a tick
and an approval, restarted on the same store, and carries on where it stopped."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

from breakglass.local.store import LocalStore
from tests.test_serve_replicas import FLAG, Replica, _cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.live

POLICY = '[resume]\napprovals = 2\nchecklist = [{ id = "root-cause", text = "Root cause", answer = "required" }]\n'


def _kill9(replica: Replica) -> None:
    replica.proc.send_signal(signal.SIGKILL)
    replica.proc.wait(10)
    # stop() reaps, joins both pipe readers and closes both pipes; after SIGKILL it does only that
    # (a pipe left open is a ResourceWarning that fails whichever test the collector meets it in).
    replica.stop()


def test_the_gate_survives_kill_9_of_serve(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    LocalStore(tmp_path / "local.db").write(FLAG, value=True, actor="setup", reason="start active")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env |= {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_LOCAL__PATH": str(tmp_path / "local.db"),
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_SERVE__PATH": str(tmp_path / "serve.db"),
        "BREAKGLASS_SERVE__TOKEN_REFRESH": "0.2",
        "BREAKGLASS_POLICY_FILE": str(tmp_path / "policy.toml"),
    }
    tokens = {
        name: _cli(
            env, tmp_path, "serve", "token", "create", "--name", name, "--role", role, "--json"
        )["token"]
        for name, role in (("oncall", "halter"), ("alice", "approver"), ("bob", "approver"))
    }
    first = Replica(env, tmp_path)
    try:
        with first.client(tokens["oncall"]) as c:
            halted = c.post("/v1/halt", json={"reason": "drift"})
            assert halted.status_code == 200, halted.text
            sid = halted.json()["suspension_id"]
        with first.client(tokens["alice"]) as c:
            assert (
                c.post("/v1/resume/checklist/root-cause", json={"answer": "stale join"}).status_code
                == 200
            )
            assert c.post("/v1/resume/approvals", json={}).status_code == 200
    finally:
        _kill9(first)

    second = Replica(env, tmp_path)
    try:
        with second.client(tokens["alice"]) as alice:
            gate = alice.get("/v1/resume").json()
            assert gate["suspension_id"] == sid
            assert gate["checklist"][0]["answer"] == "stale join"
            assert [a["by"] for a in gate["approvals"]] == ["token:alice"]
            assert gate["missing"] == ["approvals: 1 of 2 (need 1 more distinct approver)"]
            assert alice.post("/v1/resume/approvals", json={}).status_code == 409
        with second.client(tokens["bob"]) as bob:
            assert bob.post("/v1/resume/approvals", json={}).status_code == 200
            resumed = bob.post("/v1/resume", json={"reason": "fixed", "classification": "drill"})
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["suspension_id"] == sid
        assert LocalStore(tmp_path / "local.db").read(FLAG) is True
    finally:
        second.stop()
