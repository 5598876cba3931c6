"""Settings of the LaunchDarkly adapter (``BREAKGLASS_LAUNCHDARKLY__*`` or ``[launchdarkly]`` in ``breakglass.toml``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.settings import load_section

SECTION = "launchdarkly"
PREFIX = "BREAKGLASS_LAUNCHDARKLY__"
SDK_KEY_SETTING = f"{PREFIX}SDK_KEY"
API_TOKEN_SETTING = f"{PREFIX}API_TOKEN"

DEFAULT_BASE_URI = "https://app.launchdarkly.com"
DEFAULT_STREAM_URI = "https://stream.launchdarkly.com"
DEFAULT_EVENTS_URI = "https://events.launchdarkly.com"
DEFAULT_API_BASE_URL = "https://app.launchdarkly.com"

# What the SDK accepts (ldclient.impl.util.validate_sdk_key_format): anything else is
# silently discarded by the SDK, which then reads as a confusing 401.
_SDK_KEY_CHARS = re.compile(r"^[A-Za-z0-9._-]{1,8192}$")
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")


class LaunchDarklySettings(BaseSettings):
    """Where LaunchDarkly (or the Relay Proxy) is and how to talk to it.

    To read through the Relay Proxy, point ``base_uri`` and ``stream_uri`` at
    it; the admin and audit calls keep going to ``api_base_url`` (the REST API
    is not relayed).
    """

    # Its own prefix: built directly, it must not pick up stray unprefixed variables.
    model_config = SettingsConfigDict(
        env_prefix="BREAKGLASS_LAUNCHDARKLY__", extra="forbid", allow_inf_nan=False
    )

    sdk_key: SecretStr
    """The environment's server-side SDK key (``sdk-...``): used to read the flag."""

    api_token: SecretStr | None = None
    """An access token (personal or service) with write access to the flag; needed for halt/resume and the audit pull."""

    project_key: str = "default"
    """The project holding the flag."""

    environment_key: str = "production"
    """The environment the SDK key belongs to; the one toggled and audited."""

    base_uri: str = DEFAULT_BASE_URI
    """The SDK's polling base (``/sdk/latest-all``); the Relay Proxy's URL when reading through it."""

    stream_uri: str = DEFAULT_STREAM_URI
    """The SDK's streaming base (``/all``); the Relay Proxy's URL when reading through it."""

    events_uri: str = DEFAULT_EVENTS_URI
    """Where analytics events go when ``send_events`` is on."""

    api_base_url: str = DEFAULT_API_BASE_URL
    """The REST API v2 base, for halt/resume and the audit log."""

    send_events: bool = False
    """Send analytics events (evaluation counts) to LaunchDarkly. Off: a stop button needs no analytics."""

    stream: bool = True
    """Read through the streaming connection (the default). ``False`` polls every ``poll_interval`` (at least 30 s)."""

    poll_interval: float = Field(default=30.0, ge=30.0, le=3600.0)
    """Seconds between the SDK's polls when ``stream`` is off (LaunchDarkly's minimum is 30)."""

    verify_interval: float = Field(default=10.0, ge=0.0, le=300.0)
    """Seconds between second-opinion checks of the polling endpoint (the stall defence); 0 turns it off.

    The plugin lowers it to a third of ``BREAKGLASS_MAX_STALENESS`` when it is larger,
    so a healthy reader always confirms well within the staleness window.
    """

    initial_reconnect_delay: float = Field(default=1.0, gt=0.0, le=60.0)
    """Seconds before the SDK's first stream reconnection attempt (it backs off from there, up to 30 s)."""

    connect_timeout: float = Field(default=5.0, gt=0.0, le=60.0)
    """Seconds to open any connection (SDK and REST)."""

    request_timeout: float = Field(default=5.0, gt=0.0, le=120.0)
    """Seconds any single REST or second-opinion request may take."""

    context_key: str = "breakglass-system-active"
    """The key of the fixed service context the flag is evaluated for (rules may target it)."""

    confirm_timeout: float = Field(default=10.0, gt=0.0, le=120.0)
    """Seconds ``halt``/``resume`` wait for the SDK's data to carry the change before
    reporting what readers are served as not confirmed."""

    http_proxy: str | None = None
    """An HTTP(S) proxy for every connection; unset: the ``https_proxy`` / ``no_proxy`` environment, as the SDK does."""

    @field_validator("sdk_key")
    @classmethod
    def _sdk_key_format(cls, value: SecretStr) -> SecretStr:
        if not _SDK_KEY_CHARS.match(value.get_secret_value()):
            # Never echo the value: it is a secret.
            msg = "must be a LaunchDarkly SDK key (letters, digits, '.', '_', '-'), as shown for the environment"
            raise ValueError(msg)
        return value

    @field_validator("api_token")
    @classmethod
    def _token_present(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("base_uri", "stream_uri", "events_uri", "api_base_url", "http_proxy")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = "must be an http(s) URL such as https://app.launchdarkly.com"
            raise ValueError(msg)
        if parts.username or parts.password:
            msg = "must not carry credentials; put keys in SDK_KEY / API_TOKEN"
            raise ValueError(msg)
        if parts.query or parts.fragment:
            msg = "must not have a query string or fragment"
            raise ValueError(msg)
        return value

    @field_validator("project_key", "environment_key", "context_key")
    @classmethod
    def _key(cls, value: str) -> str:
        value = value.strip()
        if not _KEY_CHARS.match(value):
            msg = "must be a LaunchDarkly key (letters, digits, '.', '_', '-')"
            raise ValueError(msg)
        return value

    @property
    def poll_bound(self) -> float:
        """Seconds a change may take to reach the source by design: 0 when streaming."""
        return 0.0 if self.stream else self.poll_interval + self.request_timeout


def load_launchdarkly_settings(**overrides: Any) -> LaunchDarklySettings:
    """Read the ``launchdarkly`` section; a missing or invalid value is a ``ConfigurationError`` naming it."""
    return load_section(LaunchDarklySettings, SECTION, **overrides)
