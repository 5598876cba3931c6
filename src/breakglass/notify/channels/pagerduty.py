"""PagerDuty Events API v2: one alert per suspension and group, resolved on resume.

``POST /v2/enqueue`` with the integration's routing key. A halt sends
``trigger`` with ``dedup_key`` = the suspension and group, so a retry (or a
second replica sending the same row) updates the same alert instead of paging
twice; the resume sends ``resolve`` with the same key. Answers: 202 accepted
(the body echoes the ``dedup_key``), 400 invalid (never retried), 429 and 5xx
retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.notify.channels.base import Delivery, Outcome, Outgoing
from breakglass.notify.channels.http import HttpSession, TransportError, classify
from breakglass.notify.config import Severity
from breakglass.notify.event import EventKind

if TYPE_CHECKING:
    from breakglass.notify.config import PagerDutyChannel

SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
}
"""Halt severity -> PagerDuty's ``payload.severity``."""

_SUMMARY_LIMIT = 1024


def event_body(out: Outgoing, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for ``out``."""
    if out.event.kind is EventKind.RESUME:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": out.dedup_key}
    message = out.message
    severity = "info" if out.event.kind is EventKind.TEST else SEVERITY[out.event.severity]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": out.dedup_key,
        "payload": {
            "summary": message.title[:_SUMMARY_LIMIT],
            "source": out.event.flag_key,
            "severity": severity,
            "timestamp": out.event.since,
            "component": "breakglass",
            "group": out.group,
            "class": out.event.kind.value,
            "custom_details": dict(message.facts),
        },
        "links": [{"href": url, "text": label} for label, url in message.links],
        "client": "breakglass",
        **(
            {"client_url": dict(message.links)["Console"]}
            if "Console" in dict(message.links)
            else {}
        ),
    }


class PagerDutySender:
    """Sends to one PagerDuty integration."""

    def __init__(self, config: PagerDutyChannel, http: HttpSession) -> None:
        self._config = config
        self._http = http

    def __repr__(self) -> str:
        return "PagerDutySender()"

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Trigger (halt, escalation, test) or resolve (resume) the suspension's alert."""
        body = event_body(out, self._config.routing_key.get_secret_value())
        try:
            response = self._http.request("POST", self._config.url, json=body, timeout=timeout)
        except TransportError as exc:
            return exc.as_delivery()
        result = classify(response, "PagerDuty", accepted=True)
        if result.outcome is Outcome.ACCEPTED:
            try:
                key = response.json().get("dedup_key")
            except ValueError:
                key = None
            return Delivery(result.outcome, result.status, key or out.dedup_key, result.detail)
        return result
