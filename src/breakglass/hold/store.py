"""Where held decisions wait: the ``held_decisions`` table of serve's database.

One row per decision, committed before the caller is told it is held, so a
kill -9 right after ``hold`` loses nothing. Reviewing changes the state once
(``held`` -> ``released`` or ``discarded``, with who, when and why); delivering
a released decision marks it ``delivered``. A ``key`` (the caller's own id for
the decision) makes holding idempotent: holding the same key again returns
the first ticket.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from breakglass.serve.store import _SqlStore

State = Literal["held", "released", "discarded", "delivered"]
_COLUMNS = (
    "ticket, kind, key, payload, held_at, held_because, state, reviewed_by, reviewed_at, "
    "review_reason, delivered_at"
)


_BY_TICKET = f"SELECT {_COLUMNS} FROM held_decisions WHERE ticket = ?"  # noqa: S608 -- fixed columns
_BY_KEY = f"SELECT {_COLUMNS} FROM held_decisions WHERE key = ?"  # noqa: S608 -- fixed columns


class HoldError(BreakglassError):
    """A decision could not be held, or a review was refused; the decision was NOT delivered."""


@dataclass(frozen=True, slots=True)
class HeldDecision:
    """One decision made while halted."""

    ticket: str
    kind: str
    key: str | None
    payload: dict[str, Any]
    held_at: datetime
    held_because: str
    state: State
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_reason: str | None = None
    delivered_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "ticket": self.ticket,
            "kind": self.kind,
            "key": self.key,
            "payload": self.payload,
            "held_at": isoformat_ms(self.held_at),
            "held_because": self.held_because,
            "state": self.state,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": isoformat_ms(self.reviewed_at) if self.reviewed_at else None,
            "review_reason": self.review_reason,
            "delivered_at": isoformat_ms(self.delivered_at) if self.delivered_at else None,
        }


def _row(row: Any) -> HeldDecision:
    return HeldDecision(
        ticket=row[0],
        kind=row[1],
        key=row[2],
        payload=json.loads(row[3]),
        held_at=parse_iso(row[4]),
        held_because=row[5],
        state=row[6],
        reviewed_by=row[7],
        reviewed_at=parse_iso(row[8]) if row[8] else None,
        review_reason=row[9],
        delivered_at=parse_iso(row[10]) if row[10] else None,
    )


class HoldStore:
    """Held decisions in serve's database (SQLite or PostgreSQL). Thread- and process-safe."""

    def __init__(self, db: _SqlStore, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self._clock = clock

    def __repr__(self) -> str:
        return f"HoldStore({self.db.location!r})"

    @classmethod
    def open(cls, settings: Any = None, clock: Clock = SYSTEM_CLOCK) -> HoldStore:
        """The store in the database serve uses (``[serve]`` path or database_url)."""
        from breakglass.serve.settings import load_serve_settings
        from breakglass.serve.store import open_serve_store
        from breakglass.settings import load_settings

        settings = settings or load_settings()
        serve = load_serve_settings(settings)
        db = open_serve_store(serve.sqlite_path(settings), serve.database_url, clock=clock)
        return cls(db, clock)  # type: ignore[arg-type]  # both stores are _SqlStore

    def hold(
        self, kind: str, payload: dict[str, Any], *, because: str, key: str | None = None
    ) -> HeldDecision:
        """Keep one decision; committed before this returns. Same ``key``: the first one's row."""
        if not kind or len(kind) > 100:
            raise HoldError("a decision's kind is 1 to 100 characters")
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        ticket = f"hold_{secrets.token_hex(12)}"
        now = isoformat_ms(self._clock.now())
        with self.db.transaction() as cur:
            self.db.run(
                cur,
                "INSERT INTO held_decisions (ticket, kind, key, payload, held_at, held_because, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'held') ON CONFLICT DO NOTHING",
                (ticket, kind, key, text, now, because[:500]),
            )
            if key is None:
                row = self.db.run(
                    cur,
                    _BY_TICKET,
                    (ticket,),
                ).fetchone()
            else:
                row = self.db.run(
                    cur,
                    _BY_KEY,
                    (key,),
                ).fetchone()
        return _row(row)

    def get(self, ticket: str) -> HeldDecision | None:
        """One decision by its ticket."""
        with self.db.transaction() as cur:
            row = self.db.run(
                cur,
                _BY_TICKET,
                (ticket,),
            ).fetchone()
        return None if row is None else _row(row)

    def decisions(
        self, states: Sequence[State] = ("held",), limit: int = 1000
    ) -> list[HeldDecision]:
        """Decisions in ``states``, oldest first."""
        marks = ", ".join("?" * len(states))
        with self.db.transaction() as cur:
            rows = self.db.run(
                cur,
                f"SELECT {_COLUMNS} FROM held_decisions WHERE state IN ({marks}) "  # noqa: S608 -- fixed columns, marks only
                "ORDER BY held_at, ticket LIMIT ?",
                (*states, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def review(
        self,
        action: Literal["release", "discard"],
        *,
        tickets: Sequence[str] | None,
        actor: str,
        reason: str,
    ) -> list[str]:
        """Release or discard held decisions (``tickets`` ``None``: every one held); the tickets changed.

        Only decisions still ``held`` change: one reviewed already keeps its first review.
        """
        state = "released" if action == "release" else "discarded"
        now = isoformat_ms(self._clock.now())
        changed: list[str] = []
        with self.db.transaction() as cur:
            if tickets is None:
                wanted = [
                    r[0]
                    for r in self.db.run(
                        cur, "SELECT ticket FROM held_decisions WHERE state = 'held'"
                    ).fetchall()
                ]
            else:
                wanted = list(tickets)
            for ticket in wanted:
                done = self.db.run(
                    cur,
                    "UPDATE held_decisions SET state = ?, reviewed_by = ?, reviewed_at = ?, "
                    "review_reason = ? WHERE ticket = ? AND state = 'held'",
                    (state, actor, now, reason, ticket),
                )
                if done.rowcount:
                    changed.append(ticket)
        return changed

    def mark_delivered(self, ticket: str) -> bool:
        """Record that a released decision was delivered; ``False`` unless it was released."""
        with self.db.transaction() as cur:
            done = self.db.run(
                cur,
                "UPDATE held_decisions SET state = 'delivered', delivered_at = ? "
                "WHERE ticket = ? AND state = 'released'",
                (isoformat_ms(self._clock.now()), ticket),
            )
            return bool(done.rowcount)

    def summary(self, *, since: datetime, until: datetime | None = None) -> dict[str, Any]:
        """Counts of the decisions held between ``since`` and ``until`` (for the suspension record)."""
        with self.db.transaction() as cur:
            rows = self.db.run(
                cur,
                "SELECT state, COUNT(*) FROM held_decisions WHERE held_at >= ? AND held_at <= ? "
                "GROUP BY state",
                (isoformat_ms(since), isoformat_ms(until) if until else "9999"),
            ).fetchall()
        counts = {str(r[0]): int(r[1]) for r in rows}
        return {
            "total": sum(counts.values()),
            "pending": counts.get("held", 0),
            "released": counts.get("released", 0) + counts.get("delivered", 0),
            "delivered": counts.get("delivered", 0),
            "discarded": counts.get("discarded", 0),
        }
