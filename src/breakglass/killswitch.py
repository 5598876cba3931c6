"""The infrastructure kill switch as one more halt target (``[killswitch]`` settings).

``breakglass-killswitch`` is a separate distribution on purpose (it imports
nothing of breakglass); this module speaks its documented HTTP API, so that a
halt through the CLI or serve reaches the switch as well as the flag vendors:
stop wins across both mechanisms. A halt is ``POST /v1/halt`` (acknowledged
only when the switch verified that nothing serves); a resume reads the open
halt from ``GET /v1/status`` and sends ``POST /v1/resume`` with an authorisation
signed by ``signing_key`` (Ed25519): the caller has passed this side's gate.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import (
    AdminAuthError,
    AdminRejectedError,
    AdminUnavailableError,
    ConfigurationError,
)
from breakglass.retry import safe_url
from breakglass.seams import Acknowledgement
from breakglass.settings import load_section
from breakglass.targets import APPROVERS

SECTION = "killswitch"
AUTHORISATION_PREFIX = "bgresume1"
AUTHORISATION_TYPE = "breakglass.killswitch.resume/v1"


class KillswitchSettings(BaseSettings):
    """Where the kill switch listens and how to talk to it (``BREAKGLASS_KILLSWITCH__*``)."""

    model_config = SettingsConfigDict(
        env_prefix="BREAKGLASS_KILLSWITCH__", extra="forbid", allow_inf_nan=False
    )

    url: str | None = None
    """The switch's base URL (``https://killswitch.example:8095``); unset: no kill switch."""
    token: SecretStr | None = None
    """A ``halter`` token of the switch (its own tokens, not serve's)."""
    switch: str | None = None
    """The switch's ``name``: signed resume authorisations are bound to it."""
    signing_key: Path | None = None
    """The Ed25519 private key (PEM) whose public key is in the switch's ``resume.control_plane_keys``.
    Unset: this side can halt the switch but not resume it."""
    timeout: float = Field(default=180.0, gt=0, le=3600)
    """Seconds to wait for an answer: the switch answers a halt once verified, so above its ``halt_bound``."""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname
        ):
            raise ValueError("an http:// or https:// URL")
        return value.rstrip("/") if value else value


def load_killswitch_settings() -> KillswitchSettings:
    """Read the ``killswitch`` section (environment, ``.env``, TOML)."""
    return load_section(KillswitchSettings, SECTION)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_resume(
    key: Ed25519PrivateKey,
    *,
    switch: str,
    episode: str,
    issuer: str,
    approvers: list[str],
    reason: str,
    ttl: int = 300,
) -> str:
    """A ``bgresume1`` authorisation (the format the switch's README documents)."""
    iat = int(time.time())
    payload = {
        "typ": AUTHORISATION_TYPE,
        "switch": switch,
        "episode": episode,
        "iss": issuer,
        "approvers": approvers,
        "reason": reason,
        "iat": iat,
        "exp": iat + ttl,
        "jti": secrets.token_hex(16),
    }
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    signature = key.sign(f"{AUTHORISATION_PREFIX}.{body}".encode("ascii"))
    return f"{AUTHORISATION_PREFIX}.{body}.{_b64(signature)}"


