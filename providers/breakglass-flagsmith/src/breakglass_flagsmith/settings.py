"""Settings of the Flagsmith adapter (``BREAKGLASS_FLAGSMITH__*`` or ``[flagsmith]`` in ``breakglass.toml``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.settings import load_section

if TYPE_CHECKING:
    from breakglass.settings import Settings

SECTION = "flagsmith"

DEFAULT_API_URL = "https://edge.api.flagsmith.com/api/v1/"
"""The SDK's default: Flagsmith's public Edge API, which serves only the SDK endpoints."""

SAAS_ADMIN_API_URL = "https://api.flagsmith.com/api/v1/"
"""Flagsmith's hosted management API (feature states, audit log)."""

ADMIN_SCHEMES = ("Token", "Api-Key")
"""``Authorization`` schemes the Flagsmith management API accepts: a user token or an organisation key."""

ENVIRONMENT_KEY_SETTING = "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY"
ADMIN_TOKEN_SETTING = "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN"  # noqa: S105 -- the name of a setting


def _api_base(value: str, example: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"must be an http(s) URL such as {example}"
        raise ValueError(msg)
    if parts.username or parts.password or parts.query or parts.fragment:
        msg = "must be a plain API base URL: no credentials, query or fragment"
        raise ValueError(msg)
    # The SDK joins endpoint names onto the base with urljoin: without the slash the
    # last path segment ("v1") would be replaced instead of extended.
    return value if value.endswith("/") else f"{value}/"


class FlagsmithSettings(BaseSettings):
    """Where the Flagsmith API is and how to talk to it.

    Point ``api_url`` at a Flagsmith Edge Proxy to read through the relay layer;
    nothing else changes. The management calls (halt/resume, audit) need the
    real API: they go to ``admin_api_url``, which defaults to ``api_url`` for a
    self-hosted server and to ``https://api.flagsmith.com/api/v1/`` when
    ``api_url`` is the public Edge API.
    """

    # The prefix load_section() uses: a direct construction must never pick up unrelated
    # variables such as API_URL or MODE from the process environment.
    model_config = SettingsConfigDict(
        env_prefix="BREAKGLASS_FLAGSMITH__", extra="forbid", allow_inf_nan=False
    )

    api_url: str = DEFAULT_API_URL
    """SDK API base, ending in ``/api/v1/`` (Flagsmith server, Edge API or Edge Proxy)."""

    mode: Literal["local", "remote"] = "local"
    """``local``: fetch the environment document and evaluate in-process (default).
    ``remote``: ask ``GET /flags/`` on every refresh."""

    environment_key: SecretStr
    """The environment key the SDK reads with: a server-side key (``ser.…``) for local evaluation."""

    refresh_interval: float = Field(default=0.2, gt=0, le=300)
    """Seconds between document (or flags) fetches: the propagation bound for a halt."""

    request_timeout: float = Field(default=2.0, gt=0, le=60)
    """Seconds any single HTTP request may take; a hung server is a failed contact after this."""

    confirm_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds ``halt``/``resume`` wait for a reader's read to show the change before reporting
    what it does show."""

    feature_name: str | None = None
    """The feature's name in Flagsmith; defaults to ``BREAKGLASS_FLAG_KEY``."""

    admin_token: SecretStr | None = None
    """Management credentials *with their scheme*: ``Token <user token>`` or ``Api-Key <organisation key>``."""

    admin_api_url: str | None = None
    """Management API base, when it differs from ``api_url`` (an Edge Proxy serves no management calls)."""

    project_id: int | None = Field(default=None, gt=0)
    """The numeric id of the project holding the feature (admin look-ups and the audit log)."""

    environment_api_key: str | None = None
    """The environment's client-side key (the id in the management API's URLs; not a secret)."""

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        return _api_base(value, "http://127.0.0.1:8000/api/v1/")

    @field_validator("admin_api_url")
    @classmethod
    def _check_admin_api_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _api_base(value, "https://api.flagsmith.com/api/v1/")

    @field_validator("environment_key")
    @classmethod
    def _check_environment_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text:
            msg = "must not be empty"
            raise ValueError(msg)
        if info.data.get("mode", "local") == "local" and not text.startswith("ser."):
            # Never echo the value; say what kind of key is needed and where to get it.
            msg = (
                "must be a server-side key (ser.…) for local evaluation: create one under the "
                "environment's SDK keys, or set BREAKGLASS_FLAGSMITH__MODE=remote"
            )
            raise ValueError(msg)
        return SecretStr(text)

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme, _, credential = value.get_secret_value().strip().partition(" ")
        if scheme not in ADMIN_SCHEMES or not credential.strip():
            # Never echo the value: it may be a bare secret.
            msg = (
                "must be 'Token <user token>' or 'Api-Key <organisation API key>', scheme included"
            )
            raise ValueError(msg)
        return SecretStr(f"{scheme} {credential.strip()}")

    @field_validator("feature_name", "environment_api_key")
    @classmethod
    def _optional_non_empty(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @property
    def admin_base(self) -> str:
        """The API base for management calls (see the class docstring)."""
        if self.admin_api_url is not None:
            return self.admin_api_url
        if self.api_url == DEFAULT_API_URL:
            return SAAS_ADMIN_API_URL
        return self.api_url

    @property
    def admin_scheme(self) -> str | None:
        """``Token`` or ``Api-Key`` (never the credential), or ``None`` without an admin token."""
        if self.admin_token is None:
            return None
        return self.admin_token.get_secret_value().partition(" ")[0]

    def feature(self, flag_key: str) -> str:
        """The Flagsmith feature name for ``flag_key``."""
        return self.feature_name or flag_key

    @property
    def poll_bound(self) -> float:
        """Seconds a change may take to reach the source by design: one refresh plus one request."""
        return self.refresh_interval + self.request_timeout


def load_flagsmith_settings(
    settings: Settings | None = None, **overrides: Any
) -> FlagsmithSettings:
    """Read the ``flagsmith`` section; a missing or invalid value is a ``ConfigurationError`` naming it.

    Values given in code (``settings.sections["flagsmith"]``, then ``overrides``)
    win over the environment and the TOML file.
    """
    return load_section(FlagsmithSettings, SECTION, settings, **overrides)
