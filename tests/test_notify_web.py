"""Acknowledgements (signed links, PagerDuty v3 webhooks), deployer notices and status pages."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.notify.notifier import Notifier
from breakglass.notify.outbox import Outbox
from breakglass.notify.web import NotifyApp
from breakglass.policy import parse_policy
from breakglass.testing import ManualClock
from tests.notify_receivers import Receivers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live
PD_SECRET = "pd-webhook-signing-secret-0123456789"  # noqa: S105 -- the test's
ACK_SECRET = "a" * 48


@pytest.fixture
def notifier(tmp_path: Path, receivers: Receivers) -> Iterator[Notifier]:
    policy = parse_policy(
        {
            "notify": {
                "system": "Credit scoring",
                "console_url": "https://console.example.org",
                "ack_secret": ACK_SECRET,
                "pagerduty_webhook_secrets": ["old-secret-being-rotated-out", PD_SECRET],
                "delivery": {"first_delay": "100ms", "max_delay": "200ms", "timeout": "3s"},
                "deployer_notice": {
                    "what_to_do": "Route applications to manual underwriting.",
                    "contact": "oversight@provider.example",
                    "next_update": "2h",
                },
                "groups": {
                    "on-call": {
                        "kind": "on-call",
                        "timeframe": "immediate",
                        "channels": [
                            {"type": "slack", "webhook_url": f"{receivers.url}/slack/T/B/oncall"}
                        ],
                    },
                    "deployers": {"kind": "deployers", "timeframe": "immediate"},
                },
                "deployers": {
                    "acme-bank": {
                        "name": "ACME Bank",
                        "contact": "Jane Roe, +49 30 1234567",
                        "channels": [
                            {"type": "slack", "webhook_url": f"{receivers.url}/slack/T/B/acme"}
                        ],
                    }
                },
            }
        }
    ).notify
    n = Notifier(policy, Outbox(SqliteAuditStore(tmp_path / "audit.db")))
    yield n
    n.close()


def _call(app: NotifyApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://console.example.org"
        ) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def _link(notifier: Notifier, group: str = "on-call") -> dict[str, str]:
    link = notifier.ack_link("s-1", group)
    assert link is not None
    assert link.startswith("https://console.example.org/notify/ack?")
    return dict(parse_qsl(urlsplit(link).query))


def test_signed_link_opens_a_page_and_only_the_post_acknowledges(notifier: Notifier) -> None:
    app = NotifyApp(notifier)
    params = _link(notifier)
    page = _call(app, "GET", "/notify/ack", params=params)
    assert page.status_code == 200
    assert "Acknowledge the halt of Credit scoring" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert notifier.outbox.acks("s-1") == []  # a preview fetching the link acknowledges nothing
    done = _call(app, "POST", "/notify/ack", data={**params, "name": "Bob <b>"})
    assert done.status_code == 200
    assert "Bob &lt;b&gt;" in done.text
    (ack,) = notifier.outbox.acks("s-1")
    assert (ack.group, ack.via, ack.actor) == ("on-call", "link", "link:Bob <b>")


@pytest.mark.parametrize(
    "tamper",
    [
        {"g": "deployers"},
        {"s": "s-2"},
        {"e": str(int(time.time()) + 10**6)},
        {"sig": "0" * 64},
    ],
)
def test_an_altered_link_is_refused(notifier: Notifier, tamper: dict[str, str]) -> None:
    params = {**_link(notifier), **tamper}
    response = _call(NotifyApp(notifier), "POST", "/notify/ack", data=params)
    assert response.status_code == 403
    assert "signature is not valid" in response.text
    assert notifier.outbox.acks("s-1") == []


def test_an_expired_link_is_refused(tmp_path: Path, notifier: Notifier) -> None:
    clock = ManualClock()
    early = Notifier(notifier.policy, notifier.outbox, clock=clock)
    params = _link(early)
    clock.advance(timedelta(hours=25).total_seconds())
    late = Notifier(notifier.policy, notifier.outbox, clock=clock)
    response = _call(NotifyApp(late), "GET", "/notify/ack", params=params)
    assert response.status_code == 403
    assert "expired" in response.text


def _pd_body(event_type: str, key: str) -> bytes:
    return json.dumps(
        {
            "event": {
                "id": "01DEN3VTQAVD4XKZ1RD6E48EHW",
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": "2026-12-05T10:01:02.345Z",
                "agent": {"id": "PLH1HKV", "summary": "Tenex Engineer", "type": "user_reference"},
                "client": {"name": "PagerDuty"},
                "data": {
                    "id": "PGR0VU2",
                    "type": "incident",
                    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                    "status": "acknowledged",
                    "incident_key": key,
                    "title": "HALTED: Credit scoring is suspended",
                },
            }
        }
    ).encode()


def _sign(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_pagerduty_webhook_acknowledges_when_signed(notifier: Notifier) -> None:
    body = _pd_body("incident.acknowledged", "breakglass/s-1/on-call")
    signature = f"{_sign(body, 'some-other-secret')},{_sign(body, PD_SECRET)}"
    response = _call(
        NotifyApp(notifier),
        "POST",
        "/notify/pagerduty",
        content=body,
        headers={"X-PagerDuty-Signature": signature},
    )
    assert response.status_code == 200
    assert response.json() == {"acknowledged": True, "group": "on-call"}
    (ack,) = notifier.outbox.acks("s-1")
    assert (ack.via, ack.actor, ack.detail) == (
        "pagerduty",
        "pagerduty:Tenex Engineer",
        "incident.acknowledged",
    )


@pytest.mark.parametrize("signature", [None, "v1=" + "0" * 64, "v0=abc"])
def test_pagerduty_webhook_with_a_bad_signature_is_refused(
    notifier: Notifier, signature: str | None
) -> None:
    body = _pd_body("incident.acknowledged", "breakglass/s-1/on-call")
    headers = {"X-PagerDuty-Signature": signature} if signature else {}
    response = _call(
        NotifyApp(notifier), "POST", "/notify/pagerduty", content=body, headers=headers
    )
    assert response.status_code == 401
    assert notifier.outbox.acks("s-1") == []


def test_pagerduty_webhook_about_something_else_is_ignored(notifier: Notifier) -> None:
    for body in (
        _pd_body("incident.triggered", "breakglass/s-1/on-call"),
        _pd_body("incident.acknowledged", "someone-elses-key"),
    ):
        response = _call(
            NotifyApp(notifier),
            "POST",
            "/notify/pagerduty",
            content=body,
            headers={"X-PagerDuty-Signature": _sign(body, PD_SECRET)},
        )
        assert response.json()["acknowledged"] is False
    assert notifier.outbox.acks("s-1") == []


def _wait_for(receivers: Receivers, prefix: str, n: int) -> list[Any]:
    return [r.json() for r in receivers.wait_for(prefix, n)]


def test_deployer_notice_and_status_page_on_halt_and_resume(
    notifier: Notifier, receivers: Receivers
) -> None:
    app = NotifyApp(notifier)
    before = _call(app, "GET", "/notify/status/acme-bank.json").json()
    assert before["status"] == "operational"
    since = datetime(2026, 12, 5, 9, 58, 3, tzinfo=UTC)
    notifier.start()
    assert notifier.halted(
        suspension_id="s-7", actor="ana", reason="internal reason, not public", since=since
    ) == ["on-call", "deployers"]
    (notice,) = _wait_for(receivers, "/slack/T/B/acme", 1)
    text = notice["text"]
    assert notice["blocks"][0]["text"]["text"] == "Service suspended: Credit scoring"
    assert "Dear ACME Bank," in text
    assert "suspended since 2026-12-05 09:58:03 UTC" in text
    assert "What you should do: Route applications to manual underwriting." in text
    assert "Next update: by 2026-12-05 11:58 UTC" in text
    assert "Contact: Jane Roe, +49 30 1234567" in text
    assert "https://console.example.org/notify/status/acme-bank" in text
    assert "internal reason" not in text
    doc = _call(app, "GET", "/notify/status/acme-bank.json").json()
    assert doc["status"] == "suspended"
    assert doc["since"] == "2026-12-05T09:58:03.000Z"
    assert doc["next_update"] == "2026-12-05T11:58:03Z"
    assert "internal reason" not in json.dumps(doc)
    page = _call(app, "GET", "/notify/status/acme-bank")
    assert "Credit scoring is suspended" in page.text
    assert _call(app, "GET", "/notify/status/nobody.json").status_code == 404

    notifier.resumed(
        suspension_id="s-7", actor="carla", reason="fixed", at=since + timedelta(hours=1)
    )
    notices = _wait_for(receivers, "/slack/T/B/acme", 2)
    assert notices[1]["blocks"][0]["text"]["text"] == "Service restored: Credit scoring"
    assert "has been resumed at 2026-12-05 10:58:03 UTC" in notices[1]["text"]
    after = _call(app, "GET", "/notify/status/acme-bank.json").json()
    assert after["status"] == "operational"
    assert after["resumed_at"] == "2026-12-05T10:58:03.000Z"
