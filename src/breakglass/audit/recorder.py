"""Evidence the bridge keeps itself: observed flips and changes made through it.

Every bridge process records, as audit records of provider ``breakglass``:

* each flip of the decision it observes (active to halted and back), with the
  cause, the deciding source, when it observed it, and its host and process;
* each halt and resume made through it (CLI, API, latency probe), with actor,
  reason, the vendor's change id, and failed attempts too.

So the history exists even where a vendor keeps its log behind a paid plan,
and it shows how long each process of a fleet really took to stop.

Recording is off the request path and cannot stop the bridge: the engine's
listener (called only when the decision changes, never per request) and the
admin wrapper only build a small record and queue it; one background thread
writes the queue to the audit store. Stop first, record after: every reader on
a host observes a flip at the same moment, and fifty processes committing
their records at once would take the CPU the last of them needs to stop (the
last of 50 relay workers halted twice as late, docs/performance.md). So an
observed flip is written between 50 and 250 ms after it (a random moment per
process, which spreads a fleet's writes); a change made through the bridge, a
flush and closing write at once. If the store fails, the failure is
logged once and the records go to a local spool file, synced to disk
(:mod:`breakglass.audit.spool`), and are written to the store when it works
again; a process that exits first (a CLI halt) says where its record waits.
Only when the spool cannot be written either do records wait in memory (up
to a bound). The flag, the guard and halts carry on regardless.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import random
import secrets
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from breakglass import forking
from breakglass.audit.codec import prepare
from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import AuditRecordError, BreakglassError
from breakglass.state import Cause

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from breakglass.audit.codec import StoredRecord
    from breakglass.audit.settings import AuditSettings
    from breakglass.audit.spool import Spool
    from breakglass.audit.store import AuditStore
    from breakglass.engine import StateEngine
    from breakglass.seams import Acknowledgement, FlagAdmin
    from breakglass.settings import Settings
    from breakglass.state import FlagState

logger = logging.getLogger("breakglass.audit")

PROVIDER = "breakglass"
"""The ``provider`` of every record the bridge writes itself."""

OBSERVED = "observed-flip"
"""``vendor_event_type`` of an observed flip."""

_BATCH = 500
OBSERVED_HOLD_S = (0.05, 0.25)
"""Seconds after an observed flip within which its record is written (drawn per flip)."""
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0


class AuditRecorder:
    """Queues the bridge's own evidence and writes it to the audit store in the background.

    Args:
        store_factory: Opens the audit store; called on the writer thread, so
            a slow or missing database never delays the caller.
        backend: The provider the bridge reads (kept in each record's ``raw``).
        flag_key: The flag whose decisions are observed.
        clock: For ``observed_at``.
        record_observed: Record observed flips.
        record_changes: Record changes made through :meth:`wrap_admin`.
        max_pending: Records kept in memory while the store is down; beyond
            it the oldest are dropped, counted and logged once.
        observed_hold: The range, in seconds, from which each observed flip's
            moment of writing is drawn (see the module's "stop first").
    """

    def __init__(  # noqa: PLR0913 -- keyword options, each documented
        self,
        store_factory: Callable[[], AuditStore] | None,
        *,
        backend: str,
        flag_key: str,
        clock: Clock = SYSTEM_CLOCK,
        record_observed: bool = True,
        record_changes: bool = True,
        max_pending: int = 10_000,
        spool: Spool | None = None,
        observed_hold: tuple[float, float] = OBSERVED_HOLD_S,
    ) -> None:
        self._factory = store_factory
        self._observed_hold = observed_hold
        self.spool = spool
        self._spooled = False
        self._drained = False
        self.spooled = 0
        """Records this process put in the spool (written to the store later)."""
        self.backend = backend
        self.flag_key = flag_key
        self._clock = clock
        self.record_observed = record_observed and store_factory is not None
        self.record_changes = record_changes and store_factory is not None
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._process = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        # Host and pid repeat across reboots; the token makes every process's ids its own.
        self._token = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._pending: deque[AuditRecord] = deque(maxlen=max_pending)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._store: AuditStore | None = None
        self._closing = False
        self._writing = 0
        self._failing: str | None = None
        self._retry_s = _RETRY_FIRST_S
        self._baseline: bool | None = None
        # Monotonic time by which the queue must be written; see the module's "stop first".
        self._write_by = math.inf
        self._urgent = False
        self._warm = False
        self._jitter = random.Random()  # noqa: S311 -- spreads writes in time, no secret
        self.written = 0
        """Records written to the store so far."""
        self.dropped = 0
        """Records lost: queue overflow while the store was down, or unwritten at close."""
        forking.in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: the parent writes its own queue; this process starts an empty one."""
        self._cond = threading.Condition()
        self._thread = None
        self._store = None  # a database connection must not be shared with the parent
        self._pending.clear()
        self._closing = False
        self._writing = 0
        self._write_by = math.inf
        self._urgent = False
        self._warm = False
        self._jitter = random.Random()  # noqa: S311 -- a child must not share the parent's moments
        self._baseline = None
        self._pid = os.getpid()
        self._token = secrets.token_hex(4)
        self._seq = itertools.count(1)
        # The parent's exit hook was copied too; a child registers its own when it first writes.
        atexit.unregister(self._at_exit)

    def __repr__(self) -> str:
        return (
            f"AuditRecorder(backend={self.backend!r}, observed={self.record_observed}, "
            f"changes={self.record_changes})"
        )

    @classmethod
    def for_bridge(
        cls,
        settings: Settings,
        backend: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        audit: AuditSettings | None = None,
    ) -> AuditRecorder:
        """The recorder a bridge uses; never raises (bad audit settings disable it, logged)."""
        from breakglass.audit.settings import load_audit_settings
        from breakglass.audit.store import open_audit_store

        try:
            audit = audit if audit is not None else load_audit_settings()
        except BreakglassError as exc:
            logger.error("audit recording is off: %s", exc)  # noqa: TRY400 -- the message is the point
            return cls(None, backend=backend, flag_key=settings.flag_key, clock=clock)
        from breakglass.audit.spool import Spool

        chosen = audit

        def factory() -> AuditStore:
            return open_audit_store(settings, chosen)

        if audit.database_url is None and (audit.record_observed or audit.record_changes):
            _warn_if_writable(audit.sqlite_path(settings))
        return cls(
            factory,
            backend=backend,
            flag_key=settings.flag_key,
            clock=clock,
            record_observed=audit.record_observed,
            record_changes=audit.record_changes,
            spool=Spool(audit.spool(settings)),
        )

    # ------------------------------------------------------------------ what is recorded

    def attach(self, engine: StateEngine) -> None:
        """Record the flips ``engine`` decides (when observed flips are on)."""
        if self.record_observed:
            engine.subscribe(self.on_state)

    def on_state(self, state: FlagState) -> None:
        """Engine listener: queue a record when the decision flips between active and halted.

        The first decision after start sets the baseline and is not a flip (a
        ``status`` command does not write history); closing is not a flip either.
        Turning ``record_observed`` off after :meth:`attach` (a read-only command) stops it.
        """
        if not self.record_observed or state.cause is Cause.CLOSED:
            return
        if self._baseline is None:
            if state.cause is not Cause.UNCONFIRMED:
                self._baseline = state.active
            return
        if state.active == self._baseline:
            return
        before, self._baseline = self._baseline, state.active
        now = self._clock.now()
        seq = next(self._seq)
        word = "active" if state.active else "halted"
        detail = f"observed {word} (cause {state.cause.value}, source {state.source})"
        self._submit(
            hold=self._jitter.uniform(*self._observed_hold),
            record=AuditRecord(
                provider=PROVIDER,
                vendor_event_id=self._event_id(seq),
                vendor_event_type=OBSERVED,
                flag_key=self.flag_key,
                action=Action.ENABLED if state.active else Action.DISABLED,
                occurred_at=now,
                pulled_at=now,
                actor=self._observer(),
                value_before=before,
                value_after=state.active,
                comment=detail,
                raw={
                    "kind": "observed",
                    "active": state.active,
                    "cause": state.cause.value,
                    "source": state.source,
                    "detail": state.detail,
                    "confirmed_at": isoformat_ms(state.confirmed_at)
                    if state.confirmed_at
                    else None,
                    "observed_at": isoformat_ms(now),
                    "backend": self.backend,
                    **self._process_info(seq),
                },
            ),
        )

    def record_change(  # noqa: PLR0913 -- one keyword per field of the record
        self,
        *,
        flag_key: str,
        active: bool,
        actor: str,
        reason: str,
        started_at: datetime,
        ack: Acknowledgement | None = None,
        error: BaseException | None = None,
        backend: str | None = None,
    ) -> None:
        """Queue the record of a halt or resume made through this process (or its failure)."""
        if not self.record_changes:
            return
        seq = next(self._seq)
        verb = "resume" if active else "halt"
        # Done only when readers are served the asked-for value: a 2xx alone is not a halt.
        done = ack is not None and ack.confirmed
        occurred = ack.acknowledged_at if ack is not None else self._clock.now()
        raw: dict[str, object] = {
            "kind": "change",
            "active": active,
            "actor": actor,
            "reason": reason,
            "backend": backend or self.backend,
            "flag_key": flag_key,
            "write_started_at": isoformat_ms(started_at),
            "acknowledged_at": isoformat_ms(ack.acknowledged_at) if ack is not None else None,
            "change_id": ack.change_id if ack is not None else None,
            "changed": ack.changed if ack is not None else None,
            "served": ack.served if ack is not None else None,
            "served_detail": ack.served_detail if ack is not None else None,
            "created": ack.created if ack is not None else None,
            "target": ack.target if ack is not None else None,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
            **self._process_info(seq),
        }
        self._submit(
            AuditRecord(
                provider=PROVIDER,
                vendor_event_id=self._event_id(seq),
                vendor_event_type=verb
                if done
                else (f"{verb}-not-served" if ack is not None else f"{verb}-failed"),
                flag_key=flag_key,
                action=(Action.ENABLED if active else Action.DISABLED) if done else Action.OTHER,
                occurred_at=occurred,
                pulled_at=occurred,
                actor=Actor(kind=ActorKind.USER, id=actor, name=actor),
                value_before=active if ack is not None and not ack.changed else None,
                value_after=active if done else (ack.served if ack is not None else None),
                comment=reason,
                raw=raw,
            )
        )

    def record(self, record: AuditRecord) -> None:
        """Queue a record another part of breakglass made (a notification attempt); never blocks."""
        if self._factory is not None:
            self._submit(record)

    def wrap_admin(self, admin: FlagAdmin, *, backend: str | None = None) -> FlagAdmin:
        """``admin`` (of provider ``backend``), recording each change made through it (``admin`` itself when off)."""
        if not self.record_changes:
            return admin
        return RecordingAdmin(admin, self, backend=backend)

    # ------------------------------------------------------------------ writing

    def _event_id(self, seq: int) -> str:
        return f"{self._host}:{self._pid}:{self._token}:{seq}"

    def _process_info(self, seq: int) -> dict[str, object]:
        return {"host": self._host, "pid": self._pid, "process": self._process, "seq": seq}

    def _observer(self) -> Actor:
        return Actor(
            kind=ActorKind.SYSTEM,
            id=f"{self._host}:{self._pid}",
            name=f"breakglass bridge ({self._process})",
        )

    def warm(self) -> None:
        """Open the store now, on the writer thread, so the first flip's write does not pay for it.

        Opening creates the schema (a fresh file, a migration) and drains the spool: work
        that, left to the first halt, every reader of a host would do at the same moment.
        Returns at once; a store that cannot be opened is logged and retried as for a write.
        """
        if not self.record_observed:
            return  # a command that only looks (status, watch) leaves the store as it found it
        with self._cond:
            if self._closing:
                return
            self._warm = True
            self._ensure_thread()
            self._cond.notify_all()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="breakglass-audit-recorder", daemon=True
            )
            self._thread.start()
            # A short-lived `breakglass halt` never closes its bridge: write before exit.
            atexit.register(self._at_exit)

    def _submit(self, record: AuditRecord, *, hold: float = 0.0) -> None:
        """Queue ``record``, to be written at the latest ``hold`` seconds from now."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
                if self.dropped == 1:
                    logger.error(
                        "audit store still unusable; dropping the oldest unwritten records"
                    )
            self._pending.append(record)
            self._write_by = min(self._write_by, time.monotonic() + hold)
            self._ensure_thread()
            self._cond.notify_all()

    def _work(self) -> None:
        if self._warm:
            self._open()
        self._run()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    # Records wait in the spool: try the store again after the backoff.
                    if not self._cond.wait(self._retry_s if self._spooled else None):
                        break
                if not self._pending and self._closing:
                    return
                self._hold()
                batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
                self._writing = len(batch)
            ok = self._write(batch)
            with self._cond:
                if ok:
                    for _ in batch:
                        if self._pending:
                            self._pending.popleft()
                    if not self._pending:
                        self._write_by, self._urgent = math.inf, False
                self._writing = 0
                self._cond.notify_all()
                if not ok or self._spooled:
                    if self._closing:
                        return
                    if not ok:
                        self._cond.wait(self._retry_s)
                    self._retry_s = min(_RETRY_MAX_S, self._retry_s * 2)

    def _open(self) -> None:
        """Open the store and create its schema (see :meth:`warm`); a failure waits for the next write."""
        try:
            if self._store is None:
                assert self._factory is not None  # noqa: S101 -- only warmed with a factory
                self._store = self._factory()
            self._store.migrate()
        except Exception as exc:  # noqa: BLE001 -- the first write retries it, spooling meanwhile
            self._store = None
            logger.warning(
                "audit store not usable yet (%s); the bridge's own records are spooled until it is",
                exc if isinstance(exc, BreakglassError | OSError) else type(exc).__name__,
            )

    def _hold(self) -> None:
        """Wait (holding the condition) until the queue's moment has come, or it must be written now."""
        while self._pending and not (self._closing or self._urgent):
            wait = self._write_by - time.monotonic()
            if wait <= 0:
                return
            self._cond.wait(wait)

    def _write(self, batch: list[AuditRecord]) -> bool:
        """Store ``batch`` (and what the spool holds); spool it when the store fails.

        Returns:
            Whether the batch is safe: stored, or synced to the spool.
        """
        rows = self._prepare(batch)
        try:
            if self._store is None:
                assert self._factory is not None  # noqa: S101 -- only started with a factory
                self._store = self._factory()
            if rows:
                self._store.save(rows)
                self.written += len(rows)
            # Also at this process's first write: records another process (a CLI halt) left.
            if self.spool is not None and (self._spooled or not self._drained):
                self._drained = True
                drained = self.spool.drain(self._store)
                if drained:
                    logger.warning("%d spooled audit records written to the store", drained)
                self._spooled = False
        except (BreakglassError, OSError) as exc:
            self._note_failure(exc)
            return self._spool_rows(rows)
        except Exception as exc:  # noqa: BLE001 -- an adapter bug must not lose evidence
            self._note_failure(exc)
            return self._spool_rows(rows)
        if self._failing is not None:
            logger.warning("audit store works again: %s", self._store)
            self._failing = None
        self._retry_s = _RETRY_FIRST_S
        return True

    def _prepare(self, batch: list[AuditRecord]) -> list[StoredRecord]:
        rows = []
        for record in batch:
            try:
                rows.append(prepare(record))
            except AuditRecordError:
                logger.exception("cannot keep the bridge's own audit record %s", record.id)
        return rows

    def _note_failure(self, exc: BaseException) -> None:
        if self._failing is None:
            where = (
                f"spooling the bridge's own records to {self.spool.path}"
                if self.spool
                else "keeping the bridge's own records in memory"
            )
            logger.error(
                "audit store unusable, %s and retrying (the flag is not affected): %s",
                where,
                exc if isinstance(exc, BreakglassError | OSError) else type(exc).__name__,
            )
        self._failing = str(exc)

    def _spool_rows(self, rows: list[StoredRecord]) -> bool:
        if self.spool is None:
            return False
        if not rows:
            self._spooled = True
            return True
        try:
            self.spool.append(rows)
        except OSError as exc:
            logger.error(  # noqa: TRY400 -- one line, the message says it all
                "cannot spool the bridge's own audit records to %s either (%s); keeping them "
                "in memory",
                self.spool.path,
                exc.strerror,
            )
            return False
        self._spooled = True
        self.spooled += len(rows)
        return True

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every queued record is written; return whether it was."""
        # Real time, not the injected clock: a manual test clock must not make this wait forever.
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent = True  # nothing waits for its moment: write it all now
            self._cond.notify_all()
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def _at_exit(self) -> None:
        self.close(timeout=2.0)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the writer."""
        if self._thread is None:
            return
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            left = len(self._pending)
            self._cond.notify_all()
        self._thread.join(timeout=max(0.1, timeout / 4))
        if not flushed and left:
            with self._cond:
                rest = list(self._pending)
            if self._spool_rows(self._prepare(rest)):
                left = 0
            else:
                self.dropped += left
                logger.error("%d of the bridge's own audit records could not be written", left)
        if self.spooled and self._spooled and self.spool is not None:
            # Said on every exit that leaves records behind: a CLI halt must say where its record is.
            logger.error(
                "audit store unusable (%s): %d of the bridge's own audit records wait in %s; "
                "they are written to the store when it works again (next bridge start, "
                "`breakglass audit export` or `breakglass audit pull`)",
                self._failing,
                self.spooled,
                self.spool.path,
            )
        atexit.unregister(self._at_exit)
        if self._store is not None:
            try:
                self._store.close()
            except BreakglassError:
                logger.debug("closing the audit store failed", exc_info=True)


def _warn_if_writable(path: Path) -> None:
    """Warn once when this process could rewrite the audit store it records into."""
    target = path if path.exists() else path.parent
    if target.exists() and os.access(target, os.W_OK):
        logger.warning(
            "the audit store %s is writable by this process: the overseen service could "
            "rewrite its own audit trail; keep it where only the audit user can write "
            "(docs/compliance.md, 'Where the store lives')",
            path,
        )


class RecordingAdmin:
    """A :class:`breakglass.seams.FlagAdmin` that records each change made through it.

    The change itself is made first and its outcome returned or raised as
    is; recording only queues a record, so it adds microseconds to a halt.
    """

    def __init__(
        self, admin: FlagAdmin, recorder: AuditRecorder, *, backend: str | None = None
    ) -> None:
        self._admin = admin
        self._recorder = recorder
        self._backend = backend
        self._clock = recorder._clock

    def __repr__(self) -> str:
        return f"RecordingAdmin({self._admin!r})"

    @property
    def wrapped(self) -> FlagAdmin:
        """The provider's own admin."""
        return self._admin

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the protocol's signature
        """Make the change through the provider, then record it (or its failure)."""
        started = self._clock.now()
        try:
            ack = self._admin.set_active(active, actor=actor, reason=reason)
        except BreakglassError as exc:
            self._recorder.record_change(
                flag_key=self._recorder.flag_key,
                active=active,
                actor=actor,
                reason=reason,
                started_at=started,
                error=exc,
                backend=self._backend,
            )
            raise
        self._recorder.record_change(
            flag_key=ack.flag_key,
            active=active,
            actor=actor,
            reason=reason,
            started_at=started,
            ack=ack,
            backend=self._backend,
        )
        return ack

    def get_active(self) -> bool | None:
        """The provider's own current value."""
        return self._admin.get_active()
