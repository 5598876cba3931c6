"""Generic webhooks, signed per Standard Webhooks, the body a CloudEvents 1.0 envelope.

Headers ``webhook-id`` (the outbox row's id: the same on every retry, so the
receiver deduplicates by it), ``webhook-timestamp`` and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of id.timestamp.body>``), made by the
``standardwebhooks`` package. 2xx is delivered; 429 and 5xx are retried; any
other 4xx is not (410 means the receiver wants no more: remove it from the
policy). ``docs/notifications.md`` shows the receiver's verification.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, isoformat_ms
from breakglass.notify.channels.base import Delivery, Outgoing
from breakglass.notify.channels.http import HttpSession, TransportError, classify

if TYPE_CHECKING:
    from breakglass.notify.config import WebhookChannel

EVENT_TYPE_PREFIX = "org.breakglass.notify."


def envelope(out: Outgoing) -> dict[str, Any]:
    """The CloudEvents 1.0 (structured mode) body."""
    event = out.event
    return {
        "specversion": "1.0",
        "id": out.outbox_id,
        "source": "breakglass",
        "type": EVENT_TYPE_PREFIX + event.kind.value,
        "subject": event.suspension_id,
        "time": isoformat_ms(SYSTEM_CLOCK.now()),
        "datacontenttype": "application/json",
        "data": {
            "kind": event.kind.value,
            "test": out.message.test,
            "drill": out.message.drill,
            "suspension_id": event.suspension_id,
            "group": out.group,
            "title": out.message.title,
            "facts": dict(out.message.facts),
            "links": dict(out.message.links),
            "actor": event.actor,
            "reason": event.reason,
            "since": event.since,
            "at": event.at,
            "severity": event.severity.value,
            "personal_data_affected": event.personal_data_affected,
            "business_continuity": event.business_continuity,
            "incident": event.incident,
            "flag_key": event.flag_key,
        },
    }


class WebhookSender:
    """Posts signed events to one receiver."""

    def __init__(self, config: WebhookChannel, http: HttpSession) -> None:
        from standardwebhooks.webhooks import Webhook

        self._config = config
        self._http = http
        self._signer = Webhook(config.secret.get_secret_value())

    def __repr__(self) -> str:
        return "WebhookSender()"

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Sign and post the event."""
        body = json.dumps(envelope(out), separators=(",", ":"), sort_keys=True).encode()
        now = SYSTEM_CLOCK.now()
        headers = {
            **self._config.headers,
            "content-type": "application/cloudevents+json",
            "webhook-id": out.outbox_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(out.outbox_id, now, body),
        }
        url = self._config.url.get_secret_value()
        try:
            response = self._http.request(
                "POST", url, content=body, headers=headers, timeout=timeout
            )
        except TransportError as exc:
            return exc.as_delivery()
        result = classify(response, "webhook")
        if result.outcome.done:
            return Delivery(result.outcome, result.status, out.outbox_id, result.detail)
        return result
