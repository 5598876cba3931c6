"""The notification channels, one module each, behind one :class:`Sender` protocol.

* :mod:`~.pagerduty` — PagerDuty Events API v2
* :mod:`~.opsgenie` — Opsgenie Alert API (ends 5 April 2027)
* :mod:`~.slack` — Slack incoming webhooks (Block Kit)
* :mod:`~.teams` — Microsoft Teams Workflows webhooks (Adaptive Card)
* :mod:`~.smtp` — e-mail over SMTP
* :mod:`~.webhook` — generic webhooks signed per Standard Webhooks
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.notify.channels.base import Delivery, Outcome, Outgoing, Sender

if TYPE_CHECKING:
    from breakglass.notify.channels.http import HttpSession
    from breakglass.notify.config import Channel

__all__ = ["Delivery", "Outcome", "Outgoing", "Sender", "build_sender"]


def build_sender(config: Channel, http: HttpSession) -> Sender:
    """The sender for one configured channel."""
    match config.type:
        case "pagerduty":
            from breakglass.notify.channels.pagerduty import PagerDutySender

            return PagerDutySender(config, http)
        case "opsgenie":
            from breakglass.notify.channels.opsgenie import OpsgenieSender

            return OpsgenieSender(config, http)
        case "slack":
            from breakglass.notify.channels.slack import SlackSender

            return SlackSender(config, http)
        case "teams":
            from breakglass.notify.channels.teams import TeamsSender

            return TeamsSender(config, http)
        case "email":
            from breakglass.notify.channels.smtp import EmailSender

            return EmailSender(config)
        case "webhook":
            from breakglass.notify.channels.webhook import WebhookSender

            return WebhookSender(config, http)
