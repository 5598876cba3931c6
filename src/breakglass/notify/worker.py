"""The sender: claims due outbox rows and delivers them in parallel, retrying by the policy.

One loop thread claims what is due (woken at once when this process stores a
notification, else every ``poll_interval``) and hands each row to a pool of
sending threads, so a slow service never delays another. Each attempt is
recorded in the outbox (status, latency, the service's response id) and as
an audit record through the recorder; then the row is done, failed, or
scheduled again after an exponential backoff with jitter (or the service's
``Retry-After``, up to ``max_retry_after``). The same loop escalates groups
whose acknowledgement deadline passed.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import StoreError
from breakglass.notify.channels import Delivery, Outcome, Outgoing, Sender, build_sender
from breakglass.notify.event import SuspensionEvent
from breakglass.notify.outbox import FAILED, PENDING, Attempt, Notification
from breakglass.notify.render import deployer_message, operator_message
from breakglass.retry import RetryPolicy
from breakglass.wording import agrees, counted

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from breakglass.audit.recorder import AuditRecorder
    from breakglass.notify.channels.http import HttpSession
    from breakglass.notify.config import Channel, DeliveryPolicy, NotifyPolicy
    from breakglass.notify.outbox import NewNotification, Outbox

logger = logging.getLogger("breakglass.notify")

ESCALATION_PREFIX = "escalation/"
ATTEMPT_EVENT_TYPE = "notification-attempt"
_LEASE_MARGIN_S = 30.0
_RECLAIM_EVERY_S = 5.0


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs (a dead sender's leases can go at once)."""
    if pid <= 0:
        return True  # unknown: let the lease expire
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def channel_for(policy: NotifyPolicy, row: Notification) -> Channel | None:
    """The configured channel a row is for, or ``None`` when the policy no longer has it."""
    if row.deployer is not None:
        deployer = policy.deployers.get(row.deployer)
        wanted = row.channel_id.split("/", 1)[-1]
        channels = deployer.channels if deployer else []
    else:
        group = policy.groups.get(row.group)
        if group is None:
            return None
        if row.channel_id.startswith(ESCALATION_PREFIX):
            wanted = row.channel_id.removeprefix(ESCALATION_PREFIX)
            channels = group.escalation_channels
        else:
            wanted = row.channel_id
            channels = group.channels
    return next((c for c in channels if c.id == wanted), None)


def retry_policy(delivery: DeliveryPolicy) -> RetryPolicy:
    """The core's backoff for a delivery policy (the attempts and the give-up time are the outbox's)."""
    return RetryPolicy(
        attempts=delivery.max_attempts,
        budget=delivery.give_up_after.total_seconds(),
        base_delay=delivery.first_delay.total_seconds(),
        max_delay=delivery.max_delay.total_seconds(),
        max_retry_after=delivery.max_retry_after.total_seconds(),
    )


