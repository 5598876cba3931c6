"""Console sessions: signed, HttpOnly, SameSite=Strict cookies, a CSRF token, and the origin check.

The cookie holds the identity and a CSRF token, signed with a key shared by
every replica (kept in the store). Every unsafe request that rides on the
cookie must carry the CSRF token (header ``X-CSRF-Token`` or form field
``csrf``) and come from the console's own origin (``Origin``, else
``Referer``, else ``Sec-Fetch-Site: same-origin``); bearer-token requests
need neither, since a browser never adds a bearer token by itself.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from breakglass.errors import AuthError
from breakglass.serve.auth import Identity, Role

if TYPE_CHECKING:
    from starlette.requests import Request

_SALT = "breakglass.console.session"


@dataclass(frozen=True, slots=True)
class Session:
    """A console login."""

    identity: Identity
    csrf: str


class Sessions:
    """Makes and reads session cookies."""

    def __init__(self, key: str, *, max_age: float, secure: bool) -> None:
        self.key = key
        """The signing key (also signs the single sign-on attempt's cookie)."""
        self._signer = URLSafeTimedSerializer(key, salt=_SALT)
        self.max_age = int(max_age)
        self.secure = secure
        # A __Host- cookie is bound to this exact origin, but browsers accept it only over https.
        self.cookie = "__Host-breakglass" if secure else "breakglass_session"

    def make(self, identity: Identity) -> tuple[str, Session]:
        """The cookie value for a new login, and the session it holds."""
        session = Session(identity, secrets.token_urlsafe(24))
        data = {
            "sub": identity.subject,
            "name": identity.name,
            "role": identity.role.label,
            "kind": identity.kind,
            "tid": identity.token_id,
            "csrf": session.csrf,
        }
        return self._signer.dumps(data), session

    def read(self, value: str) -> Session:
        """The session a cookie holds; raises a 401 :class:`AuthError` when forged or expired."""
        try:
            data: dict[str, Any] = self._signer.loads(value, max_age=self.max_age)
        except BadSignature:
            raise AuthError("the console session is invalid or has expired; log in again") from None
        identity = Identity(
            subject=str(data["sub"]),
            name=str(data["name"]),
            role=Role.parse(str(data["role"])),
            kind=str(data["kind"]),
            token_id=data.get("tid"),
        )
        return Session(identity, str(data["csrf"]))

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
