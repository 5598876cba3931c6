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

OIDC bearer JWTs carry no generation, only the identity provider's ``iat``:
:meth:`SessionRevocations.refuses_bearer` compares that with the revocation's
recorded time, with an allowance for the two clocks that errs toward refusing
(a token dated up to ``skew`` after the revocation is refused too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
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
        empty: dict[str, SessionRevocation] = {}
        self._revoked = Refreshed(
            lambda: {
                r.person: r for r in store.session_revocations(since=clock.now() - KEEP_LOGOUTS)
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
        self._revoked.reload(wait=True)
        return done

    def list(self) -> list[SessionRevocation]:
        """Every person's revocation (read from the store; single logouts left out)."""
        return [r for r in self._store.session_revocations() if not r.person.startswith(SESSION)]

    def log_out(self, session: Session, *, by: str) -> None:
        """End this one session on every replica (a copy of its cookie dies with it)."""
        self._store.revoke_sessions(
            SESSION + session.sid, by=by, reason="logged out", at=self._clock.now()
        )
        self._revoked.reload(wait=True)

    def generations(self, identity: Identity, *, fresh: bool = False) -> tuple[int, int]:
        """The generations of ``identity``'s subject and name (``fresh``: read the store first)."""
        if fresh:
            self._revoked.reload(wait=True)
        subject, name = self._of(identity, self._revoked.get())
        return (subject.generation if subject else 0, name.generation if name else 0)

    @staticmethod
    def _of(
        identity: Identity, known: dict[str, SessionRevocation]
    ) -> tuple[SessionRevocation | None, SessionRevocation | None]:
        return known.get(identity.subject), known.get(person_key(identity.name))

    def ended(self, session: Session) -> str | None:
        """Why ``session`` has ended since its login (an admin, a logout), or ``None``."""
        made = session.generations
        now = self.generations(session.identity)
        if now[0] > made[0] or now[1] > made[1]:
            return "an admin ended this console session; log in again"
        if SESSION + session.sid in self._revoked.get():
            return "this console session was logged out; log in again"
        return None

    def refuses_bearer(self, identity: Identity, *, skew: float, longest: float) -> str | None:
        """Why the bearer JWT behind ``identity`` is refused, or ``None`` (``issued_at``: its ``iat``).

        Refused when the person was revoked at R and the token is dated before R + ``skew``
        seconds (the identity provider's clock is not ours). Without ``iat`` nothing shows the
        token is newer: refused until R + ``longest`` + ``skew``, when every token issued before
        R has expired (``longest``: the longest lifetime the provider gives a token, seconds).
        """
        for revocation in self._of(identity, self._revoked.get()):
            if revocation is None:
                continue
            try:
                revoked = parse_iso(revocation.revoked_at).timestamp()
            except ValueError:
                return "an admin revoked this person's access (its time is unreadable); refused"
            at = revocation.revoked_at
            if identity.issued_at is None:
                until = revoked + longest + skew
                if self._clock.now().timestamp() < until:
                    return (
                        f"an admin revoked this person's access at {at}; this bearer token has no "
                        "iat, so nothing shows it is newer: refused until "
                        f"{isoformat_ms(datetime.fromtimestamp(until, UTC))}"
                    )
            elif identity.issued_at < revoked + skew:
                return (
                    f"an admin revoked this person's access at {at}; this bearer token was issued "
                    f"before that (or within the {skew:g} s allowed for clock skew after it): "
                    "get a new one from the identity provider"
                )
        return None
