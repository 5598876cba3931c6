"""Ending a person's console sessions on every replica, without trusting any clock.

A revocation raises the person's *generation* in the store; every session
cookie carries the generations of its person when it was made, and is refused
once the store's are higher. Generations, not times: a revocation must not be
dodged by a replica whose clock is behind. Each replica keeps the list in
memory and re-reads it every ``token_refresh`` seconds, so a revocation reaches
every replica within that time; a store that has gone away leaves the last list
in force (and no revocation can be made meanwhile).

A person is named by the subject (``oidc:<issuer>#<sub>``, ``token:<id>``),
matched exactly, or by the name the audit trail shows (the e-mail), matched
without regard to case.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import BreakglassError
from breakglass.serve.refreshed import Refreshed

if TYPE_CHECKING:
    from breakglass.serve.auth import Identity
    from breakglass.serve.sessions import Session
    from breakglass.serve.store import ServeStore, SessionRevocation

_SUBJECTS = ("oidc:", "token:")
SESSION = "session:"
"""The key of one logged-out session (``session:<sid>``): kept apart from the people."""
KEEP_LOGOUTS = timedelta(days=8)
"""Logged-out sessions are read back this long: longer than any session can last (7 days)."""


def person_key(person: str) -> str:
    """How a person is kept: a subject as it is, a name folded (``Dana@X`` is ``dana@x``)."""
    text = person.strip()
    return text if text.startswith((*_SUBJECTS, SESSION)) else text.casefold()


class SessionRevocations:
    """The revocations: made through the store, checked from the list in memory."""

    def __init__(
        self, store: ServeStore, *, refresh: float = 2.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._clock = clock
        empty: dict[str, int] = {}
        self._generations = Refreshed(
            lambda: {
                r.person: r.generation
                for r in store.session_revocations(since=clock.now() - KEEP_LOGOUTS)
            },
            empty,
            refresh=refresh,
            what="the console session revocations",
        )

    def revoke(self, person: str, *, by: str, reason: str) -> SessionRevocation:
        """End every console session of ``person`` on every replica."""
        key = person_key(person)
        if not key or len(key) > 300 or not key.isprintable():
            raise BreakglassError("name a person: 1 to 300 printable characters")
        reason = reason.strip()[:500]
        done = self._store.revoke_sessions(key, by=by, reason=reason, at=self._clock.now())
        self._generations.reload(wait=True)
        return done

    def list(self) -> list[SessionRevocation]:
        """Every person's revocation (read from the store; single logouts left out)."""
        return [r for r in self._store.session_revocations() if not r.person.startswith(SESSION)]

    def log_out(self, session: Session, *, by: str) -> None:
        """End this one session on every replica (a copy of its cookie dies with it)."""
        self._store.revoke_sessions(
            SESSION + session.sid, by=by, reason="logged out", at=self._clock.now()
        )
        self._generations.reload(wait=True)

    def generations(self, identity: Identity, *, fresh: bool = False) -> tuple[int, int]:
        """The generations of ``identity``'s subject and name (``fresh``: read the store first)."""
        if fresh:
            self._generations.reload(wait=True)
        known = self._generations.get()
        return known.get(identity.subject, 0), known.get(person_key(identity.name), 0)

    def ended(self, session: Session) -> str | None:
        """Why ``session`` has ended since its login (an admin, a logout), or ``None``."""
        made = session.generations
        now = self.generations(session.identity)
        if now[0] > made[0] or now[1] > made[1]:
            return "an admin ended this console session; log in again"
        if self._generations.get().get(SESSION + session.sid, 0) > 0:
            return "this console session was logged out; log in again"
        return None
