"""Settings of the host relay and its workers (``BREAKGLASS_RELAY__*`` or ``[relay]``)."""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode

from breakglass.settings import MAX_STALENESS_LIMIT, load_section

if TYPE_CHECKING:
    from breakglass.settings import Settings

SECTION = "relay"


class RelaySettings(BaseSettings):
    """Where the relay's channel is, how often it is written and read, what the relay reads."""

    path: Path | None = None
    """The channel file; ``<state_dir>/relay.channel`` when unset. Relay and workers must agree."""

    heartbeat: float = Field(default=0.5, gt=0, le=5)
    """Seconds between the relay's writes when nothing changes (a change is written at once and
    wakes every worker). Workers take heartbeats on their own periodic read; four of them within
    ``silent_after`` prove the relay alive."""

    poll_interval: float = Field(default=0.005, gt=0, le=1)
    """Seconds between a worker's reads of the channel where inotify is not available; with
    inotify (Linux) a worker reads after each change the relay writes, and besides every
    ``silent_after / 8`` to ``silent_after / 4`` seconds (at most 0.5 s, each worker at its own
    moment) to take the heartbeats and notice a relay that went silent."""

    silent_after: float = Field(default=2.0, gt=0, le=MAX_STALENESS_LIMIT)
    """Seconds without a new write after which a worker halts (relay killed, frozen or starved)."""

    owner: str | None = None
    """The relay's user (a name or a uid): workers refuse a channel owned by anyone else but
    root. Unset: the owner of the channel's directory (set it where that is not the relay's
    user, such as a shared volume root owns)."""

    upstream: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """The providers the relay itself reads (``launchdarkly`` or ``unleash,local``); the
    top-level ``provider``/``providers`` when empty."""

    ofrep: str | None = None
    """``host:port`` where the relay answers OFREP (``127.0.0.1:8016``); off when unset."""

    @field_validator("upstream", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip().lower() for name in value.split(",") if name.strip()]
        return value

    @field_validator("ofrep")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            msg = f"must be host:port, not {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("silent_after")
    @classmethod
    def _silence_outlasts_heartbeats(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat")
        if isinstance(heartbeat, float) and value < 3 * heartbeat:
            msg = (
                f"must be at least three heartbeats ({3 * heartbeat:g} s), "
                "or a healthy relay would read as gone"
            )
            raise ValueError(msg)
        return value

    @field_validator("owner")
    @classmethod
    def _known_user(cls, value: str | None) -> str | None:
        if value is not None:
            _uid(value)
        return value

    def owner_uid(self) -> int | None:
        """The uid the channel must belong to (or root); ``None``: its directory's owner."""
        return None if self.owner is None else _uid(self.owner)

    def address(self) -> tuple[str, int] | None:
        """The OFREP listen address, or ``None``."""
        if self.ofrep is None:
            return None
        host, _, port = self.ofrep.rpartition(":")
        return host.strip("[]"), int(port)

    def channel_path(self, settings: Settings) -> Path:
        """The channel file for ``settings``."""
        return self.path or settings.state_dir / "relay.channel"


def _uid(owner: str) -> int:
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        msg = f"no user {owner!r} on this host"
        raise ValueError(msg) from None


def load_relay_settings(settings: Settings) -> RelaySettings:
    """The ``[relay]`` section (defaults when absent); one-line errors."""
    return load_section(RelaySettings, SECTION, settings)