class OutboxWorker:
    """Delivers the outbox. Start it with :meth:`start`; :meth:`wake` after storing rows.

    Args:
        outbox: The rows.
        policy: The ``[notify]`` policy (channels, delivery, links).
        http: The shared HTTP client.
        recorder: Receives an audit record per attempt (optional).
        ack_link: ``(suspension, group) -> signed link`` for messages (optional).
        escalate: ``(suspension, group) -> notifications`` for overdue groups.
        clock: Wall clock for schedules.
        parallelism: Notifications sent at once.
        poll_interval: Seconds between looks at the outbox when not woken
            (rows stored by another process or replica, retries coming due).
    """

    def __init__(  # noqa: PLR0913 -- each is the caller's to give
        self,
        outbox: Outbox,
        policy: NotifyPolicy,
        http: HttpSession,
        *,
        recorder: AuditRecorder | None = None,
        ack_link: Callable[[str, str], str | None] | None = None,
        escalate: Callable[[str, str], Sequence[NewNotification]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        parallelism: int = 16,
        poll_interval: float = 0.5,
    ) -> None:
        self.outbox = outbox
        self.policy = policy
        self._http = http
        self._recorder = recorder
        self._ack_link = ack_link
        self._escalate = escalate
        self._clock = clock
        self._parallelism = parallelism
        self._poll = poll_interval
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._senders: dict[str, Sender] = {}
        self._senders_lock = threading.Lock()
        self._cond = threading.Condition()
        self._inflight = 0
        self._woken = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._store_failing = False
        self._host = socket.gethostname()
        self._next_reclaim = 0.0

    def __repr__(self) -> str:
        return f"OutboxWorker({self.worker_id!r})"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the loop and the sending threads (idempotent)."""
        if self._thread is not None:
            return
        self._pool = ThreadPoolExecutor(self._parallelism, thread_name_prefix="breakglass-notify")
        self._thread = threading.Thread(
            target=self._run, name="breakglass-notify-loop", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (this process just stored something)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming, wait up to ``timeout`` s for sends in flight (their rows are retried later otherwise)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread = None
        self._pool = None

    def idle(self) -> bool:
        """Whether nothing is being sent right now."""
        with self._cond:
            return self._inflight == 0

    # ------------------------------------------------------------------ the loop

    def _lease(self) -> float:
        longest = max(
            [self.policy.delivery.timeout.total_seconds()]
            + [
                c.delivery.timeout.total_seconds()
                for g in self.policy.groups.values()
                for c in [*g.channels, *g.escalation_channels]
                if c.delivery is not None
            ]
        )
        return longest + _LEASE_MARGIN_S

    def _horizon(self) -> float:
        """The furthest ahead any policy schedules a retry (beyond it: the clock stepped back)."""
        policies = [self.policy.delivery] + [
            c.delivery
            for g in self.policy.groups.values()
            for c in [*g.channels, *g.escalation_channels]
            if c.delivery is not None
        ]
        return max(max(p.max_delay, p.max_retry_after).total_seconds() for p in policies) + 60.0

    def _run(self) -> None:
        lease = self._lease()
        while True:
            with self._cond:
                if self._stopping:
                    return
                free = self._parallelism - self._inflight
                self._woken = False
            claimed = self._cycle(free, lease)
            with self._cond:
                if not claimed and not self._woken and not self._stopping:
                    self._cond.wait(self._poll)

    def _cycle(self, free: int, lease: float) -> int:
        now = self._clock.now().timestamp()
        rows: list[Notification] = []
        try:
            if time.monotonic() >= self._next_reclaim:
                self._next_reclaim = time.monotonic() + _RECLAIM_EVERY_S
                freed = self.outbox.reclaim(self._host, _alive, now=now)
                if freed:
                    logger.warning(
                        "%s of a stopped sender on this host %s again",
                        counted(freed, "notification"),
                        agrees(freed, "goes", "go"),
                    )
            if self._escalate is not None:
                escalated = self.outbox.escalate_due(now=now, limit=20, build=self._escalate)
                for suspension_id, group in escalated:
                    logger.warning(
                        "escalating %s: %s did not acknowledge in time", suspension_id, group
                    )
            if free > 0:
                rows = self.outbox.claim(
                    self.worker_id, now=now, lease_s=lease, limit=free, horizon_s=self._horizon()
                )
        except Exception as exc:
            # Unusable (down, a grant missing): log once, keep trying (rows wait in the store).
            # A store's own error is one line naming what to fix; anything else gets its traceback.
            if not self._store_failing:
                known = isinstance(exc, StoreError)
                logger.log(
                    logging.ERROR,
                    "notification outbox unusable; retrying: %s",
                    exc,
                    exc_info=not known,
                )
            self._store_failing = True
            return 0
        self._store_failing = False
        pool = self._pool
        if pool is None:
            return 0
        for row in rows:
            with self._cond:
                self._inflight += 1
            pool.submit(self._deliver_and_release, row)
        return len(rows)

    def _deliver_and_release(self, row: Notification) -> None:
        try:
            self.deliver(row)
        except Exception:
            logger.exception("delivering notification %s failed unexpectedly", row.id)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    # ------------------------------------------------------------------ one delivery

    def _sender(self, row: Notification, channel: Channel) -> Sender:
        key = f"{row.group}|{row.deployer}|{row.channel_id}"
        with self._senders_lock:
            sender = self._senders.get(key)
            if sender is None:
                sender = build_sender(channel, self._http)
                self._senders[key] = sender
            return sender

    def outgoing(self, row: Notification, event: SuspensionEvent) -> Outgoing:
        """The message a row sends (built from the stored event and the current policy)."""
        if row.deployer is not None:
            message = deployer_message(event, self.policy, row.deployer)
        else:
            link = self._ack_link(event.suspension_id, row.group) if self._ack_link else None
            message = operator_message(event, self.policy, group=row.group, ack_url=link)
        key = str(event.extra.get("dedup_key") or row.id)
        return Outgoing(row.id, event, row.group, message, key)

    def deliver(self, row: Notification) -> Attempt:
        """Try one claimed row once; record the attempt and schedule what follows."""
        started = self._clock.now().timestamp()
        t0 = time.monotonic()
        channel = channel_for(self.policy, row)
        delivery_policy = (channel.delivery if channel else None) or self.policy.delivery
        if channel is None:
            result = Delivery(Outcome.FAILED, detail="the policy no longer has this channel")
        else:
            try:
                event = SuspensionEvent.from_json(row.context)
                out = self.outgoing(row, event)
                result = self._sender(row, channel).send(
                    out, delivery_policy.timeout.total_seconds()
                )
            except Exception as exc:
                logger.exception("channel %s/%s raised", row.group, row.channel_id)
                result = Delivery(Outcome.RETRY, detail=f"unexpected {type(exc).__name__}")
        latency_ms = (time.monotonic() - t0) * 1000
        state, next_at, detail = self._next(
            row, result, delivery_policy, started + latency_ms / 1000
        )
        attempt = Attempt(
            outbox_id=row.id,
            suspension_id=row.suspension_id,
            attempt=row.attempts,
            started_at=started,
            latency_ms=round(latency_ms, 3),
            status=result.status,
            outcome=result.outcome.value,
            response_id=result.response_id,
            detail=detail,
            worker=self.worker_id,
        )
        held = self.outbox.finish(attempt, state=state, next_attempt_at=next_at)
        if not held:
            logger.info("notification %s was taken over by another worker meanwhile", row.id)
        self._record(row, attempt, state)
        if state == FAILED:
            logger.error(
                "NOT DELIVERED: %s to %s/%s: %s", row.event, row.group, row.channel_id, detail
            )
        return attempt

    def _next(
        self, row: Notification, result: Delivery, policy: DeliveryPolicy, now: float
    ) -> tuple[str, float | None, str]:
        if result.outcome.done:
            return result.outcome.value, None, result.detail
        if result.outcome is Outcome.FAILED:
            return FAILED, None, result.detail
        retry = retry_policy(policy)
        wait = retry.delay(row.attempts)
        if result.retry_after is not None:
            wait = max(wait, min(result.retry_after, retry.max_retry_after))
        give_up_at = row.created_at + policy.give_up_after.total_seconds()
        if row.attempts >= policy.max_attempts:
            return FAILED, None, f"gave up after {row.attempts} attempts: {result.detail}"
        if now + wait > give_up_at:
            return FAILED, None, f"gave up after {policy.give_up_after}: {result.detail}"
        return PENDING, now + wait, result.detail

    def _record(self, row: Notification, attempt: Attempt, state: str) -> None:
        if self._recorder is None:
            return
        moment = self._clock.now()
        try:
            event = SuspensionEvent.from_json(row.context)
            flag_key = event.flag_key
        except (ValueError, KeyError, TypeError):
            flag_key = "system-active"
        self._recorder.record(
            AuditRecord(
                provider="breakglass",
                vendor_event_id=f"notify:{row.id}:{attempt.attempt}",
                vendor_event_type=ATTEMPT_EVENT_TYPE,
                flag_key=flag_key,
                action=Action.OTHER,
                occurred_at=moment,
                pulled_at=moment,
                actor=Actor(
                    kind=ActorKind.SYSTEM, id=self.worker_id, name="breakglass notifications"
                ),
                comment=(
                    f"{row.event} notification to {row.group}/{row.channel_id} ({row.channel_type}):"
                    f" {attempt.outcome} {attempt.status or ''}".rstrip()
                ),
                raw={
                    "kind": "notification-attempt",
                    "outbox_id": row.id,
                    "suspension_id": row.suspension_id,
                    "event": row.event,
                    "group": row.group,
                    "channel": row.channel_id,
                    "channel_type": row.channel_type,
                    "deployer": row.deployer,
                    "attempt": attempt.attempt,
                    "status": attempt.status,
                    "outcome": attempt.outcome,
                    "state": state,
                    "latency_ms": attempt.latency_ms,
                    "response_id": attempt.response_id,
                    "detail": attempt.detail,
                    "worker": attempt.worker,
                },
            )
        )
