"""The local change log as normalised audit records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.seams import AuditPage

if TYPE_CHECKING:
    from collections.abc import Iterator

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
        """Yield pages of changes after ``cursor``, oldest first."""
        after = int(cursor) if cursor else 0
        while True:
            changes = self._store.changes(self._flag_key, after=after, limit=self._page_size)
            if not changes:
                return
            pulled_at = self._clock.now()
            after = changes[-1].seq
            yield AuditPage(
                records=[_normalise(change, pulled_at) for change in changes], cursor=str(after)
            )
            if len(changes) < self._page_size:
                return


def _normalise(change: LocalChange, pulled_at: object) -> AuditRecord:
    try:
        action = Action(change.action)
    except ValueError:
        action = Action.OTHER
    return AuditRecord(
        provider="local",
        vendor_event_id=str(change.seq),
        vendor_event_type=change.action,
        flag_key=change.flag_key,
        action=action,
        occurred_at=change.occurred_at,
        pulled_at=pulled_at,  # type: ignore[arg-type]
        actor=Actor(kind=ActorKind.USER, id=change.actor, name=change.actor),
        environment=change.host,
        value_before=change.value_before if type(change.value_before) is bool else None,
        value_after=change.value_after if type(change.value_after) is bool else None,
        comment=change.reason,
        raw=change.as_raw(),
    )
