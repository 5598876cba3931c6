"""The durable outbox: every notification is a row before it is a delivery.

Rows live in the audit store's database (the same SQLite file, or the same
PostgreSQL database shared by several serve replicas), through that store's
own connection handling. A row is unique by its id (``<suspension>/<event>/
<group>/<channel>``), so enqueueing twice, from two replicas or after a
crash, never sends twice from here.

Sending takes a **lease**: a claim marks due rows as taken by one worker until
``lease_until``. On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP
LOCKED``, so replicas never take the same row; on SQLite the claim is one
``BEGIN IMMEDIATE`` transaction. A worker killed mid-send (kill -9) leaves a
lease that simply expires: the row is sent again (at least once), with the
same dedup key, so services that deduplicate (PagerDuty, Opsgenie, webhook
receivers by ``webhook-id``) keep exactly one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.errors import AuditStoreError
from breakglass.notify.schema import LATEST, MIGRATIONS, VERSION_DDL, VERSION_TABLE

if TYPE_CHECKING:
    from breakglass.audit.store import AuditStore

logger = logging.getLogger("breakglass.notify")

PENDING = "pending"
DELIVERED = "delivered"
ACCEPTED = "accepted"
FAILED = "failed"
DONE_STATES = (DELIVERED, ACCEPTED)

_COLUMNS = (
    "id, suspension_id, event, group_name, channel_id, channel_type, deployer, context, state,"
    " attempts, created_at, first_attempt_at, done_at, last_status, last_detail, response_id"
)


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to store (and then send)."""

    id: str
    suspension_id: str
    event: str
    group: str
    channel_id: str
    channel_type: str
    context: str
    deployer: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A stored notification and where its delivery stands."""

    id: str
    suspension_id: str
    event: str
    group: str
    channel_id: str
    channel_type: str
    deployer: str | None
    context: str
    state: str
    attempts: int
    created_at: float
    first_attempt_at: float | None
    done_at: float | None
    last_status: int | None
    last_detail: str | None
    response_id: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to deliver one notification (kept for every try, success or not)."""

    outbox_id: str
    suspension_id: str
    attempt: int
    started_at: float
    latency_ms: float
    status: int | None
    outcome: str
    response_id: str | None
    detail: str
    worker: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Someone of a group said they have seen the halt."""

    suspension_id: str
    group: str
    via: str
    actor: str
    acked_at: float
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a group must have acknowledged, and whether it was escalated."""

    suspension_id: str
    group: str
    due_at: float
    state: str
    escalated_at: float | None


class _Tx:
    """One transaction on either driver, with ``?`` placeholders."""

    def __init__(self, handle: Any, *, postgres: bool) -> None:
        self._h = handle
        self.postgres = postgres

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            self._h.execute(sql.replace("?", "%s"), params)
            return list(self._h.fetchall()) if self._h.description else []
        return list(self._h.execute(sql, params).fetchall())

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        if self.postgres:
            total = 0
            for row in rows:
                self._h.execute(sql.replace("?", "%s"), row)
                total += max(0, self._h.rowcount)
            return total
        before = self._h.total_changes
        self._h.executemany(sql, rows)
        return int(self._h.total_changes - before)

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self.postgres:
            self._h.execute(sql.replace("?", "%s"), params)
            return max(0, int(self._h.rowcount))
        return max(0, int(self._h.execute(sql, params).rowcount))


