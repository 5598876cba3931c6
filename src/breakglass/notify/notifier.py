"""The notification chain's entry point: what serve (or the CLI) calls on halt, resume and ack.

:meth:`Notifier.halted` picks the groups whose conditions match the halt,
stores one outbox row per channel (and the groups' acknowledgement
deadlines) in one transaction, wakes the sender and returns: it never
sends, so a halt never waits for a notification. :meth:`Notifier.resumed`
stores the matching resolves and "resumed" messages. Acknowledgements come
from the console, signed links and PagerDuty webhooks; :meth:`Notifier.status`
shows, per group, when it was sent, delivered and acknowledged.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.notify.ack import (
    AckError,
    PagerDutyAck,
    ack_link,
    dedup_key,
    read_pagerduty_webhook,
    verify_ack,
    verify_pagerduty_signature,
)
from breakglass.notify.config import Conditions, GroupKind, NotifyPolicy, Severity
from breakglass.notify.event import EventKind, SuspensionEvent
from breakglass.notify.outbox import DONE_STATES, Ack, NewNotification, Notification, Outbox
from breakglass.notify.render import next_update_at
from breakglass.notify.worker import ESCALATION_PREFIX, OutboxWorker

if TYPE_CHECKING:
    from datetime import datetime

    from breakglass.audit.recorder import AuditRecorder
    from breakglass.notify.channels.http import HttpSession
    from breakglass.notify.config import Group
    from breakglass.settings import Settings

logger = logging.getLogger("breakglass.notify")


def matches(when: Conditions, event: SuspensionEvent) -> bool:
    """Whether a group's conditions hold for a halt."""
    if (
        when.personal_data_affected is not None
        and when.personal_data_affected != event.personal_data_affected
    ):
        return False
    if (
        when.business_continuity is not None
        and when.business_continuity != event.business_continuity
    ):
        return False
    return not when.severity or event.severity in when.severity


def _ts(value: float | None) -> str | None:
    from datetime import UTC, datetime

    return None if value is None else isoformat_ms(datetime.fromtimestamp(value, UTC))


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """Where one notification stands."""

    id: str
    event: str
    channel: str
    type: str
    deployer: str | None
    state: str
    attempts: int
    stored_at: str | None
    first_attempt_at: str | None
    done_at: str | None
    last_status: int | None
    detail: str | None
    response_id: str | None


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """Per group: sent, delivered, acknowledged, and when (what the console shows)."""

    group: str
    kind: str
    sent_at: str | None
    delivered_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    acknowledged_via: str | None
    due_at: str | None
    deadline: str | None
    """``waiting``, ``acknowledged``, ``escalated`` or ``closed`` (resumed)."""
    undelivered: int
    """Notifications given up on (NOT DELIVERED)."""
    channels: list[ChannelStatus] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


