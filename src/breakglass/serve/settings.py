"""Settings of ``breakglass serve`` (``BREAKGLASS_SERVE__*`` or ``[serve]`` in ``breakglass.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.settings import Settings, load_section

SECTION = "serve"


class OidcSettings(BaseSettings):
    """Single sign-on: bearer JWTs from an OpenID Connect provider, checked against its JWKS."""

    model_config = SettingsConfigDict(extra="ignore")

    issuer: str | None = None
    """The ``iss`` every token must carry; OIDC is off when unset."""

    audience: str | None = None
    """The ``aud`` every token must carry (this service's client id)."""

    jwks_url: str | None = None
    """Where the signing keys are; when unset, the discovery document's ``jwks_uri``
    (``<issuer>/.well-known/jwks.json`` if there is none)."""

    role_claim: str = "breakglass_role"
    """The claim that holds the role (a string or a list of strings)."""

    role_map: dict[str, str] = Field(default_factory=dict)
    """Claim values mapped to roles (``{"sre": "halter"}``); values that are role names map to themselves."""

    actor_claim: str = "email"
    """The claim that names the person in the audit trail (``sub`` when missing)."""

    client_id: str | None = None
    """The console's client id for single sign-on (authorization code with PKCE); ``audience`` when unset."""

    client_secret: SecretStr | None = None
    """The client secret, for providers that require one with PKCE (sent in the token request only)."""

    login: bool = True
    """Offer "Sign in with single sign-on" on the console (needs the provider's discovery document)."""

    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    """Signature algorithms accepted; never ``none`` or a shared-secret HMAC."""

    leeway: float = Field(default=30.0, ge=0, le=300)
    """Seconds of clock skew tolerated on ``exp`` and ``nbf``."""

    revocation_skew: float = Field(default=60.0, ge=0, le=3600)
    """Seconds the provider's clock may be ahead of serve's (never less than ``leeway``): after a
    person's access is revoked, their bearer tokens dated (``iat``) up to this long after it are
    refused too."""

    longest_token_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    """The longest lifetime the provider gives a bearer token: a revoked person's token without
    ``iat`` is refused until the revocation is this old (and ``revocation_skew``)."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            msg = f"not accepted: {', '.join(bad)} (only public-key signatures)"
            raise ValueError(msg)
        return value

    @property
    def enabled(self) -> bool:
        """Whether bearer JWTs are accepted."""
        return bool(self.issuer and self.audience)

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document."""
        return f"{(self.issuer or '').rstrip('/')}/.well-known/openid-configuration"

    @property
    def client(self) -> str:
        """The client id the console logs in as."""
        return self.client_id or self.audience or ""

    @property
    def keys_url(self) -> str:
        """The JWKS address."""
        return self.jwks_url or f"{(self.issuer or '').rstrip('/')}/.well-known/jwks.json"


class ServeSettings(BaseSettings):
    """Where serve listens, what it stores, and how it authenticates."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    """The address to listen on."""

    port: int = Field(default=8470, ge=0, le=65535)
    """The port (0: any free one)."""

    database_url: SecretStr | None = None
    """PostgreSQL shared by several replicas (``postgresql://...``); SQLite when unset."""

    path: Path | None = None
    """The SQLite store; ``<state_dir>/serve.db`` when unset."""

    public_origin: str | None = None
    """The console's origin as browsers see it (``https://breakglass.example.com``); the
    request's own ``Host`` when unset. Unsafe requests from any other origin are refused."""

    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    """How long a console login lasts at most."""

    session_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 7 * 60)
    """A console session without a request for this long ends (an open console asks every 2 s)."""

    secure_cookies: bool | None = None
    """``Secure`` cookies; on when ``public_origin`` is https."""

    halt_timeout: float = Field(default=30.0, gt=0, le=300)
    """Seconds a halt request waits for the first target to acknowledge."""

    resume_timeout: float = Field(default=60.0, gt=0, le=600)
    """Seconds a resume waits for every target."""

    login_failures: int = Field(default=10, ge=1, le=10_000)
    """Failed logins per client address and ``login_window`` before answering 429."""

    login_window: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds over which failed logins are counted."""

    token_refresh: float = Field(default=2.0, gt=0, le=60)
    """Seconds between re-reads of the token list (how fast a revocation reaches every replica)."""

    otlp_endpoint: str | None = None
    """An OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``); no tracing when unset."""

    oidc: OidcSettings = Field(default_factory=OidcSettings)

    def sqlite_path(self, settings: Settings) -> Path:
        """The SQLite file."""
        return self.path or settings.state_dir / "serve.db"

    @property
    def cookies_secure(self) -> bool:
        """Whether cookies carry ``Secure``."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return bool(self.public_origin and self.public_origin.startswith("https://"))


def load_serve_settings(settings: Settings | None = None, **overrides: Any) -> ServeSettings:
    """Read the ``serve`` section (environment, ``.env``, TOML), raising ConfigurationError."""
    return load_section(ServeSettings, SECTION, settings, **overrides)
