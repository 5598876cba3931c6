"""Errors raised by breakglass.

Every error the library raises derives from :class:`BreakglassError`::

    BreakglassError
    ├── ConfigurationError        a setting is missing or invalid; names the setting
    ├── ProviderNotFoundError     BREAKGLASS_PROVIDER names no installed adapter
    ├── StoreError                the embedded SQLite store cannot be read or written
    │   ├── StoreMissingError     the store file does not exist (yet)
    │   ├── AuditStoreError       the audit store (SQLite or PostgreSQL) cannot be used
    │   │   └── AuditChainError   its hash chain or export log is broken (an edit, a deletion)
    │   └── ServeStoreError       serve's own store (tokens, idempotency keys, suspensions)
    ├── AdminError                a write through a vendor's management API failed
    │   ├── AdminAuthError        401/403: the token is wrong or lacks the permission
    │   ├── AdminNotFoundError    404: the project, environment or flag does not exist
    │   ├── AdminRejectedError    4xx other than the above: the vendor refused the change
    │   ├── AdminUnavailableError 5xx, 429 past the retry budget, timeouts, refused connections
    │   └── NotServedError        acknowledged, but readers are not served the asked-for value
    ├── AuditSourceError          a vendor's change log could not be read
    ├── AuditRecordError          an audit record cannot be kept as evidence (malformed)
    ├── ProbeError                a latency probe could not run safely
    ├── AuthError                 (serve) a request's credentials are missing, invalid or too weak
    └── Suspended                 (breakglass.guard) a request refused while halted

Messages never contain a secret: they name the setting to fix instead.

The per-request decision never raises: being unsure is a state (halted, with a
cause), not an exception. See :mod:`breakglass.state`.
"""

from __future__ import annotations


class BreakglassError(Exception):
    """Base class of every error raised by breakglass."""


class ConfigurationError(BreakglassError):
    """A setting is missing or invalid. The message names the setting."""


class ProviderNotFoundError(ConfigurationError):
    """The configured provider has no installed adapter distribution."""


class MissingExtraError(ConfigurationError):
    """A command needs an optional part (an extra) that is not installed; the message names it."""


class StoreError(BreakglassError):
    """The embedded SQLite store is corrupt, unreadable or unwritable.

    Attributes:
        transient: ``True`` when another process merely held a lock too long.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreMissingError(StoreError):
    """The store file does not exist (yet)."""


class AuditStoreError(StoreError):
    """The audit store cannot be opened, migrated, read or written.

    The message names the SQLite file or the PostgreSQL host and database,
    never the URL's password.
    """


class AuditChainError(AuditStoreError):
    """The audit store's hash chain or export log does not hold: a record was changed or deleted.

    The message names the first record (by its place in the chain and its id)
    or the export where it breaks.
    """


class ServeStoreError(StoreError):
    """``breakglass serve``'s store (SQLite or PostgreSQL) cannot be used; names it, never a password."""


class AuthError(BreakglassError):
    """A request to ``breakglass serve`` is not authenticated or not allowed.

    Attributes:
        status: 401 (who are you?) or 403 (not allowed).
    """

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class AdminError(BreakglassError):
    """A change through a vendor's management API did not take effect."""


class AdminAuthError(AdminError):
    """The vendor rejected the credentials (401/403)."""


class AdminNotFoundError(AdminError):
    """The vendor does not know the project, environment or flag (404)."""


class AdminRejectedError(AdminError):
    """The vendor refused the change for another client-side reason (4xx)."""


class AdminUnavailableError(AdminError):
    """The vendor could not be reached or kept failing (5xx, 429, timeouts)."""


class NotServedError(AdminError):
    """The vendor acknowledged the change, but readers are not served the asked-for value.

    For example a LaunchDarkly flag whose off variation serves ``true``, or an
    Unleash flag whose strategies exclude the service. ``ack`` is the vendor's
    acknowledgement, with what is served and why.
    """

    def __init__(self, message: str, ack: object) -> None:
        super().__init__(message)
        self.ack = ack


class AuditSourceError(BreakglassError):
    """A vendor's change log could not be read."""


class AuditRecordError(BreakglassError):
    """An audit record cannot be kept as evidence (malformed); counted and reported, never stored."""


class ProbeError(BreakglassError):
    """A latency probe refused to run or could not restore the flag."""
