"""The notification chain inside ``breakglass serve`` (real app on uvicorn, local provider, local receivers)."""

from __future__ import annotations

import time
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from breakglass.notify.listener import NotifyListener
from breakglass.notify.notifier import open_notifier
from breakglass.policy import parse_policy
from breakglass.testing.serve import Running, local_settings, running_serve
from tests.notify_receivers import ROUTING_KEY, Planned, Receivers, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live


def _policy(receivers: Receivers) -> dict[str, object]:
    return {
        "notify": {
            "system": "Credit scoring",
            "console_url": "https://console.example.org",
            "delivery": {"first_delay": "100ms", "max_delay": "200ms", "timeout": "10s"},
            "groups": {
                "on-call": {
                    "kind": "on-call",
                    "timeframe": "immediate",
                    "channels": [
                        {
                            "type": "pagerduty",
                            "routing_key": ROUTING_KEY,
                            "url": f"{receivers.url}/v2/enqueue",
                        },
                        {"type": "slack", "webhook_url": f"{receivers.url}/slack/T/B/oncall"},
                    ],
                },
                "deployers": {"kind": "deployers", "timeframe": "immediate"},
            },
            "deployers": {
                "acme": {
                    "name": "ACME Bank",
                    "channels": [
                        {"type": "teams", "webhook_url": f"{receivers.url}/teams/acme?sig=S"}
                    ],
                }
            },
        }
    }


