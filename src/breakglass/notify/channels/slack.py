"""Slack incoming webhooks: a readable Block Kit message (what, who, why, since when, links).

Slack answers 200 with the body ``ok``; errors are a word in the body
(``invalid_payload`` 400, ``action_prohibited`` 403, ``channel_not_found``
404, ``channel_is_archived`` 410: never retried), 429 with ``Retry-After``
and 5xx are retried. Slack has no idempotency key: a retry after a lost
answer may post twice (at least once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.notify.channels.base import Delivery, Outcome, Outgoing
from breakglass.notify.channels.http import HttpSession, TransportError, classify, snippet

if TYPE_CHECKING:
    from breakglass.notify.config import SlackChannel

_HEADER_LIMIT = 150
_FIELD_LIMIT = 2000


def blocks(out: Outgoing) -> dict[str, Any]:
    """The webhook body: ``text`` (notifications, screen readers) and ``blocks`` (layout)."""
    message = out.message
    facts = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_escape(value)}"[:_FIELD_LIMIT]}
        for label, value in message.facts
    ]
    layout: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:_HEADER_LIMIT]}},
    ]
    # A section holds at most 10 fields.
    layout += [{"type": "section", "fields": facts[i : i + 10]} for i in range(0, len(facts), 10)]
    if message.body:
        layout.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _escape("\n".join(message.body))},
            }
        )
    if message.links:
        layout.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": label},
                        "url": url,
                        **({"style": "primary"} if label == "Acknowledge" else {}),
                    }
                    for label, url in message.links
                ],
            }
        )
    if message.test:
        layout.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Test of the notification chain: no action needed."}
                ],
            }
        )
    return {"text": message.text(), "blocks": layout}


def _escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSender:
    """Posts to one Slack incoming webhook."""

    def __init__(self, config: SlackChannel, http: HttpSession) -> None:
        self._config = config
        self._http = http

    def __repr__(self) -> str:
        return "SlackSender()"

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Post the message; ``ok`` is the only success."""
        url = self._config.webhook_url.get_secret_value()
        try:
            response = self._http.request("POST", url, json=blocks(out), timeout=timeout)
        except TransportError as exc:
            return exc.as_delivery()
        result = classify(response, "Slack")
        if result.outcome is Outcome.DELIVERED and response.text.strip() != "ok":
            return Delivery(
                Outcome.FAILED, result.status, detail=f"Slack answered {snippet(response)!r}"
            )
        return result
