"""Settings of the Unleash adapter (``BREAKGLASS_UNLEASH__*`` or ``[unleash]`` in ``breakglass.toml``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.settings import load_section

SECTION = "unleash"


class UnleashSettings(BaseSettings):
    """Where the Unleash API is and how to talk to it.

    Point ``url`` at Unleash Edge instead of the server to read through the
    relay layer; nothing else changes (the admin and audit calls need the
    server itself, so give them ``admin_url`` when ``url`` is an Edge node).
    """

    # The same prefix load_section() uses: a direct construction must never pick up
    # unrelated variables such as ENVIRONMENT or URL from the process environment.
    model_config = SettingsConfigDict(
        env_prefix="BREAKGLASS_UNLEASH__", extra="forbid", allow_inf_nan=False
    )

    url: str
    """API base URL, ending in ``/api``, e.g. ``http://127.0.0.1:4242/api``."""

    client_token: SecretStr
    """A backend (client) token scoped to ``project:environment``; used for reading."""

    admin_token: SecretStr | None = None
    """An admin token or personal access token; needed for halt/resume and the audit pull."""

    admin_url: str | None = None
    """API base for admin and audit calls when ``url`` points at Unleash Edge; defaults to ``url``."""

    project: str = "default"
    """The Unleash project holding the flag."""

    environment: str = "development"
    """The Unleash environment the flag is toggled and audited in (the client token selects what is read)."""

    app_name: str = "breakglass"
    """Sent to Unleash as the application name; part of the fixed evaluation context."""

    refresh_interval: float = Field(default=0.2, gt=0, le=60)
    """Seconds between reads of the single-flag endpoint: the propagation bound for a halt."""

    sdk_refresh_interval: float = Field(default=5.0, gt=0, le=300)
    """Seconds between the Unleash SDK's own polls of the full flag set (evaluation data)."""

    request_timeout: float = Field(default=2.0, gt=0, le=60)
    """Seconds any single HTTP request may take; a hung server is a failed contact after this."""

    confirm_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds ``halt``/``resume`` wait for the client API to show the change before reporting
    what readers are served from what it does show."""

    @field_validator("url", "admin_url")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = "must be an http(s) URL such as http://127.0.0.1:4242/api"
            raise ValueError(msg)
        if parts.username or parts.password:
            msg = "must not carry credentials; put tokens in CLIENT_TOKEN / ADMIN_TOKEN"
            raise ValueError(msg)
        if not parts.path.endswith("/api"):
            msg = "must be the API base, ending in /api (e.g. http://127.0.0.1:4242/api)"
            raise ValueError(msg)
        return value

    @field_validator("project", "environment", "app_name")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            msg = "must not be empty"
            raise ValueError(msg)
        return value.strip()

    @property
    def admin_base(self) -> str:
        """The API base for admin and audit calls."""
        return self.admin_url or self.url

    @property
    def poll_bound(self) -> float:
        """Seconds a change may take to reach the source by design.

        A halt is seen by the next single-flag read (``refresh_interval`` plus one
        request); a resume also waits for the SDK's next poll of the full flag set,
        which Unleash refreshes on a one-second revision tick.
        """
        return max(
            self.refresh_interval + self.request_timeout,
            1.0 + self.sdk_refresh_interval + self.request_timeout,
        )


def load_unleash_settings(**overrides: Any) -> UnleashSettings:
    """Read the ``unleash`` section; a missing or invalid value is a ``ConfigurationError`` naming it."""
    return load_section(UnleashSettings, SECTION, **overrides)