class Outbox:
    """The notification tables of one audit store. Safe to share between threads.

    Args:
        store: The audit store (SQLite or PostgreSQL); its connections are used.
    """

    def __init__(self, store: AuditStore) -> None:
        from breakglass.audit.postgres import PostgresAuditStore
        from breakglass.audit.sqlite import SqliteAuditStore

        if not isinstance(store, SqliteAuditStore | PostgresAuditStore):
            raise TypeError(f"the outbox needs a SQLite or PostgreSQL audit store, not {store!r}")
        self.store = store
        self.postgres = isinstance(store, PostgresAuditStore)
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Outbox({self.store.location!r})"

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        if not self._ready:
            self.migrate()
        # The audit store's own transaction: BEGIN IMMEDIATE on SQLite, a
        # transaction on its (locked) connection on PostgreSQL.
        with self.store._tx() as handle:
            yield _Tx(handle, postgres=self.postgres)

    def migrate(self) -> int:
        """Create or upgrade the notification tables; return their version.

        Tables that are current are only read, so a runtime role without any
        right to create tables gets this far (``breakglass db migrate`` made them).
        """
        with self._lock:
            if self._ready:
                return LATEST
            with self.store._tx() as handle:
                current = self._version(_Tx(handle, postgres=self.postgres))
            if current < LATEST:
                self._upgrade()
            self._ready = True
            return LATEST

    def _version(self, tx: _Tx) -> int:
        """The tables' version (0: none yet), read without creating anything."""
        if self.postgres:
            exists = tx.run("SELECT to_regclass(?) IS NOT NULL", (VERSION_TABLE,))[0][0]
        else:
            exists = bool(
                tx.run(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (VERSION_TABLE,),
                )
            )
        if not exists:
            return 0
        (current,) = tx.run(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")[0]  # noqa: S608 -- a constant
        if int(current) > LATEST:
            raise AuditStoreError(
                f"notification tables in {self.store.location} have version {current}, "
                f"newer than this breakglass knows ({LATEST}): upgrade breakglass"
            )
        return int(current)

    def _upgrade(self) -> None:
        with self.store._tx() as handle:
            tx = _Tx(handle, postgres=self.postgres)
            if self.postgres:
                # Several hosts may start at once: one migrates, the others wait for it.
                tx.run("SELECT pg_advisory_xact_lock(hashtext('breakglass.notify'), 0)")
                if not tx.run("SELECT has_schema_privilege(current_schema(), 'CREATE')")[0][0]:
                    raise AuditStoreError(
                        f"notification tables in {self.store.location} are missing or old, and "
                        "this role may not create them: run `breakglass db migrate` once as the "
                        "database owner"
                    )
            tx.run(VERSION_DDL)
            current = self._version(tx)
            for version, description, sqlite, postgres in MIGRATIONS:
                if version <= current:
                    continue
                for statement in postgres if self.postgres else sqlite:
                    tx.run(statement)
                tx.run(
                    f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) VALUES (?, ?, ?)",  # noqa: S608
                    (version, description, 0.0),
                )

    # ------------------------------------------------------------------ writing

    def enqueue(
        self,
        notifications: Sequence[NewNotification],
        *,
        now: float,
        deadlines: Sequence[tuple[str, str, float]] = (),
        event: tuple[str, str, float, str] | None = None,
        close_deadlines: str | None = None,
    ) -> int:
        """Store notifications (ignoring ids already stored), deadlines and the event, in one transaction.

        Args:
            notifications: The rows to store.
            now: Epoch seconds; they are due at once.
            deadlines: ``(suspension, group, due_at)`` acknowledgement deadlines.
            event: ``(suspension, kind, at, context)`` for the status pages.
            close_deadlines: A suspension whose open deadlines end (it resumed).

        Returns:
            How many notifications were new.
        """
        with self._tx() as tx:
            new = tx.many(_INSERT, [_values(n, now) for n in notifications])
            tx.many(
                "INSERT INTO notify_deadlines (suspension_id, group_name, due_at, state)"
                " VALUES (?, ?, ?, 'waiting') ON CONFLICT (suspension_id, group_name) DO NOTHING",
                list(deadlines),
            )
            if event is not None:
                tx.run(
                    "INSERT INTO notify_events (suspension_id, event, at, context) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (suspension_id, event) DO NOTHING",
                    event,
                )
            if close_deadlines is not None:
                tx.run(
                    "UPDATE notify_deadlines SET state = 'closed'"
                    " WHERE suspension_id = ? AND state = 'waiting'",
                    (close_deadlines,),
                )
        return new

    def claim(
        self, worker: str, *, now: float, lease_s: float, limit: int, horizon_s: float = 86400.0
    ) -> list[Notification]:
        """Take up to ``limit`` due rows for ``worker`` until ``now + lease_s``.

        A resume is held back while the halt of the same group and channel is
        still pending, so a PagerDuty resolve never overtakes its trigger.
        A retry scheduled, or a lease held, further ahead than ``horizon_s``
        (resp. ``lease_s``) cannot have been set by any policy: the wall clock
        was stepped back since, and the row is due now rather than after the step.
        """
        lock = " FOR UPDATE OF o SKIP LOCKED" if self.postgres else ""
        params = (now, now + horizon_s, now, now + lease_s, limit)
        with self._tx() as tx:
            ids = [row[0] for row in tx.run(_CLAIM + lock, params)]
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            tx.run(_LEASE + marks + ")", (now + lease_s, worker, now, *ids))
            rows = tx.run(f"SELECT {_COLUMNS} FROM notify_outbox WHERE id IN ({marks})", ids)  # noqa: S608
        return sorted((_notification(r) for r in rows), key=lambda n: ids.index(n.id))

    def reclaim(self, host: str, alive: Callable[[int], bool], *, now: float) -> int:
        """Release the leases of this host's dead workers (kill -9), so their rows go again now.

        A worker id is ``host:pid:token``; a lease whose pid on ``host`` is no
        longer ``alive`` cannot be sending anything. Other hosts' leases just expire.
        """
        with self._tx() as tx:
            holders = tx.run(
                "SELECT DISTINCT leased_by FROM notify_outbox WHERE state = 'pending'"
                " AND lease_until > ? AND leased_by LIKE ?",
                (now, f"{host}:%"),
            )
            dead = [w for (w,) in holders if not alive(_pid(w))]
            freed = 0
            for worker in dead:
                freed += tx.count(
                    "UPDATE notify_outbox SET lease_until = NULL, leased_by = NULL"
                    " WHERE state = 'pending' AND leased_by = ?",
                    (worker,),
                )
        return freed

    def finish(self, attempt: Attempt, *, state: str, next_attempt_at: float | None) -> bool:
        """Record one attempt and the row's new state (``pending`` with ``next_attempt_at`` to retry).

        Returns:
            Whether this worker still held the row (a row whose lease expired
            and was taken by another worker is not overwritten; the attempt is
            kept all the same).
        """
        done_at = attempt.started_at + attempt.latency_ms / 1000 if state != PENDING else None
        with self._tx() as tx:
            tx.run(
                "INSERT INTO notify_attempts (outbox_id, suspension_id, attempt, started_at,"
                " latency_ms, status, outcome, response_id, detail, worker)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (attempt.outbox_id, attempt.suspension_id, attempt.attempt, attempt.started_at,
                 attempt.latency_ms, attempt.status, attempt.outcome, attempt.response_id,
                 attempt.detail, attempt.worker),
            )  # fmt: skip
            changed = tx.count(
                "UPDATE notify_outbox SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                " lease_until = NULL, leased_by = NULL, done_at = ?, last_status = ?,"
                " last_detail = ?, response_id = COALESCE(?, response_id)"
                " WHERE id = ? AND leased_by = ? AND attempts = ? AND state = 'pending'",
                (state, next_attempt_at, done_at, attempt.status, attempt.detail[:500],
                 attempt.response_id, attempt.outbox_id, attempt.worker, attempt.attempt),
            )  # fmt: skip
        return changed > 0

    def acknowledge(self, ack: Ack) -> bool:
        """Store an acknowledgement and end the group's deadline; return whether it was new."""
        with self._tx() as tx:
            new = tx.count(
                "INSERT INTO notify_acks (suspension_id, group_name, via, actor, acked_at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (suspension_id, group_name, via, actor)"
                " DO NOTHING",
                (ack.suspension_id, ack.group, ack.via, ack.actor, ack.acked_at, ack.detail),
            )
            tx.run(
                "UPDATE notify_deadlines SET state = 'acknowledged'"
                " WHERE suspension_id = ? AND group_name = ? AND state = 'waiting'",
                (ack.suspension_id, ack.group),
            )
        return new > 0

    def escalate_due(
        self,
        *,
        now: float,
        limit: int,
        build: Callable[[str, str], Sequence[NewNotification]],
    ) -> list[tuple[str, str]]:
        """Mark overdue, unacknowledged deadlines escalated and store their notifications, atomically.

        Args:
            now: Epoch seconds.
            limit: At most this many deadlines at once.
            build: ``(suspension, group) -> notifications`` to store for each.

        Returns:
            The ``(suspension, group)`` pairs escalated.
        """
        # Built outside any transaction (``build`` reads the outbox), then set
        # compare-and-swap: of several replicas, exactly one escalates a group.
        with self._tx() as tx:
            due = tx.run(
                "SELECT d.suspension_id, d.group_name FROM notify_deadlines d"
                " WHERE d.state = 'waiting' AND d.due_at <= ? AND NOT EXISTS (SELECT 1 FROM"
                " notify_acks a WHERE a.suspension_id = d.suspension_id AND a.group_name = d.group_name)"
                " ORDER BY d.due_at LIMIT ?",
                (now, limit),
            )
        escalated: list[tuple[str, str]] = []
        for suspension_id, group in due:
            rows = build(suspension_id, group)
            with self._tx() as tx:
                won = tx.count(
                    "UPDATE notify_deadlines SET state = 'escalated', escalated_at = ?"
                    " WHERE suspension_id = ? AND group_name = ? AND state = 'waiting'"
                    " AND NOT EXISTS (SELECT 1 FROM notify_acks a WHERE"
                    " a.suspension_id = notify_deadlines.suspension_id"
                    " AND a.group_name = notify_deadlines.group_name)",
                    (now, suspension_id, group),
                )
                if won:
                    tx.many(_INSERT, [_values(n, now) for n in rows])
            if won:
                escalated.append((str(suspension_id), str(group)))
        return escalated

    # ------------------------------------------------------------------ reading

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._tx() as tx:
            return tx.run(sql, params)

    def notifications(self, suspension_id: str) -> list[Notification]:
        """Every notification of one suspension, in the order they were stored."""
        sql = (
            f"SELECT {_COLUMNS} FROM notify_outbox WHERE suspension_id = ? ORDER BY created_at, id"  # noqa: S608 -- a constant
        )
        return [_notification(r) for r in self._select(sql, (suspension_id,))]

    def knows(self, suspension_id: str) -> bool:
        """Whether anything of the suspension is stored.

        Its event (even one no group was told of) or a notification (a ``notify test`` has no event).
        """
        sql = (
            "SELECT 1 FROM notify_events WHERE suspension_id = ?"
            " UNION ALL SELECT 1 FROM notify_outbox WHERE suspension_id = ? LIMIT 1"
        )
        return bool(self._select(sql, (suspension_id, suspension_id)))

    def attempts(self, suspension_id: str) -> list[Attempt]:
        """Every attempt for one suspension, oldest first."""
        sql = (
            "SELECT outbox_id, suspension_id, attempt, started_at, latency_ms, status, outcome,"
            " response_id, detail, worker FROM notify_attempts WHERE suspension_id = ? ORDER BY seq"
        )
        return [Attempt(*r) for r in self._select(sql, (suspension_id,))]

    def acks(self, suspension_id: str) -> list[Ack]:
        """The acknowledgements of one suspension, oldest first."""
        sql = (
            "SELECT suspension_id, group_name, via, actor, acked_at, detail FROM notify_acks"
            " WHERE suspension_id = ? ORDER BY acked_at"
        )
        return [Ack(*r) for r in self._select(sql, (suspension_id,))]

    def deadlines(self, suspension_id: str) -> list[Deadline]:
        """The acknowledgement deadlines of one suspension."""
        sql = (
            "SELECT suspension_id, group_name, due_at, state, escalated_at FROM notify_deadlines"
            " WHERE suspension_id = ? ORDER BY group_name"
        )
        return [Deadline(*r) for r in self._select(sql, (suspension_id,))]

    def latest_events(self, limit: int = 2) -> list[tuple[str, str, float, str]]:
        """The newest halt/resume events ``(suspension, kind, at, context)``, newest first."""
        with self._tx() as tx:
            rows = tx.run(
                "SELECT suspension_id, event, at, context FROM notify_events"
                " WHERE event IN ('halt', 'resume') ORDER BY at DESC LIMIT ?",
                (limit,),
            )
        return [(str(s), str(e), float(a), str(c)) for s, e, a, c in rows]

    def pending_count(self) -> int:
        """Notifications not yet delivered, nor given up."""
        with self._tx() as tx:
            ((n,),) = tx.run("SELECT COUNT(*) FROM notify_outbox WHERE state = 'pending'")
        return int(n)


