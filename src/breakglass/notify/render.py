"""The words of every notification, once, for every channel to lay out in its own format.

A :class:`Message` is a title, labelled facts (what, who, why, since when…)
and links (the console, the signed acknowledgement link, the public status
page). Channels turn it into Block Kit, an Adaptive Card, an e-mail or JSON,
so every channel says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from breakglass.clock import parse_iso
from breakglass.notify.config import NotifyPolicy
from breakglass.notify.event import EventKind, SuspensionEvent

TEST_MARK = "[TEST]"
"""Prefix of every test notification's title: nobody must mistake a test for a halt."""
DRILL_MARK = "[DRILL]"
"""Prefix of every notification of a drill's halt and resume (``breakglass drill run``)."""
DRILL_INCIDENT_PREFIX = "DRILL-"
"""A halt whose incident reference starts with this is a drill: the drill halts with one."""


def is_drill(event: SuspensionEvent) -> bool:
    """Whether ``event`` belongs to a drill (its halt named a ``DRILL-…`` incident)."""
    return bool(event.incident and event.incident.startswith(DRILL_INCIDENT_PREFIX))


def _prefix(event: SuspensionEvent) -> str:
    if event.kind is EventKind.TEST:
        return f"{TEST_MARK} "
    return f"{DRILL_MARK} " if is_drill(event) else ""


@dataclass(frozen=True, slots=True)
class Message:
    """One notification's content, independent of the channel.

    Attributes:
        title: One line; starts with :data:`TEST_MARK` for a test.
        facts: Labelled values in reading order.
        links: Labelled URLs (console, acknowledge, status page).
        body: Plain-text paragraphs (the deployer notice's text).
        test: Whether this is a test.
    """

    title: str
    facts: tuple[tuple[str, str], ...]
    links: tuple[tuple[str, str], ...] = ()
    body: tuple[str, ...] = ()
    test: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    drill: bool = False

    def text(self) -> str:
        """The whole message as plain text (e-mail body, chat fallback)."""
        lines = [self.title, ""]
        lines += [f"{label}: {value}" for label, value in self.facts]
        if self.body:
            lines += ["", *self.body]
        if self.links:
            lines += ["", *(f"{label}: {url}" for label, url in self.links)]
        if self.test:
            lines += ["", "This is a test of the notification chain. No action is needed."]
        if self.drill:
            lines += [
                "",
                "This is a DRILL of the break-glass procedure: acknowledge as you would for a "
                "real halt; the drill measures how long it takes.",
            ]
        return "\n".join(lines) + "\n"


def _yes_no(value: bool) -> str:  # noqa: FBT001 -- a formatter
    return "yes" if value else "no"


def operator_message(
    event: SuspensionEvent,
    policy: NotifyPolicy,
    *,
    group: str,
    ack_url: str | None = None,
) -> Message:
    """The message for the people of the procedure (every group but the deployers)."""
    test = event.kind is EventKind.TEST
    prefix = _prefix(event)
    system = policy.system
    if event.kind is EventKind.RESUME:
        title = f"{prefix}RESUMED: {system} may run again"
    elif event.kind is EventKind.ESCALATION:
        title = (
            f"{prefix}ESCALATION: {event.escalated_group} has not acknowledged the halt of {system}"
        )
    elif event.kind is EventKind.HALT_FAILED:
        title = f"NOT HALTED: the halt of {system} failed; use the kill switch or the vendor's dashboard"
    elif event.kind is EventKind.UNGATED_RESUME:
        title = f"UNGATED RESUME: {system} was turned back on outside the resumption gate"
    elif test:
        title = f"{prefix}{system}: test of the notification chain (nothing is halted)"
    else:
        title = f"{prefix}HALTED: {system} is suspended"
    what = f"{system} (flag {event.flag_key})"
    facts: list[tuple[str, str]] = [
        ("What", what),
        ("Who", event.actor),
        ("Why", event.reason),
        ("Since", event.since_text),
        ("Severity", event.severity.value),
        ("Personal data affected", _yes_no(event.personal_data_affected)),
        ("Business continuity", _yes_no(event.business_continuity)),
    ]
    if event.kind is EventKind.RESUME:
        facts.insert(3, ("Resumed", parse_iso(event.at).strftime("%Y-%m-%d %H:%M:%S UTC")))
    if event.incident:
        facts.append(("Incident", event.incident))
    facts.append(("Suspension", event.suspension_id))
    facts.append(("Group", group))
    links: list[tuple[str, str]] = []
    if policy.console_url:
        links.append(("Console", policy.console_url))
    if ack_url and event.kind is not EventKind.RESUME:
        links.append(("Acknowledge", ack_url))
    return Message(
        title=title, facts=tuple(facts), links=tuple(links), test=test, drill=is_drill(event)
    )


def status_url(policy: NotifyPolicy, deployer: str) -> str | None:
    """The deployer's public status page (HTML; ``.json`` for the document)."""
    base = policy.status_base
    return f"{base}/notify/status/{deployer}" if base else None


def deployer_message(event: SuspensionEvent, policy: NotifyPolicy, deployer: str) -> Message:
    """The deployer notice: what is suspended, since when, what to do, next update, contact."""
    entry = policy.deployers[deployer]
    notice = policy.deployer_notice
    contact = entry.contact or notice.contact
    test = event.kind is EventKind.TEST
    prefix = _prefix(event)
    since = parse_iso(event.since)
    body: tuple[str, ...]
    if event.kind is EventKind.RESUME:
        title = f"{prefix}Service restored: {policy.system}"
        body = (
            f"Dear {entry.name},",
            f"{policy.system} was suspended from {event.since_text} and has been resumed at "
            f"{parse_iso(event.at).strftime('%Y-%m-%d %H:%M:%S UTC')}, after the documented "
            "checks and approvals.",
            "You may use it again. Review any decisions you held back during the suspension.",
            f"Questions: {contact}.",
        )
        facts: tuple[tuple[str, str], ...] = (
            ("What", policy.system),
            ("Suspended since", event.since_text),
            ("Resumed", parse_iso(event.at).strftime("%Y-%m-%d %H:%M:%S UTC")),
            ("Contact", contact),
        )
    else:
        next_update = (since + notice.next_update).strftime("%Y-%m-%d %H:%M UTC")
        title = f"{prefix}Service suspended: {policy.system}"
        body = (
            f"Dear {entry.name},",
            f"{policy.system} has been suspended since {event.since_text} by its provider's "
            "human oversight (EU AI Act Art. 14(4)(e)). Requests are refused until it is resumed.",
            f"What you should do: {notice.what_to_do}",
            f"Next update: by {next_update}, or earlier when it is resumed.",
            f"Contact: {contact}.",
        )
        facts = (
            ("What", policy.system),
            ("Since", event.since_text),
            ("What to do", notice.what_to_do),
            ("Next update", next_update),
            ("Contact", contact),
        )
    url = status_url(policy, deployer)
    links = (("Status page", url),) if url else ()
    return Message(
        title=title, facts=facts, links=links, body=body, test=test, drill=is_drill(event)
    )


def next_update_at(event: SuspensionEvent, policy: NotifyPolicy) -> str:
    """When deployers were promised the next update (RFC 3339)."""
    moment = parse_iso(event.since) + policy.deployer_notice.next_update
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def within_text(delta: timedelta) -> str:
    """``4h``, ``15m``, ``90s``: a duration as the policy wrote it."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
