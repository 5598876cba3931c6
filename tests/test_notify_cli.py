"""``breakglass notify check`` and ``notify test`` through the real command and the real chain."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.cli import main
from breakglass.notify.notifier import Notifier
from breakglass.notify.outbox import Outbox
from breakglass.policy import load_policy
from tests.notify_receivers import ROUTING_KEY, Planned, Receivers

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live


@pytest.fixture
def policy(tmp_path: Path, receivers: Receivers, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        f"""
[notify]
system = "Credit scoring"
delivery = {{ first_delay = "100ms", max_delay = "200ms", timeout = "3s", max_attempts = 3 }}

[notify.groups.on-call]
kind = "on-call"
timeframe = "immediate"
channels = [
  {{ type = "pagerduty", routing_key = "{ROUTING_KEY}", url = "{receivers.url}/v2/enqueue" }},
  {{ type = "slack", webhook_url = "{receivers.url}/slack/T/B/oncall" }},
]

[notify.groups.management]
kind = "senior-management"
within = "4h"
when = {{ business_continuity = true }}
channels = [{{ type = "teams", webhook_url = "{receivers.url}/teams/x?sig=S" }}]
"""
    )
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(path))
    monkeypatch.setenv("BREAKGLASS_STATE_DIR", str(tmp_path / "state"))
    return path


def test_check_lists_the_groups(policy: Path) -> None:
    result = CliRunner().invoke(main, ["notify", "check"])
    assert result.exit_code == 0, result.output
    assert (
        "on-call (on-call): immediate, ack within 15m, when always; channels: pagerduty, slack"
        in result.output
    )
    assert "management (senior-management): within 4h" in result.output
    assert "{'business_continuity': True}" in result.output
    assert "Opsgenie ends" not in result.output


def test_check_warns_of_the_end_of_opsgenie(tmp_path: Path) -> None:
    path = tmp_path / "og.toml"
    path.write_text(
        '[notify.groups.x]\nkind = "on-call"\ntimeframe = "immediate"\n'
        'channels = [{ type = "opsgenie", api_key = "k" }]\n'
    )
    result = CliRunner().invoke(main, ["notify", "check", "--policy", str(path)])
    assert result.exit_code == 0, result.output
    assert "Opsgenie ends on 5 April 2027" in result.output


def test_check_names_the_bad_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[notify.groups.x]\nkind = "on-call"\ntimeframe = "immediate"\nchanels = []\n')
    result = CliRunner().invoke(main, ["notify", "check", "--policy", str(bad)])
    assert result.exit_code == 1
    assert "notify.groups.x.chanels: unknown key" in result.output
    assert "Traceback" not in result.output


def test_notify_test_sends_a_marked_test_through_the_real_chain(
    policy: Path, receivers: Receivers
) -> None:
    result = CliRunner().invoke(main, ["notify", "test", "--group", "on-call", "--json"])
    assert result.exit_code == 0, result.output
    (group,) = json.loads(result.output)
    assert group["group"] == "on-call"
    assert sorted(c["state"] for c in group["channels"]) == ["accepted", "delivered"]
    trigger = receivers.at("/v2/enqueue")[0].json()
    assert trigger["payload"]["summary"].startswith("[TEST] ")
    assert trigger["payload"]["severity"] == "info"
    assert receivers.at("/slack/")[0].json()["blocks"][0]["text"]["text"].startswith("[TEST] ")
    assert not receivers.at("/teams/")


def test_notify_test_fails_when_a_channel_does_not_get_it(
    policy: Path, receivers: Receivers
) -> None:
    receivers.plan("/slack/T/B/oncall", Planned(410, "channel_is_archived"))
    result = CliRunner().invoke(main, ["notify", "test", "--group", "on-call"])
    assert result.exit_code == 1
    assert re.search(r"^on-call/slack +slack +NOT DELIVERED +1 ", result.output, re.MULTILINE)
    assert "channel_is_archived" in result.output
    assert re.search(r"^on-call/pagerduty +pagerduty +ACCEPTED ", result.output, re.MULTILINE)


def test_notify_test_unknown_group(policy: Path) -> None:
    result = CliRunner().invoke(main, ["notify", "test", "--group", "nobody"])
    assert result.exit_code == 1
    assert "no group named nobody" in result.output


def test_notify_status_shows_each_group(policy: Path, receivers: Receivers) -> None:
    sent = CliRunner().invoke(main, ["notify", "test", "--group", "on-call", "--json"])
    assert sent.exit_code == 0, sent.output
    sid = json.loads(sent.output)[0]["channels"][0]["id"].split("/", 1)[0]
    shown = CliRunner().invoke(main, ["notify", "status", sid])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("on-call: sent 20")
    assert "not acknowledged" in shown.output
    assert re.search(r"^on-call/slack +slack +DELIVERED +1 ", shown.output, re.MULTILINE)


def test_notify_status_of_an_unknown_suspension_is_an_error(policy: Path) -> None:
    shown = CliRunner().invoke(main, ["notify", "status", "no-such"])
    assert shown.exit_code == 1, shown.output
    assert shown.output.startswith("breakglass: error: no suspension no-such is known to ")
    assert "check the id" in shown.output
    as_json = CliRunner().invoke(main, ["notify", "status", "no-such", "--json"])
    assert as_json.exit_code == 1, as_json.output
    error = json.loads(as_json.stdout)
    assert error["ok"] is False
    assert error["error"]["type"] == "UnknownSuspensionError"
    assert error["error"]["exit_code"] == 1
    assert "no suspension no-such" in error["error"]["message"]


def test_notify_status_of_a_halt_that_told_no_group(policy: Path, tmp_path: Path) -> None:
    # The halt is known (its event is stored) though no group's condition matched it.
    quiet = tmp_path / "quiet.toml"
    quiet.write_text(
        '[notify.groups.management]\nkind = "senior-management"\nwithin = "4h"\n'
        "when = { business_continuity = true }\n"
        'channels = [{ type = "teams", webhook_url = "https://teams.invalid/x" }]\n'
    )
    notifier = Notifier(
        load_policy(quiet).notify, Outbox(SqliteAuditStore(tmp_path / "state" / "audit.db"))
    )
    told = notifier.halted(
        suspension_id="s-quiet", actor="ana", reason="drift", since=datetime.now(UTC)
    )
    assert told == []
    shown = CliRunner().invoke(main, ["notify", "status", "s-quiet", "--policy", str(quiet)])
    assert (shown.exit_code, shown.output) == (0, "no notifications for s-quiet\n")
    as_json = CliRunner().invoke(main, ["notify", "status", "s-quiet", "--json"])
    assert (as_json.exit_code, json.loads(as_json.output)) == (0, [])
