"""kill -9 of the sending process between the halt and the delivery: nothing is lost.

A real ``breakglass notify run`` process is killed (SIGKILL) while its first
attempts are in flight; the receivers process those first copies anyway.
After a restart every notification is delivered: exactly once where the
service deduplicates (PagerDuty by ``dedup_key``, the webhook consumer by
``webhook-id``), at least once elsewhere (Slack).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.notify.notifier import Notifier
from breakglass.notify.outbox import Outbox
from breakglass.policy import load_policy
from tests.notify_receivers import ROUTING_KEY, WEBHOOK_SECRET, Planned, Receivers, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live

POLICY = """
[notify]
system = "Credit scoring"
delivery = {{ first_delay = "100ms", max_delay = "500ms", timeout = "20s" }}

[notify.groups.on-call]
kind = "on-call"
timeframe = "immediate"
channels = [
  {{ type = "pagerduty", routing_key = "{key}", url = "{url}/v2/enqueue" }},
  {{ type = "slack", webhook_url = "{url}/slack/T/B/oncall" }},
  {{ type = "webhook", url = "{url}/hook/oncall", secret = "{secret}" }},
]
"""


def _run(tmp_path: Path, policy: Path, log: str) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")},
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_POLICY_FILE": str(policy),
    }
    with (tmp_path / log).open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "breakglass", "-v", "notify", "run"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_mid_delivery_then_restart(receivers: Receivers, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY.format(key=ROUTING_KEY, url=receivers.url, secret=WEBHOOK_SECRET))
    store = SqliteAuditStore(tmp_path / "state" / "audit.db")
    # The halting process stores the notifications and is gone (it never sends).
    notifier = Notifier(load_policy(policy_file).notify, Outbox(store))
    notifier.halted(suspension_id="s-kill", actor="ana", reason="drift", since=datetime.now(UTC))
    # Each service takes its time over the first copy: the sender dies meanwhile.
    for path in ("/v2/enqueue", "/slack/T/B/oncall", "/hook/oncall"):
        receivers.plan(path, Planned(0, delay=2.0))

    sender = _run(tmp_path, policy_file, "first.log")
    try:
        got = wait_until(
            lambda: all(receivers.at(p) for p in ("/v2/enqueue", "/slack/", "/hook/")), 30
        )
        assert got, (tmp_path / "first.log").read_text()
        sender.send_signal(signal.SIGKILL)
        assert sender.wait(10) == -signal.SIGKILL
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    # The services finish processing the first copies (each takes 2 s over it), sender or not.
    assert wait_until(lambda: receivers.pd_incidents and receivers.webhook_events, 30)
    assert len(receivers.pd_incidents) == 1
    assert len(receivers.webhook_events) == 1
    assert all(n.state == "pending" for n in notifier.outbox.notifications("s-kill"))

    restarted = _run(tmp_path, policy_file, "second.log")
    try:
        delivered = wait_until(
            lambda: all(
                n.state in ("accepted", "delivered")
                for n in notifier.outbox.notifications("s-kill")
            ),
            30,
        )
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(15) == 0
    assert delivered, (tmp_path / "second.log").read_text()
    # Exactly once where the service deduplicates, at least once elsewhere.
    assert receivers.pd_incidents == ["breakglass/s-kill/on-call"]
    assert len(receivers.at("/v2/enqueue")) == 2
    assert len(receivers.webhook_events) == 1
    assert len(receivers.at("/hook/")) == 2
    assert len(receivers.at("/slack/")) == 2
    # The interrupted attempt left a gap in the numbering; the second is recorded.
    attempts = notifier.outbox.attempts("s-kill")
    assert sorted(a.attempt for a in attempts) == [2, 2, 2]
    assert {a.worker.split(":")[1] for a in attempts} == {str(restarted.pid)}
    store.close()
