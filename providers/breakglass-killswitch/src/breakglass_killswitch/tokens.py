"""The switch's own API tokens: named, role-bound, stored as SHA-256 digests, shown once.

They are not the control plane's tokens: the switch keeps its own credentials
so that a compromised control plane cannot hand out access to it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

from breakglass_killswitch.audit import iso, now
from breakglass_killswitch.errors import ConfigError

if TYPE_CHECKING:
    from breakglass_killswitch.store import Store, TokenRow

PREFIX = "bgks_"
ROLES = ("viewer", "halter", "approver")
"""Each role may do what the ones before it may: read; halt; approve and resume."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def digest(token: str) -> str:
    """The stored form of a token (the tokens are long and random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, name: str, role: str) -> str:
    """Issue a token; the caller shows it once, the store keeps only its digest."""
    if not _NAME.match(name):
        raise ConfigError(f"token name {name!r}: use letters, digits, '.', '_', '@', '-'")
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    store.add_token(name, role, digest(token), iso(now()))
    return token


def authenticate(store: Store, presented: str) -> TokenRow | None:
    """The live token behind ``presented``, or ``None`` (unknown, revoked, malformed)."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    return store.token_by_digest(digest(presented))


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    if role not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)
