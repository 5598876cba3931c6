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
        c, csrf = serve.console("viewer")
        with closing(c):
            page = c.get("/")
            assert 'id="notifications"' in page.text
            assert 'Acknowledge<span class="visually-hidden"> for on-call</span>' in page.text
            done = c.post(
                "/console/notify/ack",
                data={"csrf": csrf, "suspension_id": sid, "group": "on-call"},
                headers={"Origin": serve.url},
            )
            assert done.status_code == 303
            page = c.get("/")
            assert "by token:viewer-1 (console)" in page.text
            assert 'visually-hidden"> for on-call' not in page.text


def test_the_console_acknowledge_is_refused_as_the_other_console_forms(
    tmp_path: Path, receivers: Receivers
) -> None:
    """Who may not send it is refused before the form is looked at, with the halt form's answer."""
    with _serving(tmp_path, receivers) as serve:
        with serve.client("halter") as h:
            sid = h.post("/v1/halt", json={"reason": "console test"}).json()["suspension_id"]
        notifier = serve.server.services.extra["notifier"]
        c, csrf = serve.console("halter")

        def post(url: str, form: dict[str, str], token: str, origin: str) -> httpx.Response:
            return c.post(url, data={"csrf": token, **form}, headers={"Origin": origin})

        def both(csrf_sent: str = csrf, origin: str = serve.url, group: str = "on-call") -> int:
            ack = post(
                "/console/notify/ack", {"suspension_id": sid, "group": group}, csrf_sent, origin
            )
            halt = post("/console/halt", {"reason": ""}, csrf_sent, origin)
            assert ack.status_code == halt.status_code, (ack.text, halt.text)
            assert (ack.json()["type"], ack.json()["detail"]) == (
                halt.json()["type"],
                halt.json()["detail"],
            )
            return ack.status_code

        with closing(c):
            assert both(csrf_sent="not-the-token") == 403
            assert both(origin="https://evil.example") == 403
            unknown = post(
                "/console/notify/ack", {"suspension_id": sid, "group": "nobody"}, csrf, serve.url
            )
            assert unknown.status_code == 404
            with serve.client("admin") as admin:
                ended = admin.post("/v1/sessions/revocations", json={"person": "halter-1"})
                assert ended.status_code == 200, ended.text
            assert wait_until(lambda: c.get("/v1/status").status_code == 401)
            # Ended: refused as every console form is, whatever the form says.
            assert both() == 401
            assert both(group="nobody") == 401
        assert notifier.outbox.acks(sid) == []


def test_the_console_stop_form_carries_the_severity(tmp_path: Path, receivers: Receivers) -> None:
    with _serving(tmp_path, receivers) as serve:
        c, csrf = serve.console("halter")
        with closing(c):
            assert '<select id="severity" name="severity">' in c.get("/").text
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
