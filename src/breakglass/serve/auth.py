"""Who is asking, and may they: roles, named API tokens, OIDC bearer JWTs.

Authority to halt is deliberately broad (``halter`` and above, no approval);
resuming is narrow (``approver``). The identity found here is the actor of
every audit record; the request body never names the actor.

Tokens are ``bgt_<id>_<secret>``: the secret is 256 random bits, stored only
as its SHA-256 (a slow hash adds nothing to a secret nobody can guess), and
shown once when made. The token list is kept in memory and re-read every
``token_refresh`` seconds, so a revocation reaches every replica within that
time, and a store that has gone away never locks the operators out of the
stop button: the last list read keeps working.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import AuthError, BreakglassError
from breakglass.serve.refreshed import Refreshed
from breakglass.serve.store import StoredToken

if TYPE_CHECKING:
    from breakglass.serve.settings import OidcSettings
    from breakglass.serve.store import ServeStore

logger = logging.getLogger("breakglass.serve")

TOKEN_PREFIX = "bgt_"  # noqa: S105 -- a prefix, not a secret


class Role(enum.IntEnum):
    """What a caller may do. From viewer up, each role may do everything the ones below it may.

    ``reporter`` stands apart: a service's token, which sends reader reports and
    reads the flag over OFREP and nothing else. Reports are refused from every
    other role, so no person's token (a viewer's is handed out widely) can tell
    serve that a reader stopped when it did not.
    """

    REPORTER = 0
    """Send reader reports; read the flag over OFREP. For services, never for people."""
    VIEWER = 1
    """See the state, the targets, the history and the audit trail."""
    HALTER = 2
    """Also halt. Deliberately broad: any operator on oversight duty."""
    APPROVER = 3
    """Also resume."""
    ADMIN = 4
    """Also manage API tokens."""

    @property
    def label(self) -> str:
        """The role's name, lower case."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role called ``text``; raises ``ValueError`` naming the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {text!r} (one of {names})") from None


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    Attributes:
        subject: Stable id: ``token:<id>`` or ``oidc:<issuer>#<sub>``.
        name: How the audit trail names the person (token name, e-mail).
        role: What they may do.
        kind: ``token``, ``oidc``, or ``system`` (serve acting on its own, e.g. undoing an
            ungated resume).
        token_id: The API token behind it, so a revocation ends console sessions too.
        issued_at: A JWT's ``iat`` (the provider's clock, epoch seconds), so an admin's
            revocation refuses the person's older bearer tokens; ``None`` without one.
    """

    subject: str
    name: str
    role: Role
    kind: str
    token_id: str | None = None
    issued_at: float | None = None

    @property
    def actor(self) -> str:
        """The actor recorded by the targets and the audit trail."""
        return self.name if self.kind in ("oidc", "system") else f"token:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "subject": self.subject,
            "name": self.name,
            "role": self.role.label,
            "kind": self.kind,
        }

    def require(self, role: Role, what: str) -> None:
        """Raise a 403 :class:`AuthError` unless this identity holds ``role`` or above."""
        if self.role < role:
            raise AuthError(
                f"{what} needs the {role.label} role; {self.name} is {self.role.label}", status=403
            )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenBook:
    """Named API tokens: made, listed, revoked, and checked from a list kept in memory."""

    def __init__(
        self, store: ServeStore, *, refresh: float = 2.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._clock = clock
        empty: dict[str, StoredToken] = {}
        self._tokens = Refreshed(
            lambda: {t.id: t for t in store.tokens()},
            empty,
            refresh=refresh,
            what="the API tokens",
        )

    @property
    def problem(self) -> str | None:
        """Why the last re-read failed (the last good list is in use meanwhile)."""
        return self._tokens.problem

    def create(self, name: str, role: Role, *, by: str) -> tuple[StoredToken, str]:
        """Make a token; returns it and the full token text (shown once, never stored)."""
        name = name.strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise BreakglassError("a token name is 1 to 100 printable characters")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        stored = StoredToken(
            id=token_id,
            name=name,
            role=role.label,
            secret_hash=_hash(secret),
            created_at=isoformat_ms(self._clock.now()),
            created_by=by,
        )
        self._store.add_token(stored)
        self._tokens.reload(wait=True)
        return stored, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def revoke(self, name: str, *, by: str) -> bool:
        """Revoke the live token called ``name``; ``False`` when there is none."""
        done = self._store.revoke_token(name, by=by, at=self._clock.now())
        self._tokens.reload(wait=True)
        return done

    def list(self) -> list[StoredToken]:
        """Every token (read from the store)."""
        return self._store.tokens()

    def any_admin(self) -> bool:
        """Whether a live admin token exists (read from the store)."""
        return any(t.role == Role.ADMIN.label and t.revoked_at is None for t in self.list())

    def live(self, token_id: str) -> StoredToken | None:
        """The unrevoked token with this id, from the list in memory (re-read when due)."""
        token = self._tokens.get().get(token_id)
        return token if token is not None and token.revoked_at is None else None

    def verify(self, text: str) -> Identity:
        """The identity of a ``bgt_`` token; raises a 401 :class:`AuthError` otherwise."""
        body = text.removeprefix(TOKEN_PREFIX)
        token_id, _, secret = body.partition("_")
        token = self.live(token_id) if token_id and secret else None
        if token is None and token_id and secret and self.problem is None:
            # A token made on another replica since the last read: look once more.
            self._tokens.reload()
            token = self.live(token_id)
        if token is None or not hmac.compare_digest(token.secret_hash, _hash(secret)):
            raise AuthError("the API token is unknown, revoked or wrong")
        return Identity(
            subject=f"token:{token.id}",
            name=token.name,
            role=Role.parse(token.role),
            kind="token",
            token_id=token.id,
        )


class OidcVerifier:
    """Checks OIDC bearer JWTs: signature by a key of the issuer's JWKS, ``iss``, ``aud``, ``exp``.

    The key set is fetched on first use, kept for ``cache_seconds``, and
    fetched again (at most every ``refetch_seconds``) when a token names a key
    it does not hold, so a key rotation needs no restart.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        cache_seconds: float = 300.0,
        refetch_seconds: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self._cache_seconds = cache_seconds
        self._refetch_seconds = refetch_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: Any = None
        self._fetched_at = -float("inf")

    def _keys_url(self) -> str:
        """``jwks_url`` if set, else the discovery document's ``jwks_uri`` (providers put it anywhere)."""
        import httpx

        if self.settings.jwks_url:
            return self.settings.jwks_url
        try:
            answer = httpx.get(self.settings.discovery_url, timeout=self._timeout)
            answer.raise_for_status()
            found = answer.json().get("jwks_uri")
        except (httpx.HTTPError, ValueError, AttributeError):
            found = None
        return found if isinstance(found, str) and found else self.settings.keys_url

    def _key_set(self, *, force: bool) -> Any:
        import httpx
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        with self._lock:
            age = time.monotonic() - self._fetched_at
            if (
                self._keys is not None
                and age < self._cache_seconds
                and not (force and age >= self._refetch_seconds)
            ):
                return self._keys
            try:
                answer = httpx.get(self._keys_url(), timeout=self._timeout)
                answer.raise_for_status()
                self._keys = KeySet.import_key_set(answer.json())
            except (httpx.HTTPError, JoseError, ValueError, KeyError, TypeError) as exc:
                if self._keys is None:
                    raise AuthError(
                        f"cannot fetch the OIDC signing keys ({type(exc).__name__}); "
                        "use an API token meanwhile"
                    ) from None
                logger.warning("cannot refresh the OIDC signing keys: %s", type(exc).__name__)
            self._fetched_at = time.monotonic()
            return self._keys

    def verify(
        self, text: str, *, audience: str | None = None, nonce: str | None = None
    ) -> Identity:
        """The identity a JWT names; raises a 401 :class:`AuthError` (403 without a role).

        ``audience`` replaces the configured one (an ID token is for the client id);
        ``nonce``, when given, must be the token's ``nonce`` claim (a login's replay check).
        """
        from joserfc import jwt
        from joserfc.errors import JoseError

        s = self.settings
        try:
            try:
                token = jwt.decode(text, self._key_set(force=False), algorithms=s.algorithms)
            except JoseError as first:
                if type(first).__name__ not in ("MissingKeyError", "InvalidKeyIdError"):
                    raise
                token = jwt.decode(text, self._key_set(force=True), algorithms=s.algorithms)
            registry = jwt.JWTClaimsRegistry(
                leeway=int(s.leeway),
                iss={"essential": True, "value": s.issuer or ""},
                aud={"essential": True, "value": audience or s.audience or ""},
                exp={"essential": True},
                sub={"essential": True},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise AuthError(f"the bearer token is not valid: {type(exc).__name__}") from None
        claims = token.claims
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise AuthError("the ID token's nonce does not match this login (a replayed token?)")
        role = self._role(claims.get(s.role_claim))
        if role is None:
            raise AuthError(
                f"the bearer token carries no breakglass role in the {s.role_claim!r} claim",
                status=403,
            )
        name = claims.get(s.actor_claim) or claims["sub"]
        # A finite number no later than now when present (the registry checked it); one before
        # 1970 reads as 1970 (older than any revocation) rather than overflow a float.
        issued = claims.get("iat")
        return Identity(
            subject=f"oidc:{s.issuer}#{claims['sub']}",
            name=str(name)[:200],
            role=role,
            kind="oidc",
            issued_at=float(max(issued, 0)) if issued is not None else None,
        )

    def _role(self, value: Any) -> Role | None:
        values = value if isinstance(value, list) else [value]
        best: Role | None = None
        for item in values:
            if not isinstance(item, str):
                continue
            mapped = self.settings.role_map.get(item, item)
            try:
                role = Role.parse(mapped)
            except ValueError:
                continue
            best = role if best is None or role > best else best
        return best
