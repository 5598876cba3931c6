"""Acknowledgements: signed links, PagerDuty v3 webhooks, and the dedup keys they point back to.

* A **signed link** in an e-mail or a Slack message opens the console's
  acknowledge page for one suspension and group. It carries an expiry and an
  HMAC-SHA256 over ``suspension, group, expiry`` with the policy's
  ``ack_secret``; anything altered, expired or signed with another key is
  refused. Opening the link only shows the page: the acknowledgement is a
  POST from it, so a mail scanner or a chat preview that fetches the link
  acknowledges nothing.
* A **PagerDuty v3 webhook** (``incident.acknowledged`` or
  ``incident.resolved``) is trusted only when ``X-PagerDuty-Signature`` holds
  ``v1=<hex HMAC-SHA256 of the raw body>`` for one of the configured secrets;
  its ``incident_key`` is the ``dedup_key`` we sent, which names the
  suspension and the group.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from breakglass.errors import BreakglassError

DEDUP_PREFIX = "breakglass"
ACK_EVENTS = ("incident.acknowledged", "incident.resolved")


class AckError(BreakglassError):
    """An acknowledgement was refused (bad signature, expired link, unknown suspension)."""


def dedup_key(suspension_id: str, group: str, suffix: str | None = None) -> str:
    """The key a deduplicating service (PagerDuty, Opsgenie) files the alert under."""
    key = f"{DEDUP_PREFIX}/{suspension_id}/{group}"
    return f"{key}/{suffix}" if suffix else key


def parse_dedup_key(key: str) -> tuple[str, str] | None:
    """``(suspension, group)`` from a key made by :func:`dedup_key`, else ``None``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != DEDUP_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _mac(secret: str, suspension_id: str, group: str, expires: int) -> str:
    data = f"ack\n{suspension_id}\n{group}\n{expires}".encode()
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def ack_query(secret: str, suspension_id: str, group: str, expires: int) -> str:
    """The query string of a signed acknowledgement link."""
    sig = _mac(secret, suspension_id, group, expires)
    return urlencode({"s": suspension_id, "g": group, "e": str(expires), "sig": sig})


def ack_link(base: str, secret: str, suspension_id: str, group: str, expires: int) -> str:
    """The full link: ``<console>/notify/ack?s=…&g=…&e=…&sig=…``."""
    return f"{base}/notify/ack?{ack_query(secret, suspension_id, group, expires)}"


def verify_ack(secret: str, params: dict[str, str], now: float) -> tuple[str, str]:
    """Check a signed link's parameters; return ``(suspension, group)``.

    Raises:
        AckError: A parameter is missing, the signature is wrong, or the link expired.
    """
    try:
        suspension_id, group, expires_text, sig = (params[k] for k in ("s", "g", "e", "sig"))
        expires = int(expires_text)
    except (KeyError, ValueError):
        raise AckError("the acknowledgement link is incomplete") from None
    expected = _mac(secret, suspension_id, group, expires)
    if not hmac.compare_digest(expected, sig):
        raise AckError("the acknowledgement link's signature is not valid")
    if now > expires:
        raise AckError("the acknowledgement link has expired: acknowledge in the console")
    return suspension_id, group


def verify_pagerduty_signature(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """Whether ``X-PagerDuty-Signature`` holds a ``v1`` HMAC-SHA256 of ``body`` for one of ``secrets``."""
    if not header or not secrets:
        return False
    offered = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return True
    return False


@dataclass(frozen=True, slots=True)
class PagerDutyAck:
    """An acknowledgement read from a PagerDuty v3 webhook."""

    suspension_id: str
    group: str
    actor: str
    event_type: str
    event_id: str
    incident_url: str | None


def read_pagerduty_webhook(body: bytes) -> PagerDutyAck | None:
    """The acknowledgement in a v3 webhook body, or ``None`` when it is about something else.

    Raises:
        AckError: The body is not a v3 webhook payload.
    """
    try:
        payload: Any = json.loads(body)
        event = payload["event"]
        event_type = str(event["event_type"])
    except (ValueError, KeyError, TypeError):
        raise AckError("not a PagerDuty v3 webhook payload") from None
    if event_type not in ACK_EVENTS:
        return None
    data = event.get("data") or {}
    found = parse_dedup_key(str(data.get("incident_key") or ""))
    if found is None:
        return None
    agent = event.get("agent") or {}
    actor = str(agent.get("summary") or agent.get("id") or "PagerDuty")
    return PagerDutyAck(
        suspension_id=found[0],
        group=found[1],
        actor=f"pagerduty:{actor}",
        event_type=event_type,
        event_id=str(event.get("id") or ""),
        incident_url=data.get("html_url"),
    )