def test_serve_halt_notifies_after_answering_and_shows_who_acknowledged(
    tmp_path: Path, receivers: Receivers
) -> None:
    settings = local_settings(tmp_path)
    notifier = open_notifier(settings, parse_policy(_policy(receivers)).notify)
    notifier.start()
    # PagerDuty is slow today: the halt must not wait for it.
    receivers.plan("/v2/enqueue", Planned(0, delay=4.0))
    with running_serve(tmp_path, settings, listeners=[NotifyListener(notifier)]) as serve:
        assert serve.wait_active(True)
        with serve.client("halter") as c:
            started = time.monotonic()
            response = c.post(
                "/v1/halt",
                json={
                    "reason": "approval rates drifted",
                    "business_continuity": True,
                    "severity": "critical",
                },
            )
            answered = time.monotonic() - started
        assert response.status_code == 200, response.text
        sid = response.json()["suspension_id"]
        assert answered < 4.0
        # PagerDuty (slow) and Slack got the halt; the deployer its notice.
        assert wait_until(lambda: receivers.pd_incidents == [f"breakglass/{sid}/on-call"])
        assert receivers.wait_for("/slack/T/B/oncall", 1)
        assert receivers.wait_for("/teams/acme", 1)
        assert receivers.at("/v2/enqueue")[0].json()["payload"]["severity"] == "critical"
        slack = receivers.at("/slack/")[0].json()
        assert "*Who*\ntoken:halter-1" in [f["text"] for f in slack["blocks"][1]["fields"]]

        with serve.client("viewer") as c:
            assert wait_until(
                lambda: (
                    c.get(f"/v1/notifications/{sid}").json()["groups"][0]["delivered_at"]
                    is not None
                )
            )
            groups = {g["group"]: g for g in c.get(f"/v1/notifications/{sid}").json()["groups"]}
            assert set(groups) == {"on-call", "deployers"}
            assert groups["on-call"]["sent_at"] is not None
            assert groups["on-call"]["acknowledged_at"] is None
            ack = c.post(f"/v1/notifications/{sid}/ack", json={"group": "on-call"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["new"] is True
            unknown = c.post(f"/v1/notifications/{sid}/ack", json={"group": "nobody"})
            assert unknown.status_code == 404
            groups = {g["group"]: g for g in c.get(f"/v1/notifications/{sid}").json()["groups"]}
            assert groups["on-call"]["acknowledged_by"] == "token:viewer-1"
            assert groups["on-call"]["acknowledged_via"] == "console"

        _public_then_resume(serve, sid, receivers)
    notifier.close()


@contextmanager
def _serving(tmp_path: Path, receivers: Receivers) -> Iterator[Running]:
    """serve on the local provider with the notification chain of :func:`_policy`."""
    settings = local_settings(tmp_path)
    notifier = open_notifier(settings, parse_policy(_policy(receivers)).notify)
    notifier.start()
    try:
        with running_serve(tmp_path, settings, listeners=[NotifyListener(notifier)]) as serve:
            assert serve.wait_active(True)
            yield serve
    finally:
        notifier.close()


def _console(serve: Running, role: str) -> tuple[httpx.Client, httpx.Response]:
    """A logged-in console client and its first page."""
    c = httpx.Client(base_url=serve.url, timeout=30.0, follow_redirects=False)
    form = c.get("/login")
    nonce = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    c.post(
        "/login", data={"token": serve.tokens[role], "csrf": nonce}, headers={"Origin": serve.url}
    )
    return c, c.get("/")


def _public_then_resume(serve: Running, sid: str, receivers: Receivers) -> None:
    # Without a token: 401 for the API, but the public status page answers.
    with closing(httpx.Client(base_url=serve.url)) as anonymous:
        assert anonymous.get(f"/v1/notifications/{sid}").status_code == 401
        doc = anonymous.get("/notify/status/acme.json").json()
        assert doc["status"] == "suspended"
        assert doc["suspension_id"] == sid
    with serve.client("approver") as c:
        assert c.post("/v1/resume", json={"reason": "fixed"}).status_code == 200
    assert wait_until(lambda: not receivers.pd_alerts)
    assert receivers.at("/v2/enqueue")[-1].json()["event_action"] == "resolve"


def test_console_shows_the_groups_and_acknowledges(tmp_path: Path, receivers: Receivers) -> None:
    with _serving(tmp_path, receivers) as serve:
        with serve.client("halter") as c:
            sid = c.post("/v1/halt", json={"reason": "console test"}).json()["suspension_id"]
        assert receivers.wait_for("/slack/", 1)
        c, page = _console(serve, "viewer")
        with closing(c):
            assert 'id="notifications"' in page.text
            assert 'Acknowledge<span class="visually-hidden"> for on-call</span>' in page.text
            csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            done = c.post(
                "/console/notify/ack",
                data={"csrf": csrf, "suspension_id": sid, "group": "on-call"},
                headers={"Origin": serve.url},
            )
            assert done.status_code == 303
            page = c.get("/")
            assert "by token:viewer-1 (console)" in page.text
            assert 'visually-hidden"> for on-call' not in page.text


def test_the_console_stop_form_carries_the_severity(tmp_path: Path, receivers: Receivers) -> None:
    with _serving(tmp_path, receivers) as serve:
        c, page = _console(serve, "halter")
        with closing(c):
            assert '<select id="severity" name="severity">' in page.text
            csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            bad = c.post(
                "/console/halt",
                data={"csrf": csrf, "reason": "x", "severity": "apocalyptic"},
                headers={"Origin": serve.url},
            )
            assert "Choose a listed severity." in bad.text
            assert serve.server.bridge.engine.active
            done = c.post(
                "/console/halt",
                data={"csrf": csrf, "reason": "drift", "severity": "low"},
                headers={"Origin": serve.url},
            )
            assert done.status_code == 200
        assert wait_until(lambda: receivers.pd_incidents)
        assert receivers.at("/v2/enqueue")[0].json()["payload"]["severity"] == "info"


def test_a_halt_that_reached_no_target_pages_on_call(tmp_path: Path, receivers: Receivers) -> None:
    with _serving(tmp_path, receivers) as serve:
        local = serve.server.bridge.settings.local_file
        local.unlink()
        local.mkdir()  # every write of the flag fails: NOT HALTED
        with serve.client("halter") as c:
            assert c.post("/v1/halt", json={"reason": "it is misbehaving"}).status_code == 503
        assert receivers.wait_for("/slack/T/B/oncall", 1)
        title = receivers.at("/slack/")[0].json()["blocks"][0]["text"]["text"]
        assert title.startswith("NOT HALTED: the halt of Credit scoring failed")
        assert wait_until(lambda: receivers.pd_incidents)
        assert receivers.at("/v2/enqueue")[0].json()["payload"]["severity"] == "critical"
        assert not receivers.at("/teams/")  # deployers are not told of a halt that did not happen
