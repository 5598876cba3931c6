"""Opsgenie Alert API: one alert per suspension and group (``alias``), closed on resume.

**Atlassian ended Opsgenie sales on 4 June 2025 and ends it on 5 April 2027**,
when its REST API stops. It is supported until then; plan the move to Jira
Service Management (Operations) or PagerDuty (``docs/notifications.md``).

``POST /v2/alerts`` answers 202 "will be processed asynchronously", which
does not mean it was: the request's status is then read from
``GET /v2/alerts/requests/{requestId}`` a few times. ``isSuccess: true``
is recorded as delivered; no answer yet as accepted; ``false`` as failed.
400/401/402/403/422 are never retried, 429 and 5xx are.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from breakglass.notify.channels.base import Delivery, Outcome, Outgoing
from breakglass.notify.channels.http import HttpSession, TransportError, classify
from breakglass.notify.config import Severity
from breakglass.notify.event import EventKind

if TYPE_CHECKING:
    from breakglass.notify.config import OpsgenieChannel

PRIORITY = {Severity.CRITICAL: "P1", Severity.HIGH: "P2", Severity.MEDIUM: "P3", Severity.LOW: "P4"}
_MESSAGE_LIMIT = 130
_DESCRIPTION_LIMIT = 15000
_STATUS_POLLS = 3
_STATUS_PAUSE_S = 0.3


def alert_body(out: Outgoing, config: OpsgenieChannel) -> dict[str, Any]:
    """The create-alert body for ``out``."""
    message = out.message
    priority = "P5" if out.event.kind is EventKind.TEST else PRIORITY[out.event.severity]
    return {
        "message": message.title[:_MESSAGE_LIMIT],
        "alias": out.dedup_key,
        "description": message.text()[:_DESCRIPTION_LIMIT],
        "responders": [r.model_dump(exclude_none=True) for r in config.responders],
        "tags": list(config.tags),
        "details": dict(message.facts),
        "entity": out.event.flag_key,
        "source": "breakglass",
        "priority": priority,
    }


class OpsgenieSender:
    """Sends to one Opsgenie API integration."""

    def __init__(self, config: OpsgenieChannel, http: HttpSession) -> None:
        self._config = config
        self._http = http

    def __repr__(self) -> str:
        return "OpsgenieSender()"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"GenieKey {self._config.api_key.get_secret_value()}"}

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Create the alert (halt, escalation, test) or close it by alias (resume)."""
        if out.event.kind is EventKind.RESUME:
            url = f"{self._config.url}/v2/alerts/{quote(out.dedup_key, safe='')}/close?identifierType=alias"
            body: dict[str, Any] = {
                "source": "breakglass",
                "user": out.event.actor,
                "note": out.message.title,
            }
        else:
            url = f"{self._config.url}/v2/alerts"
            body = alert_body(out, self._config)
        started = time.monotonic()
        try:
            response = self._http.request(
                "POST", url, json=body, headers=self._headers(), timeout=timeout
            )
        except TransportError as exc:
            return exc.as_delivery()
        result = classify(response, "Opsgenie", accepted=True)
        if result.outcome is not Outcome.ACCEPTED:
            return result
        try:
            request_id = str(response.json().get("requestId") or "")
        except ValueError:
            request_id = ""
        if not request_id:
            return Delivery(Outcome.ACCEPTED, result.status, None, result.detail)
        remaining = timeout - (time.monotonic() - started)
        return self._confirm(request_id, result.status, remaining)

    def _confirm(self, request_id: str, status: int | None, remaining: float) -> Delivery:
        """Read the request's status; 202 alone does not say the alert exists."""
        url = f"{self._config.url}/v2/alerts/requests/{quote(request_id, safe='')}"
        for _ in range(_STATUS_POLLS):
            if remaining <= _STATUS_PAUSE_S:
                break
            time.sleep(_STATUS_PAUSE_S)
            remaining -= _STATUS_PAUSE_S
            started = time.monotonic()
            try:
                response = self._http.request(
                    "GET", url, headers=self._headers(), timeout=remaining
                )
            except TransportError:
                break
            remaining -= time.monotonic() - started
            if response.status_code != 200:
                continue
            try:
                data = response.json().get("data") or {}
            except ValueError:
                break
            if data.get("isSuccess") is True:
                return Delivery(
                    Outcome.DELIVERED,
                    status,
                    request_id,
                    f"Opsgenie: {data.get('status', 'processed')}",
                )
            if data.get("isSuccess") is False:
                return Delivery(
                    Outcome.FAILED,
                    status,
                    request_id,
                    f"Opsgenie could not process it: {data.get('status', '')}",
                )
        return Delivery(
            Outcome.ACCEPTED,
            status,
            request_id,
            "Opsgenie answered 202 (processing not confirmed yet)",
        )
