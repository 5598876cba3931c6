"""Microsoft Teams through a Workflows webhook, as an Adaptive Card.

Office 365 connectors are retired; a Workflows flow ("post to a channel when
a webhook request is received") takes ``{"type": "message", "attachments":
[Adaptive Card]}`` and answers 202 *before* the flow runs, so 202 is recorded
as accepted, never as delivered. 4xx is never retried; 429 and 5xx are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.notify.channels.base import Delivery, Outgoing
from breakglass.notify.channels.http import HttpSession, TransportError, classify

if TYPE_CHECKING:
    from breakglass.notify.config import TeamsChannel

CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def card(out: Outgoing) -> dict[str, Any]:
    """The webhook body: one Adaptive Card (1.4) with the title, the facts and link buttons."""
    message = out.message
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.title,
            "weight": "Bolder",
            "size": "Large",
            "wrap": True,
            "color": "Good" if message.title.startswith("RESUMED") else "Attention",
        },
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]},
    ]
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in message.body]
    if message.test:
        body.append(
            {
                "type": "TextBlock",
                "text": "Test of the notification chain: no action needed.",
                "isSubtle": True,
                "wrap": True,
            }
        )
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": label, "url": url} for label, url in message.links
        ],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": content}],
    }


class TeamsSender:
    """Posts to one Teams Workflows webhook."""

    def __init__(self, config: TeamsChannel, http: HttpSession) -> None:
        self._config = config
        self._http = http

    def __repr__(self) -> str:
        return "TeamsSender()"

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Post the card; 2xx is recorded as accepted (the flow runs later)."""
        url = self._config.webhook_url.get_secret_value()
        try:
            response = self._http.request("POST", url, json=card(out), timeout=timeout)
        except TransportError as exc:
            return exc.as_delivery()
        return classify(response, "Teams", accepted=True)
