"""Settings of the audit history (``BREAKGLASS_AUDIT__*`` or ``[audit]`` in ``breakglass.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.settings import Settings, load_section

SECTION = "audit"
PREFIX = "BREAKGLASS_AUDIT__"


class FeedSettings(BaseModel):
    """One audit feed (``[audit.feeds.<name>]``), pulled with ``breakglass audit pull --provider <name>``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str
    """The feed's address, e.g. the kill switch's ``https://killswitch.example:8095/v1/audit``."""

    token: SecretStr | None = None
    """A bearer token the feed accepts (for the kill switch: one of its own, role ``viewer``)."""

    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise ValueError("an http:// or https:// URL")
        return value


class AuditSettings(BaseSettings):
    """Where the audit history is kept and what the bridge records by itself.

    Read with :func:`load_audit_settings`; unknown keys are refused.
    """

    # The prefix matters even when built directly: without it, `path` would read $PATH.
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    database_url: SecretStr | None = None
    """A PostgreSQL URL (``postgresql://user:password@host:5432/db``); SQLite when unset.

    Held as a secret: it may carry a password, so it never appears in logs,
    reprs or error messages.
    """

    path: Path | None = None
    """The SQLite audit store; ``<state_dir>/audit.db`` when unset (ignored with ``database_url``)."""

    record_observed: bool = True
    """Record every flip of the flag this process observes (on by default; see ``docs/compliance.md``)."""

    record_changes: bool = True
    """Record every halt and resume made through this process, with actor and reason."""

    spool_path: Path | None = None
    """Where the bridge keeps its own records while the store is down; ``<state_dir>/audit-spool.jsonl``."""

    signing_key: Path | None = None
    """An Ed25519 private key (PEM, from ``breakglass audit keygen``): sign every JSON Lines export.

    Set, it must be readable: an export that cannot be signed fails rather than
    going out unsigned.
    """

    tsa_url: str | None = None
    """An RFC 3161 time-stamping authority: stamp every JSON Lines export's hash (``--tsa-url``)."""

    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds to wait for the PostgreSQL server (and for a SQLite lock held by another process)."""

    feeds: dict[str, FeedSettings] = Field(default_factory=dict)
    """Audit feeds of other components (the kill switch), by the provider name their records carry."""

    @field_validator("signing_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `BREAKGLASS_AUDIT__SIGNING_KEY=` would otherwise become Path(""), i.e. ".".
        return None if isinstance(value, str) and not value.strip() else value

    def spool(self, settings: Settings) -> Path:
        """The spool file for ``settings``."""
        return self.spool_path or settings.state_dir / "audit-spool.jsonl"

    def sqlite_path(self, settings: Settings) -> Path:
        """The SQLite file for ``settings`` (its state directory unless ``path`` is set)."""
        return self.path or settings.state_dir / "audit.db"


def load_audit_settings(**overrides: Any) -> AuditSettings:
    """Read the ``audit`` section (environment, ``.env``, TOML), raising ConfigurationError."""
    return load_section(AuditSettings, SECTION, **overrides)
