"""Configuration, read by pydantic-settings.

Sources, strongest first: keyword arguments, environment variables
(``BREAKGLASS_`` prefix, nested with ``__``), a ``.env`` file, a TOML file
(``breakglass.toml`` in the working directory, or ``BREAKGLASS_CONFIG_FILE``),
then the defaults. Vendor adapters read their own section the same way through
:func:`load_section` (``BREAKGLASS_UNLEASH__URL`` or ``[unleash] url = ...``).

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` in every
repr, log line and error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from breakglass.errors import ConfigurationError

DEFAULT_FLAG_KEY = "system-active"
DEFAULT_PROBE_FLAG_KEY = "system-active-probe"
CONFIG_FILE_ENV = "BREAKGLASS_CONFIG_FILE"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/breakglass``, else ``~/.local/state/breakglass``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "breakglass"


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist)."""
    return Path(os.environ.get(CONFIG_FILE_ENV, "breakglass.toml"))


class LocalSettings(BaseModel):
    """Settings of the embedded ``local`` provider (``BREAKGLASS_LOCAL__*``)."""

    poll_interval: float = Field(default=0.02, gt=0, le=5)
    """Seconds between reads of the local store; each read is a confirmation."""

    path: Path | None = None
    """The local flag store; ``<state_dir>/local.db`` when unset."""


class GuardSettings(BaseModel):
    """Settings of the request guard (``BREAKGLASS_GUARD__*``)."""

    retry_after: int = Field(default=30, ge=0)
    """The ``Retry-After`` header, in seconds, on a 503 while halted."""


class Settings(BaseSettings):
    """breakglass settings. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="BREAKGLASS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    provider: str = "local"
    """The adapter that serves the flag: ``local``, ``unleash``, ``launchdarkly``, ``flagsmith``."""

    providers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Several adapters at once (``["launchdarkly", "local"]``, or ``launchdarkly,local`` in the
    environment); replaces ``provider``. Stop wins across them; a halt goes to every one."""

    flag_key: str = DEFAULT_FLAG_KEY
    """The flag that says the system may run."""

    max_staleness: float = Field(default=30.0, gt=0)
    """Seconds a confirmation stays fresh; after that the flag reads false."""

    state_dir: Path = Field(default_factory=default_state_dir)
    """Where the durable last-known state and the local provider's store live."""

    local: LocalSettings = Field(default_factory=LocalSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)

    sections: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    """Values for adapter sections given in code (``Settings(sections={"unleash": {...}})``);
    they override that section's environment and TOML values. Hidden from repr: they may hold secrets."""

    @field_validator("provider")
    @classmethod
    def _normalise_provider(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",") if value.strip() else []
        if not isinstance(value, list):
            return value
        names = [str(name).strip().lower() for name in value]
        if any(not name for name in names):
            msg = "a provider name is empty"
            raise ValueError(msg)
        if len(set(names)) != len(names):
            msg = "a provider is named twice"
            raise ValueError(msg)
        return names

    @property
    def provider_names(self) -> list[str]:
        """The adapters to read and to halt: ``providers``, else ``[provider]``."""
        return list(self.providers) or [self.provider]

    @field_validator("flag_key")
    @classmethod
    def _non_empty_key(cls, value: str) -> str:
        if not value.strip():
            msg = "must not be empty"
            raise ValueError(msg)
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the TOML file below the environment and ``.env``."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    @property
    def state_file(self) -> Path:
        """The durable last-known state store."""
        return self.state_dir / "state.db"

    @property
    def local_file(self) -> Path:
        """The local provider's flag store."""
        return self.local.path or self.state_dir / "local.db"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into a :class:`ConfigurationError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, "BREAKGLASS_")) from None


SectionT = TypeVar("SectionT", bound=BaseSettings)


def load_section(
    model: type[SectionT], section: str, settings: Settings | None = None, **overrides: Any
) -> SectionT:
    """Read a vendor adapter's settings section.

    ``model`` is a :class:`BaseSettings` subclass; it is read from
    ``BREAKGLASS_<SECTION>__<FIELD>`` variables, the ``.env`` file and the
    ``[<section>]`` table of the TOML file. Values in ``settings.sections[section]``
    and then ``overrides`` take precedence over all of those.
    """
    if settings is not None:
        overrides = {**settings.sections.get(section, {}), **overrides}
    prefix = f"BREAKGLASS_{section.upper()}__"

    class _Section(model):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(
            env_prefix=prefix,
            env_nested_delimiter="__",
            env_file=".env",
            env_file_encoding="utf-8",
            extra="ignore",
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(
                settings_cls, toml_file=config_file(), toml_table_header=(section,)
            )
            return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    _Section.__name__ = model.__name__
    _Section.__qualname__ = model.__qualname__
    try:
        return _Section(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix)) from None


def _describe(exc: ValidationError, prefix: str) -> str:
    # Name the variable to fix and what is wrong; never echo the input, which may be a secret.
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = prefix + "__".join(str(part).upper() for part in error["loc"])
        problems.append(f"{name}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)
