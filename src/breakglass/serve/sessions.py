"""Console sessions: signed, HttpOnly, SameSite=Strict cookies, a CSRF token, and the origin check.

The cookie holds the identity, a CSRF token, when the login was made, when
the session was last used, and the person's revocation generations at login
(:mod:`breakglass.serve.revocations`), signed with a key shared by every
replica (kept in the store). A session ends ``max_age`` after the login, or
``idle`` after its last request: each request re-issues the cookie with a new
last-use time once the old one is ``renew_after`` old. The console's own page
asks for the state every 2 s, so an open console stays logged in; a closed one
ends within ``idle``.

Times are the wall clock, because they must mean the same on every replica. A
step forward ends sessions early; a cookie dated more than ``SKEW`` seconds in
this replica's future is refused rather than trusted, so a step back (or a
replica whose clock is ahead) never stretches a session. Both fail closed: log
in again, and an API token halts meanwhile.

Every unsafe request that rides on the cookie must carry the CSRF token (header
``X-CSRF-Token`` or form field ``csrf``) and come from the console's own origin
(``Origin``, else ``Referer``, else ``Sec-Fetch-Site: same-origin``);
bearer-token requests need neither, since a browser never adds a bearer token
by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import AuthError
from breakglass.serve.auth import Identity, Role

if TYPE_CHECKING:
    from starlette.requests import Request

_SALT = "breakglass.console.session/2"  # /2: cookies carry the times and generations
SKEW = 60.0
"""Seconds a cookie may be dated in this replica's future (replicas' clocks differ a little)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A console login.

    Attributes:
        identity: Who logged in.
        csrf: The token every unsafe request must carry.
        made: When the login was made (wall clock, seconds since the epoch).
        used: When the session was last used (renewed at most every ``renew_after``).
        generations: The person's revocation generations at login (subject, name).
        sid: This session's own id, so that logging out ends it everywhere.
    """

    identity: Identity
    csrf: str
    made: float = 0.0
    used: float = 0.0
    generations: tuple[int, int] = (0, 0)
    sid: str = ""

    @property
    def tag(self) -> str:
        """A digest of :attr:`sid` that names this session to its own page (not a secret, not the id).

        The page compares it with the one the poll answer names: another login in the same browser
        replaces the cookie, and the page then knows it no longer holds the browser's session.
        """
        digest = hashlib.sha256(b"breakglass.console.tag/1\0" + self.sid.encode()).hexdigest()
        return digest[:20]


class Sessions:
    """Makes, reads and renews session cookies."""

    def __init__(
        self,
        key: str,
        *,
        max_age: float,
        secure: bool,
        idle: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.key = key
        """The signing key (also signs the single sign-on attempt's cookie)."""
        self._signer = URLSafeSerializer(key, salt=_SALT)
        self.max_age = int(max_age)
        self.idle = float(idle if idle is not None else max_age)
        self.renew_after = min(60.0, self.idle / 10)
        """A request re-issues the cookie when its last-use time is this old."""
        self.secure = secure
        self._clock = clock
        # A __Host- cookie is bound to this exact origin, but browsers accept it only over https.
        self.cookie = "__Host-breakglass" if secure else "breakglass_session"

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _dump(self, session: Session) -> str:
        identity = session.identity
        data = {
            "sub": identity.subject,
            "name": identity.name,
            "role": identity.role.label,
            "kind": identity.kind,
            "tid": identity.token_id,
            "csrf": session.csrf,
            "made": session.made,
            "used": session.used,
            "gen": list(session.generations),
            "sid": session.sid,
        }
        return self._signer.dumps(data)

    def make(
        self, identity: Identity, generations: tuple[int, int] = (0, 0)
    ) -> tuple[str, Session]:
        """The cookie value for a new login, and the session it holds."""
        now = self._now()
        csrf, sid = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
        session = Session(identity, csrf, now, now, generations, sid)
        return self._dump(session), session

    def read(self, value: str) -> Session:
        """The session a cookie holds; raises a 401 :class:`AuthError` when forged, expired or idle."""
        try:
            data: dict[str, Any] = self._signer.loads(value)
            identity = Identity(
                subject=str(data["sub"]),
                name=str(data["name"]),
                role=Role.parse(str(data["role"])),
                kind=str(data["kind"]),
                token_id=data.get("tid"),
            )
            made, used = float(data["made"]), float(data["used"])
            first, second = (int(g) for g in data["gen"])
            sid = str(data["sid"])
            session = Session(identity, str(data["csrf"]), made, used, (first, second), sid)
        except (BadSignature, KeyError, TypeError, ValueError):
            raise AuthError("the console session is invalid or has expired; log in again") from None
        now = self._now()
        if made > now + SKEW or used > now + SKEW or used < made:
            raise AuthError(
                "the console session is dated in this server's future (a clock differs "
                "between replicas?); log in again"
            )
        if now - made > self.max_age:
            raise AuthError("the console session has expired; log in again")
        if now - used > self.idle:
            minutes = max(1, round(self.idle / 60))
            raise AuthError(
                f"the console session ended after {minutes} min without activity; log in again"
            )
        return session

    def renewal(self, session: Session) -> str | None:
        """A new cookie value with the last-use time moved to now, when due; else ``None``."""
        now = self._now()
        if now - session.used < self.renew_after:
            return None
        return self._dump(replace(session, used=now))

    def cookie_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Response.set_cookie``."""
        return {
            "key": self.cookie,
            "max_age": self.max_age,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
            "path": "/",
        }


def own_origin(request: Request, public_origin: str | None) -> str:
    """The origin the console is served from."""
    if public_origin:
        return public_origin.rstrip("/")
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def check_same_origin(request: Request, public_origin: str | None) -> None:
    """Raise a 403 :class:`AuthError` unless an unsafe request comes from the console's origin."""
    expected = own_origin(request, public_origin)
    origin = request.headers.get("origin")
    if origin is None and (referer := request.headers.get("referer")):
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is not None:
        if origin != expected:
            raise AuthError(f"refused: a request from another origin ({origin[:100]})", status=403)
        return
    if request.headers.get("sec-fetch-site") not in ("same-origin", None):
        raise AuthError("refused: a cross-site request", status=403)


def check_csrf(session: Session, presented: str | None) -> None:
    """Raise a 403 :class:`AuthError` unless ``presented`` is the session's CSRF token."""
    if not presented or not hmac.compare_digest(presented, session.csrf):
        raise AuthError(
            "refused: the CSRF token is missing or wrong; reload the console", status=403
        )