class KillswitchAdmin:
    """A :class:`breakglass.seams.FlagAdmin` whose "flag" is the kill switch's halt."""

    def __init__(
        self, settings: KillswitchSettings, flag_key: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if settings.url is None or settings.token is None:
            raise ConfigurationError(
                "killswitch: set both url and token (BREAKGLASS_KILLSWITCH__*)"
            )
        self._settings = settings
        self._url = settings.url
        self._flag_key = flag_key
        self._clock = clock
        self.target = f"killswitch {safe_url(self._url)}"

    def __repr__(self) -> str:
        return f"KillswitchAdmin({safe_url(self._url)!r})"

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        assert self._settings.token is not None  # noqa: S101 -- checked in __init__
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 -- http(s) only, checked in the settings
            f"{self._url}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._settings.token.get_secret_value()}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._settings.timeout) as response:  # noqa: S310
                status, raw = response.status, response.read(1 << 22)
        except urllib.error.HTTPError as exc:
            with exc:
                status, raw = exc.code, exc.read(1 << 22)
        except (OSError, ValueError) as exc:
            raise AdminUnavailableError(
                f"the kill switch at {safe_url(self._url)} cannot be reached ({type(exc).__name__})"
            ) from None
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}

    def _check(self, status: int, answer: dict[str, Any], what: str) -> None:
        detail = str(answer.get("summary") or answer.get("detail") or "")[:500]
        if status in (401, 403) and answer.get("title") != "Resume refused":
            raise AdminAuthError(
                f"the kill switch refused the token for {what} ({status}): check BREAKGLASS_KILLSWITCH__TOKEN"
            )
        if status == 502:
            raise AdminRejectedError(f"kill switch: {detail}")
        if status >= 500:
            raise AdminUnavailableError(f"the kill switch answered {status} to {what}: {detail}")
        if status != 200:
            missing = "; ".join(str(m) for m in answer.get("missing") or [])
            raise AdminRejectedError(
                f"the kill switch refused {what} ({status}): {detail} {missing}".strip()
            )

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the seam's signature
        """Halt (verified by the switch) or resume (with a signed authorisation)."""
        if not active:
            status, answer = self._call("POST", "/v1/halt", {"reason": f"{reason} (by {actor})"})
            self._check(status, answer, "the halt")
            # The switch answers 200 only once it verified that nothing serves.
            return self._ack(
                active=False, change_id=answer.get("episode"), detail=answer.get("summary")
            )
        status, info = self._call("GET", "/v1/status")
        self._check(status, info, "status")
        episode = (info.get("episode") or {}).get("id")
        if episode is None:
            return self._ack(
                active=True, changed=False, detail="nothing is halted by the kill switch"
            )
        status, answer = self._call(
            "POST",
            "/v1/resume",
            {
                "reason": f"{reason} (by {actor})",
                "authorisation": self._authorise(episode, actor, reason),
            },
        )
        self._check(status, answer, "the resume")
        return self._ack(active=True, change_id=episode, detail=answer.get("summary"))

    def _ack(
        self,
        *,
        active: bool,
        change_id: str | None = None,
        changed: bool = True,
        detail: Any = None,
    ) -> Acknowledgement:
        # "Served" is what the switch verified: nothing serving after a halt, restored after a resume.
        return Acknowledgement(
            self._flag_key,
            active=active,
            acknowledged_at=self._clock.now(),
            change_id=change_id,
            changed=changed,
            served=active,
            served_detail=str(detail)[:300] if detail else None,
            target=self.target,
        )

    def _authorise(self, episode: str, actor: str, reason: str) -> str:
        settings = self._settings
        if settings.signing_key is None or settings.switch is None:
            raise ConfigurationError(
                "killswitch: resuming it needs signing_key and switch (BREAKGLASS_KILLSWITCH__SIGNING_KEY, __SWITCH)"
            )
        try:
            key = serialization.load_pem_private_key(
                settings.signing_key.read_bytes(), password=None
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"killswitch.signing_key {settings.signing_key}: cannot be read as a PEM key ({type(exc).__name__})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(
                f"killswitch.signing_key {settings.signing_key}: not an Ed25519 key"
            )
        return sign_resume(
            key,
            switch=settings.switch,
            episode=episode,
            issuer="breakglass",
            # The people who approved the resume through the gate; the resumer when no gate did.
            approvers=list(APPROVERS.get()) or [actor],
            reason=reason,
        )

    def get_active(self) -> bool | None:
        """``False`` while the switch holds a halt, ``True`` otherwise."""
        status, info = self._call("GET", "/v1/status")
        self._check(status, info, "status")
        return info.get("state") == "active"