_CLAIM = (
    "SELECT o.id FROM notify_outbox o WHERE o.state = 'pending'"
    " AND (o.next_attempt_at <= ? OR o.next_attempt_at > ?)"
    " AND (o.lease_until IS NULL OR o.lease_until <= ? OR o.lease_until > ?)"
    " AND NOT (o.event = 'resume' AND EXISTS (SELECT 1 FROM notify_outbox h"
    "  WHERE h.suspension_id = o.suspension_id AND h.group_name = o.group_name"
    "  AND h.channel_id = o.channel_id AND h.event <> 'resume' AND h.state = 'pending'))"
    " ORDER BY o.next_attempt_at, o.id LIMIT ?"
)
_LEASE = (
    "UPDATE notify_outbox SET lease_until = ?, leased_by = ?, attempts = attempts + 1,"
    " first_attempt_at = COALESCE(first_attempt_at, ?) WHERE id IN ("
)
_INSERT = (
    "INSERT INTO notify_outbox (id, suspension_id, event, group_name, channel_id,"
    " channel_type, deployer, context, state, attempts, created_at, next_attempt_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (id) DO NOTHING"
)


def _values(n: NewNotification, now: float) -> tuple[Any, ...]:
    return (
        n.id, n.suspension_id, n.event, n.group, n.channel_id, n.channel_type,
        n.deployer, n.context, now, now,
    )  # fmt: skip


def _pid(worker: str) -> int:
    parts = worker.split(":")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return -1


def _notification(row: Sequence[Any]) -> Notification:
    values = list(row)
    return Notification(*values)
