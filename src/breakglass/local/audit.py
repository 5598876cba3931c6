"""The local change log as normalised audit records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.seams import AuditPage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from breakglass.local.store import LocalChange, LocalStore


class LocalAudit:
    """A :class:`breakglass.seams.AuditSource` on the local change log.

    The cursor is the last sequence number pulled, as a string.
    """

    def __init__(
        self, store: LocalStore, flag_key: str, *, page_size: int = 500, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._flag_key = flag_key
        self._page_size = page_size
        self._clock = clock

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield pages of changes after ``cursor``, oldest first.

        The cursor is ``<store_id>-<seq>``. A cursor from another store file (the
        file was recreated) starts again from that file's first change, with a
        note in the page's problems, rather than skipping its history.
        """
        after, note = self._resume_point(cursor)
        while True:
            page = self._store.changes(self._flag_key, after=after, limit=self._page_size)
            if page.store_id is None or page.last_seq == after:
                return
            pulled_at = self._clock.now()
            after = page.last_seq
            problems = [*([note] if note else []), *page.problems]
            note = None
            yield AuditPage(
                records=[_normalise(change, pulled_at) for change in page.changes],
                cursor=f"{page.store_id}-{after}",
                malformed=len(page.problems),
                problems=problems,
            )
            if len(page.changes) + len(page.problems) < self._page_size:
                return  # a short page is the last one

    def _resume_point(self, cursor: str | None) -> tuple[int, str | None]:
        if not cursor:
            return 0, None
        store_id, _, seq = cursor.rpartition("-")
        current = self._store.store_id()
        if store_id and current is not None and store_id != current:
            return (
                0,
                f"the local store was recreated (was {store_id}, now {current}); pulling it from the start",
            )
        try:
            return int(seq), None
        except ValueError:
            return 0, f"unreadable cursor {cursor!r}; pulling from the start"


def _normalise(change: LocalChange, pulled_at: datetime) -> AuditRecord:
    try:
        action = Action(change.action)
    except ValueError:
        action = Action.OTHER
    return AuditRecord(
        provider="local",
        vendor_event_id=change.change_id,
        vendor_event_type=change.action,
        flag_key=change.flag_key,
        action=action,
        occurred_at=change.occurred_at,
        pulled_at=pulled_at,
        actor=Actor(kind=ActorKind.USER, id=change.actor, name=change.actor),
        environment=change.host,
        value_before=change.value_before if type(change.value_before) is bool else None,
        value_after=change.value_after if type(change.value_after) is bool else None,
        comment=change.reason,
        raw=change.as_raw(),
    )
