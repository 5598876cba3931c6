"""Each channel against a local receiver that answers as the real service does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from breakglass.notify.channels import Outcome, Outgoing, build_sender
from breakglass.notify.channels.http import HttpSession
from breakglass.notify.config import NotifyPolicy
from breakglass.notify.event import EventKind, SuspensionEvent
from breakglass.notify.render import operator_message
from breakglass.policy import parse_policy
from tests.notify_receivers import GENIE_KEY, ROUTING_KEY, WEBHOOK_SECRET, Planned, Receivers

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live


@pytest.fixture
def http() -> Iterator[HttpSession]:
    session = HttpSession()
    yield session
    session.close()


def _policy(channel: dict[str, Any]) -> NotifyPolicy:
    return parse_policy(
        {
            "notify": {
                "system": "Credit scoring",
                "console_url": "https://console.example.org",
                "groups": {
                    "on-call": {"kind": "on-call", "timeframe": "immediate", "channels": [channel]}
                },
            }
        }
    ).notify


def _event(kind: EventKind = EventKind.HALT) -> SuspensionEvent:
    return SuspensionEvent(
        kind=kind,
        suspension_id="s-1",
        actor="ana@example.org",
        reason="drift in approval rates",
        since="2026-12-05T09:58:03.120Z",
        at="2026-12-05T09:58:03.120Z",
    )


def _send(
    channel: dict[str, Any],
    http: HttpSession,
    kind: EventKind = EventKind.HALT,
    timeout: float = 5.0,
) -> Any:
    policy = _policy(channel)
    config = policy.groups["on-call"].channels[0]
    event = _event(kind)
    message = operator_message(
        event, policy, group="on-call", ack_url="https://console.example.org/notify/ack?x=1"
    )
    out = Outgoing("s-1/halt/on-call/x", event, "on-call", message, "breakglass/s-1/on-call")
    return build_sender(config, http).send(out, timeout)


def _pd(receivers: Receivers) -> dict[str, Any]:
    return {"type": "pagerduty", "routing_key": ROUTING_KEY, "url": f"{receivers.url}/v2/enqueue"}


def test_pagerduty_trigger_then_resolve_by_dedup_key(
    receivers: Receivers, http: HttpSession
) -> None:
    result = _send(_pd(receivers), http)
    assert result.outcome is Outcome.ACCEPTED
    assert result.status == 202
    assert result.response_id == "breakglass/s-1/on-call"
    sent = receivers.at("/v2/enqueue")[0].json()
    assert sent["event_action"] == "trigger"
    assert sent["payload"]["severity"] == "error"  # high
    assert sent["payload"]["custom_details"]["Who"] == "ana@example.org"
    assert (ROUTING_KEY, "breakglass/s-1/on-call") in receivers.pd_alerts
    # A retry of the same trigger does not open a second incident.
    _send(_pd(receivers), http)
    assert receivers.pd_incidents == ["breakglass/s-1/on-call"]
    resolved = _send(_pd(receivers), http, EventKind.RESUME)
    assert resolved.outcome is Outcome.ACCEPTED
    assert receivers.at("/v2/enqueue")[-1].json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "breakglass/s-1/on-call",
    }
    assert not receivers.pd_alerts


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome", "retry_after"),
    [
        (
            400,
            '{"status":"invalid event","message":"Event object is invalid","errors":["x"]}',
            {},
            Outcome.FAILED,
            None,
        ),
        (401, "", {}, Outcome.FAILED, None),
        (403, "", {}, Outcome.FAILED, None),
        (404, "", {}, Outcome.FAILED, None),
        (410, "", {}, Outcome.FAILED, None),
        (
            429,
            '{"status":"throttle event","message":"Requests for this service are arriving too quickly."}',
            {"Retry-After": "7"},
            Outcome.RETRY,
            7.0,
        ),
        (500, "", {}, Outcome.RETRY, None),
        (502, "", {}, Outcome.RETRY, None),
        (503, "", {}, Outcome.RETRY, None),
    ],
)
def test_pagerduty_answers_follow_the_delivery_policy(
    receivers: Receivers,
    http: HttpSession,
    status: int,
    body: str,
    headers: dict[str, str],
    outcome: Outcome,
    retry_after: float | None,
) -> None:
    receivers.plan("/v2/enqueue", Planned(status, body, dict(headers)))
    result = _send(_pd(receivers), http)
    assert result.outcome is outcome
    assert result.status == status
    assert result.retry_after == retry_after


def test_a_slow_answer_is_a_retryable_timeout(receivers: Receivers, http: HttpSession) -> None:
    receivers.plan("/v2/enqueue", Planned(0, delay=2.0))
    result = _send(_pd(receivers), http, timeout=0.5)
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert "within 0.5 s" in result.detail


def test_an_invalid_trigger_is_refused_by_the_receiver_and_never_retried(
    receivers: Receivers, http: HttpSession
) -> None:
    bad = {**_pd(receivers), "routing_key": "short"}
    result = _send(bad, http)
    assert result.outcome is Outcome.FAILED
    assert result.status == 400
    assert "routing_key" in result.detail


def test_unreachable_service_is_retryable_and_names_only_the_host(http: HttpSession) -> None:
    secret_url = "http://127.0.0.1:9/slack/T000/B000/SECRETPART"  # noqa: S105 -- a made-up one
    result = _send({"type": "slack", "webhook_url": secret_url}, http)
    assert result.outcome is Outcome.RETRY
    assert "SECRETPART" not in result.detail
    assert "127.0.0.1:9" in result.detail


def test_slack_block_kit_says_what_who_why_since_and_links(
    receivers: Receivers, http: HttpSession
) -> None:
    result = _send({"type": "slack", "webhook_url": f"{receivers.url}/slack/T0/B0/x"}, http)
    assert result.outcome is Outcome.DELIVERED
    body = receivers.at("/slack/")[0].json()
    assert body["blocks"][0]["type"] == "header"
    assert body["blocks"][0]["text"]["text"] == "HALTED: Credit scoring is suspended"
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*What*\nCredit scoring (flag system-active)" in fields
    assert "*Who*\nana@example.org" in fields
    assert "*Why*\ndrift in approval rates" in fields
    assert "*Since*\n2026-12-05 09:58:03 UTC" in fields
    buttons = {e["text"]["text"]: e["url"] for e in body["blocks"][-1]["elements"]}
    assert buttons == {
        "Console": "https://console.example.org",
        "Acknowledge": "https://console.example.org/notify/ack?x=1",
    }
    assert "drift in approval rates" in body["text"]


@pytest.mark.parametrize(
    ("status", "word", "outcome"),
    [
        (400, "invalid_payload", Outcome.FAILED),
        (403, "action_prohibited", Outcome.FAILED),
        (404, "channel_not_found", Outcome.FAILED),
        (410, "channel_is_archived", Outcome.FAILED),
        (429, "rate_limited", Outcome.RETRY),
        (500, "rollup_error", Outcome.RETRY),
        (200, "no_service", Outcome.FAILED),
    ],
)
def test_slack_errors(
    receivers: Receivers, http: HttpSession, status: int, word: str, outcome: Outcome
) -> None:
    receivers.plan(
        "/slack/T0/B0/x", Planned(status, word, {"Retry-After": "1"} if status == 429 else {})
    )
    result = _send({"type": "slack", "webhook_url": f"{receivers.url}/slack/T0/B0/x"}, http)
    assert result.outcome is outcome
    assert word in result.detail
    if status == 429:
        assert result.retry_after == 1.0


def test_teams_adaptive_card_is_accepted_not_delivered(
    receivers: Receivers, http: HttpSession
) -> None:
    result = _send(
        {"type": "teams", "webhook_url": f"{receivers.url}/teams/workflows/abc?sig=SIG"}, http
    )
    assert result.outcome is Outcome.ACCEPTED
    body = receivers.at("/teams/")[0].json()
    assert body["type"] == "message"
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["body"][0]["text"] == "HALTED: Credit scoring is suspended"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Why"] == "drift in approval rates"
    assert [a["title"] for a in card["actions"]] == ["Console", "Acknowledge"]


def test_teams_4xx_is_never_retried(receivers: Receivers, http: HttpSession) -> None:
    receivers.plan(
        "/teams/workflows/abc", Planned(401, '{"error":{"code":"DirectApiAuthorizationRequired"}}')
    )
    result = _send(
        {"type": "teams", "webhook_url": f"{receivers.url}/teams/workflows/abc?sig=SIG"}, http
    )
    assert result.outcome is Outcome.FAILED
    assert "SIG" not in result.detail


def _og(receivers: Receivers, key: str = GENIE_KEY) -> dict[str, Any]:
    return {
        "type": "opsgenie",
        "api_key": key,
        "url": receivers.url,
        "responders": [{"type": "team", "name": "ml-platform"}],
    }


def test_opsgenie_create_is_confirmed_then_closed_by_alias(
    receivers: Receivers, http: HttpSession
) -> None:
    result = _send(_og(receivers), http)
    assert result.outcome is Outcome.DELIVERED
    assert "Created alert" in result.detail
    created = receivers.at("/v2/alerts")[0].json()
    assert created["alias"] == "breakglass/s-1/on-call"
    assert created["priority"] == "P2"
    assert created["responders"] == [{"type": "team", "name": "ml-platform"}]
    assert len(created["message"]) <= 130
    assert any(r.path.startswith("/v2/alerts/requests/") for r in receivers.requests)
    closed = _send(_og(receivers), http, EventKind.RESUME)
    assert closed.outcome is Outcome.DELIVERED
    assert not receivers.og_alerts


def test_opsgenie_wrong_key_is_never_retried(receivers: Receivers, http: HttpSession) -> None:
    result = _send(_og(receivers, "K3Y-0F-SOMEONE-ELSE"), http)
    assert result.outcome is Outcome.FAILED
    assert result.status == 401
    assert "K3Y-0F-SOMEONE-ELSE" not in result.detail


def test_opsgenie_202_without_confirmation_is_accepted(
    receivers: Receivers, http: HttpSession
) -> None:
    receivers.plan(
        "/v2/alerts",
        Planned(
            202, '{"result":"Request will be processed","took":0.1,"requestId":"never-processed"}'
        ),
    )
    result = _send(_og(receivers), http)
    assert result.outcome is Outcome.ACCEPTED
    assert result.response_id == "never-processed"


def test_webhook_is_signed_per_standard_webhooks_and_verified_by_the_receiver(
    receivers: Receivers, http: HttpSession
) -> None:
    channel = {"type": "webhook", "url": f"{receivers.url}/hook", "secret": WEBHOOK_SECRET}
    result = _send(channel, http)
    assert result.outcome is Outcome.DELIVERED
    assert result.response_id == "s-1/halt/on-call/x"
    event = receivers.webhook_events[0]
    assert event["specversion"] == "1.0"
    assert event["type"] == "org.breakglass.notify.halt"
    assert event["data"]["reason"] == "drift in approval rates"
    # The same row sent again carries the same webhook-id: the receiver keeps it once.
    _send(channel, http)
    assert len(receivers.webhook_events) == 1
    assert len(receivers.at("/hook")) == 2


def test_webhook_signed_with_another_secret_is_refused(
    receivers: Receivers, http: HttpSession
) -> None:
    channel = {"type": "webhook", "url": f"{receivers.url}/hook", "secret": "whsec_" + "QUJD" * 8}
    result = _send(channel, http)
    assert result.outcome is Outcome.FAILED
    assert result.status == 401
    assert not receivers.webhook_events


def test_test_messages_are_marked(receivers: Receivers, http: HttpSession) -> None:
    _send({"type": "slack", "webhook_url": f"{receivers.url}/slack/T0/B0/x"}, http, EventKind.TEST)
    body = receivers.at("/slack/")[0].json()
    assert body["blocks"][0]["text"]["text"].startswith("[TEST] ")
    assert "nothing is halted" in body["blocks"][0]["text"]["text"]
    assert "No action is needed" in body["text"]
