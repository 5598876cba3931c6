"""What every channel offers: send one notification, say what became of it.

A channel never raises for a delivery problem: it returns a :class:`Delivery`
whose :class:`Outcome` tells the outbox what to do next (done, retry later,
or never retry), following each service's documented answers
(``docs/notifications.md``, "Delivery policy").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from breakglass.notify.event import SuspensionEvent
    from breakglass.notify.render import Message


class Outcome(enum.StrEnum):
    """What became of one attempt."""

    DELIVERED = "delivered"
    """The service confirmed it has the message (Slack ``ok``, SMTP 250, webhook 2xx)."""
    ACCEPTED = "accepted"
    """The service queued it for processing (PagerDuty, Teams and Opsgenie answer 202)."""
    RETRY = "retry"
    """Not delivered, worth another try (429, 5xx, timeouts, refused connections)."""
    FAILED = "failed"
    """Not delivered, and retrying cannot help (400, 401/403, 404/410, bad configuration)."""

    @property
    def done(self) -> bool:
        """Whether the service has the notification."""
        return self in (Outcome.DELIVERED, Outcome.ACCEPTED)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of one attempt.

    Attributes:
        outcome: What the outbox does next.
        status: The HTTP status or SMTP reply code, when there was an answer.
        response_id: The service's own id for the message (dedup key,
            request id, queue id), for the record.
        detail: One line for people; never a secret.
        retry_after: Seconds the service asked us to wait (``Retry-After``).
    """

    outcome: Outcome
    status: int | None = None
    response_id: str | None = None
    detail: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification as a channel sends it.

    Attributes:
        outbox_id: The outbox row's id: stable across retries, so it is the
            idempotency key for receivers that deduplicate (``webhook-id``,
            the e-mail's ``Message-ID``).
        event: The halt, resume, escalation or test.
        group: The policy group it is for.
        message: The words (title, facts, links).
        dedup_key: The key the service deduplicates by (PagerDuty
            ``dedup_key``, Opsgenie ``alias``): one per suspension and group.
    """

    outbox_id: str
    event: SuspensionEvent
    group: str
    message: Message
    dedup_key: str


class Sender(Protocol):
    """**Protocol**: a configured channel. Called from the outbox's sending threads."""

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Try once to deliver ``out`` within ``timeout`` seconds; never raise for delivery problems."""
        ...