class Notifier:
    """The notification chain of one process. Thread-safe.

    Args:
        policy: The ``[notify]`` policy.
        outbox: Where notifications are stored.
        recorder: Receives an audit record per delivery attempt.
        http: The HTTP client (one is made when not given).
        clock: Wall clock (halt times, deadlines).
        parallelism: Notifications sent at once.
        poll_interval: Seconds between looks at the outbox for rows stored elsewhere.
        flag_key: The flag a halt turns off (named in every message).
    """

    def __init__(  # noqa: PLR0913 -- each is the caller's to give
        self,
        policy: NotifyPolicy,
        outbox: Outbox,
        *,
        recorder: AuditRecorder | None = None,
        http: HttpSession | None = None,
        clock: Clock = SYSTEM_CLOCK,
        parallelism: int = 16,
        poll_interval: float = 0.5,
        flag_key: str = "system-active",
    ) -> None:
        from breakglass.notify.channels.http import HttpSession

        self.flag_key = flag_key
        self.policy = policy
        self.outbox = outbox
        self._clock = clock
        self._own_http = http is None
        self._http = http or HttpSession()
        self.worker = OutboxWorker(
            outbox,
            policy,
            self._http,
            recorder=recorder,
            ack_link=self.ack_link,
            escalate=self.escalation_rows,
            clock=clock,
            parallelism=parallelism,
            poll_interval=poll_interval,
        )

    def __repr__(self) -> str:
        return f"Notifier(groups={sorted(self.policy.groups)}, outbox={self.outbox!r})"

    def start(self) -> None:
        """Start sending (rows stored before, by this or a crashed process, go first)."""
        self.worker.start()
        self.worker.wake()

    def close(self, timeout: float = 5.0) -> None:
        """Stop sending; rows not yet delivered stay in the outbox for the next start."""
        self.worker.stop(timeout)
        if self._own_http:
            self._http.close()

    # ------------------------------------------------------------------ events

    def halted(  # noqa: PLR0913 -- the halt request's fields
        self,
        *,
        suspension_id: str,
        actor: str,
        reason: str,
        since: datetime,
        severity: Severity | str | None = None,
        personal_data_affected: bool = False,
        business_continuity: bool = False,
        incident: str | None = None,
        flag_key: str = "system-active",
    ) -> list[str]:
        """Store the halt's notifications and wake the sender; return the groups told.

        Call it after the halt was answered; it only writes rows (milliseconds).
        """
        event = SuspensionEvent(
            kind=EventKind.HALT,
            suspension_id=suspension_id,
            actor=actor,
            reason=reason,
            since=isoformat_ms(since),
            at=isoformat_ms(since),
            severity=Severity(severity) if severity else self.policy.default_severity,
            personal_data_affected=personal_data_affected,
            business_continuity=business_continuity,
            incident=incident,
            flag_key=flag_key,
        )
        groups = [name for name, g in self.policy.groups.items() if matches(g.when, event)]
        rows = [row for name in groups for row in self._rows(event, name)]
        base = since.timestamp()
        deadlines = [
            (suspension_id, name, base + self.policy.groups[name].deadline.total_seconds())
            for name in groups
        ]
        self.outbox.enqueue(
            rows,
            now=self._clock.now().timestamp(),
            deadlines=deadlines,
            event=(suspension_id, EventKind.HALT.value, base, event.to_json()),
        )
        self.worker.wake()
        return groups

    def halt_failed(
        self, *, suspension_id: str, actor: str, reason: str, at: datetime
    ) -> list[str]:
        """Page every on-call group: a halt was asked for and no target acknowledged it.

        Conditions do not apply: whoever pressed stop needs help now. Returns the groups told.
        """
        return self._page_on_call(
            EventKind.HALT_FAILED, suspension_id, actor, reason, at, "halt-failed"
        )

    def ungated_resume(
        self, *, suspension_id: str, actor: str, reason: str, at: datetime, seq: str
    ) -> list[str]:
        """Page every on-call group: the flag was turned back on outside the resumption gate.

        ``seq`` tells one ungated resume of a suspension from the next (each is
        its own incident); the gated resume resolves them with the halt's.
        """
        return self._page_on_call(
            EventKind.UNGATED_RESUME, suspension_id, actor, reason, at, f"ungated-{seq}"
        )

    def _page_on_call(
        self,
        kind: EventKind,
        suspension_id: str,
        actor: str,
        reason: str,
        at: datetime,
        key: str,
    ) -> list[str]:
        event = SuspensionEvent(
            kind=kind,
            suspension_id=suspension_id,
            actor=actor,
            reason=reason,
            since=isoformat_ms(at),
            at=isoformat_ms(at),
            severity=Severity.CRITICAL,
            flag_key=self.flag_key,
        )
        groups = [n for n, g in self.policy.groups.items() if g.kind is GroupKind.ON_CALL]
        rows = [
            self._row(
                event,
                f"{suspension_id}/{key}/{name}/{c.id}",
                name,
                str(c.id),
                c.type,
                dedup_key(suspension_id, name, key),
            )
            for name in groups
            for c in self.policy.groups[name].channels
        ]
        self.outbox.enqueue(rows, now=self._clock.now().timestamp())
        self.worker.wake()
        return groups

    def resumed(self, *, suspension_id: str, actor: str, reason: str, at: datetime) -> int:
        """Store the resume's notifications (PagerDuty resolve, Opsgenie close, "resumed" messages).

        Every channel told of the halt (or of an escalation) is told of the
        resume; the groups' open deadlines end. Returns the rows stored.
        """
        told = [
            n
            for n in self.outbox.notifications(suspension_id)
            if n.event in (EventKind.HALT, EventKind.ESCALATION, EventKind.UNGATED_RESUME)
        ]
        rows = []
        for source in told:
            stored = SuspensionEvent.from_json(source.context)
            event = stored.with_kind(
                EventKind.RESUME, actor=actor, reason=reason, at=isoformat_ms(at)
            )
            rows.append(
                NewNotification(
                    id=f"{suspension_id}/resume/{source.id.split('/', 1)[1]}",
                    suspension_id=suspension_id,
                    event=EventKind.RESUME.value,
                    group=source.group,
                    channel_id=source.channel_id,
                    channel_type=source.channel_type,
                    context=event.to_json(),
                    deployer=source.deployer,
                )
            )
        context = rows[0].context if rows else "{}"
        new = self.outbox.enqueue(
            rows,
            now=self._clock.now().timestamp(),
            event=(suspension_id, EventKind.RESUME.value, at.timestamp(), context),
            close_deadlines=suspension_id,
        )
        self.worker.wake()
        return new

    def test(self, group: str, *, actor: str, reason: str = "notification chain test") -> str:
        """Send a clearly marked test through every channel of ``group``; return its suspension id.

        Raises:
            KeyError: The policy has no such group.
        """
        if group not in self.policy.groups:
            raise KeyError(group)
        now = self._clock.now()
        suspension_id = f"test-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        event = SuspensionEvent(
            kind=EventKind.TEST,
            suspension_id=suspension_id,
            actor=actor,
            reason=reason,
            since=isoformat_ms(now),
            at=isoformat_ms(now),
            severity=Severity.LOW,
        )
        self.outbox.enqueue(self._rows(event, group), now=now.timestamp())
        self.worker.wake()
        return suspension_id

    def _rows(self, event: SuspensionEvent, name: str) -> list[NewNotification]:
        group = self.policy.groups[name]
        sid = event.suspension_id
        kind = event.kind.value
        if group.kind is GroupKind.DEPLOYERS:
            return [
                self._row(
                    event,
                    f"{sid}/{kind}/{name}/{d}/{c.id}",
                    name,
                    f"{d}/{c.id}",
                    c.type,
                    dedup_key(sid, name, d),
                    d,
                )
                for d, deployer in self.policy.deployers.items()
                for c in deployer.channels
            ]
        return [
            self._row(
                event, f"{sid}/{kind}/{name}/{c.id}", name, str(c.id), c.type, dedup_key(sid, name)
            )
            for c in group.channels
        ]

    @staticmethod
    def _row(
        event: SuspensionEvent,
        row_id: str,
        group: str,
        channel_id: str,
        channel_type: str,
        key: str,
        deployer: str | None = None,
    ) -> NewNotification:
        context = SuspensionEvent(**{**asdict(event), "extra": {**event.extra, "dedup_key": key}})
        return NewNotification(
            id=row_id,
            suspension_id=event.suspension_id,
            event=event.kind.value,
            group=group,
            channel_id=channel_id,
            channel_type=channel_type,
            context=context.to_json(),
            deployer=deployer,
        )

    def escalation_rows(self, suspension_id: str, overdue: str) -> list[NewNotification]:
        """What is sent when ``overdue`` has not acknowledged: its escalation channels, its escalation groups."""
        halt = next(
            (
                n
                for n in self.outbox.notifications(suspension_id)
                if n.event == EventKind.HALT and n.group == overdue
            ),
            None,
        )
        if halt is None:
            return []
        source = SuspensionEvent.from_json(halt.context)
        event = source.with_kind(EventKind.ESCALATION, escalated_group=overdue, extra={})
        group: Group | None = self.policy.groups.get(overdue)
        if group is None:
            return []
        rows = [
            self._row(
                event,
                f"{suspension_id}/escalation/{overdue}/{c.id}",
                overdue,
                f"{ESCALATION_PREFIX}{c.id}",
                c.type,
                dedup_key(suspension_id, overdue, "escalation"),
            )
            for c in group.escalation_channels
        ]
        for target in group.escalate_to:
            rows += [
                self._row(
                    event,
                    f"{suspension_id}/escalation-of-{overdue}/{target}/{c.id}",
                    target,
                    str(c.id),
                    c.type,
                    dedup_key(suspension_id, target, f"escalation-of-{overdue}"),
                )
                for c in self.policy.groups[target].channels
            ]
        return rows

    # ------------------------------------------------------------------ acknowledgements

    def ack_link(self, suspension_id: str, group: str) -> str | None:
        """A signed, expiring acknowledgement link (``None`` without ``ack_secret`` and ``console_url``)."""
        secret = self.policy.ack_secret
        if secret is None or not self.policy.console_url:
            return None
        expires = int(self._clock.now().timestamp() + self.policy.ack_link_ttl.total_seconds())
        return ack_link(
            self.policy.console_url, secret.get_secret_value(), suspension_id, group, expires
        )

    def acknowledge(
        self, suspension_id: str, group: str, *, actor: str, via: str, detail: str | None = None
    ) -> bool:
        """Record that ``actor`` of ``group`` acknowledged; return whether it was new.

        Raises:
            AckError: The policy has no such group.
        """
        if group not in self.policy.groups:
            raise AckError(f"no group named {group!r} in the policy")
        return self.outbox.acknowledge(
            Ack(suspension_id, group, via, actor, self._clock.now().timestamp(), detail)
        )

    def verify_link(self, params: dict[str, str]) -> tuple[str, str]:
        """Check a signed link's parameters; return ``(suspension, group)``.

        Raises:
            AckError: Links are off, or the link is altered, incomplete or expired.
        """
        if self.policy.ack_secret is None:
            raise AckError("acknowledgement links are not configured (notify.ack_secret)")
        found = verify_ack(
            self.policy.ack_secret.get_secret_value(), params, self._clock.now().timestamp()
        )
        if found[1] not in self.policy.groups:
            raise AckError("the acknowledgement link names a group the policy no longer has")
        return found

    def pagerduty_webhook(self, body: bytes, signature: str | None) -> PagerDutyAck | None:
        """Handle a PagerDuty v3 webhook: verify, and record the acknowledgement it carries.

        Raises:
            AckError: The signature does not verify, or the body is not a v3 payload.
        """
        secrets_ = [s.get_secret_value() for s in self.policy.pagerduty_webhook_secrets]
        if not verify_pagerduty_signature(body, signature, secrets_):
            raise AckError("the PagerDuty webhook signature does not verify")
        found = read_pagerduty_webhook(body)
        if found is None or found.group not in self.policy.groups:
            return None
        self.acknowledge(
            found.suspension_id,
            found.group,
            actor=found.actor,
            via="pagerduty",
            detail=found.event_type,
        )
        return found

    # ------------------------------------------------------------------ reading

    def status(self, suspension_id: str) -> list[GroupStatus]:
        """Per group: sent, delivered, acknowledged and when; every notification's state."""
        rows = self.outbox.notifications(suspension_id)
        acks = self.outbox.acks(suspension_id)
        deadlines = {d.group: d for d in self.outbox.deadlines(suspension_id)}
        names = list(dict.fromkeys([*deadlines, *(r.group for r in rows)]))
        result = []
        for name in names:
            mine = [r for r in rows if r.group == name]
            first_ack = next((a for a in acks if a.group == name), None)
            deadline = deadlines.get(name)
            starts = [r.first_attempt_at for r in mine if r.first_attempt_at is not None]
            done = [r.done_at for r in mine if r.state in DONE_STATES and r.done_at is not None]
            group = self.policy.groups.get(name)
            result.append(
                GroupStatus(
                    group=name,
                    kind=group.kind.value if group else "unknown",
                    sent_at=_ts(min(starts)) if starts else None,
                    delivered_at=_ts(min(done)) if done else None,
                    acknowledged_at=_ts(first_ack.acked_at) if first_ack else None,
                    acknowledged_by=first_ack.actor if first_ack else None,
                    acknowledged_via=first_ack.via if first_ack else None,
                    due_at=_ts(deadline.due_at) if deadline else None,
                    deadline=deadline.state if deadline else None,
                    undelivered=sum(1 for r in mine if r.state == "failed"),
                    channels=[_channel_status(r) for r in mine],
                )
            )
        return result

    def deployer_status(self, deployer: str) -> dict[str, Any] | None:
        """The public status document of one deployer (``None``: no such deployer)."""
        entry = self.policy.deployers.get(deployer)
        if entry is None:
            return None
        notice = self.policy.deployer_notice
        doc: dict[str, Any] = {
            "deployer": deployer,
            "name": entry.name,
            "system": self.policy.system,
            "status": "operational",
            "suspension_id": None,
            "since": None,
            "resumed_at": None,
            "what_to_do": None,
            "next_update": None,
            "contact": entry.contact or notice.contact,
            "updated_at": isoformat_ms(self._clock.now()),
        }
        latest = self.outbox.latest_events(1)
        if not latest:
            return doc
        suspension_id, kind, at, context = latest[0]
        doc["suspension_id"] = suspension_id
        if kind == EventKind.HALT:
            event = SuspensionEvent.from_json(context)
            doc.update(
                status="suspended",
                since=event.since,
                what_to_do=notice.what_to_do,
                next_update=next_update_at(event, self.policy),
            )
        else:
            doc["resumed_at"] = _ts(at)
            try:
                doc["since"] = SuspensionEvent.from_json(context).since
            except (ValueError, KeyError, TypeError):
                doc["since"] = None
        return doc


def _channel_status(row: Notification) -> ChannelStatus:
    return ChannelStatus(
        id=row.id,
        event=row.event,
        channel=row.channel_id,
        type=row.channel_type,
        deployer=row.deployer,
        state=row.state,
        attempts=row.attempts,
        stored_at=_ts(row.created_at),
        first_attempt_at=_ts(row.first_attempt_at),
        done_at=_ts(row.done_at),
        last_status=row.last_status,
        detail=row.last_detail,
        response_id=row.response_id,
    )


def open_notifier(
    settings: Settings,
    policy: NotifyPolicy,
    *,
    recorder: AuditRecorder | None = None,
    **options: Any,
) -> Notifier:
    """A notifier whose outbox lives in the audit store the settings name (not started).

    Raises:
        ConfigurationError: The audit store settings are invalid.
    """
    from breakglass.audit.store import open_audit_store

    return Notifier(policy, Outbox(open_audit_store(settings)), recorder=recorder, **options)
