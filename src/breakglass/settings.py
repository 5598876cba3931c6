"""Configuration, read by pydantic-settings, strictly.

Sources, strongest first: keyword arguments, environment variables
(``BREAKGLASS_`` prefix, nested with ``__``), a ``.env`` file, a TOML file
(``breakglass.toml`` in the working directory, or ``BREAKGLASS_CONFIG_FILE``),
then the defaults. Vendor adapters read their own section the same way through
:func:`load_section` (``BREAKGLASS_UNLEASH__URL`` or ``[unleash] url = ...``).

Strict, because a typo must never quietly select another provider or a laxer
staleness: a ``BREAKGLASS_*`` variable or a TOML key that names no setting is
an error naming it, as is a ``BREAKGLASS_CONFIG_FILE`` that does not exist. A
missing table (``[audit]``, ``[unleash]``) means that section's defaults. Every
problem is reported as one line (:class:`ConfigurationError`), never a traceback.

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` in every
repr, log line and error.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from breakglass.errors import ConfigurationError
from breakglass.plugins import available_providers

DEFAULT_FLAG_KEY = "system-active"
DEFAULT_PROBE_FLAG_KEY = "system-active-probe"
ENV_PREFIX = "BREAKGLASS_"
CONFIG_FILE_ENV = "BREAKGLASS_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "breakglass.toml"
DOTENV_FILE = ".env"

MAX_STALENESS_LIMIT = 86_400.0
"""One day: a remembered ``true`` older than this is never worth serving."""

CORE_SECTIONS = ("audit", "serve", "report", "killswitch")
"""Sections the core reads with :func:`load_section`; installed adapters add their own name."""

POLICY_FILE_ENV = "BREAKGLASS_POLICY_FILE"
"""The procedure's policy file (:mod:`breakglass.policy`), read apart from the settings."""

NOT_SETTINGS = frozenset(
    {
        CONFIG_FILE_ENV,
        POLICY_FILE_ENV,
        "BREAKGLASS_KILLSWITCH_CONFIG",  # breakglass-killswitch's own config file
        "BREAKGLASS_KUBECTL",  # the kubectl the kill switch's tests drive
        "BREAKGLASS_CHROMIUM",  # the browser that renders resumption reports
        "BREAKGLASS_ACK_SECRET",  # docs/notifications.md: ack_secret = "env:BREAKGLASS_ACK_SECRET"
        "BREAKGLASS_TOKEN",  # docs/serve.md: a bearer token in the operator's shell
        "BREAKGLASS_LOG_FORMAT",  # the command's log lines: text or json (breakglass.logs)
    }
)
"""``BREAKGLASS_*`` variables that are not settings but are read by breakglass or its tools."""

TEST_VARIABLE_PREFIX = "BREAKGLASS_TEST_"
"""Variables of the project's own test harness (never read by the library)."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/breakglass``, else ``~/.local/state/breakglass``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "breakglass"


def config_file() -> Path:
    """The TOML file settings are read from (``breakglass.toml`` need not exist)."""
    return Path(os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE)


def read_config_file() -> dict[str, Any]:
    """The parsed TOML file (empty when the default file is absent).

    Raises:
        ConfigurationError: ``BREAKGLASS_CONFIG_FILE`` names no file, or the file
            cannot be read, is not UTF-8 or is not valid TOML (one line, no traceback).
    """
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit is not None and not explicit.strip():
        raise ConfigurationError(f"{CONFIG_FILE_ENV} is set but empty")
    path = config_file()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit is not None:
            raise ConfigurationError(f"{CONFIG_FILE_ENV}={explicit}: no such file") from None
        return {}
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {_one_line(str(exc))}") from None


def _dotenv_names() -> list[str]:
    """The variable names a ``.env`` file in the working directory sets."""
    path = Path(DOTENV_FILE)
    if not path.is_file():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read as UTF-8 text: {exc}") from None
    names = []
    for line in text.splitlines():
        stripped = line.strip()
        stripped = stripped.removeprefix("export ")
        name, sep, _ = stripped.partition("=")
        if sep and not stripped.startswith("#"):
            names.append(name.strip())
    return names


def _variable_names() -> list[str]:
    """Every ``BREAKGLASS_*`` name in the environment and ``.env`` (upper-cased, as pydantic reads them)."""
    names = {name.upper() for name in [*os.environ, *_dotenv_names()]}
    return sorted(
        name
        for name in names
        if name.startswith(ENV_PREFIX)
        and name not in NOT_SETTINGS
        and not name.startswith(TEST_VARIABLE_PREFIX)
    )


def known_sections() -> frozenset[str]:
    """Section names a ``BREAKGLASS_<SECTION>__*`` variable or a TOML table may use."""
    return frozenset({*CORE_SECTIONS, *available_providers()}) - set(Settings.model_fields)


def _nested_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dict_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The value model of a ``dict[str, Model]`` field (``[audit.feeds.<name>]``), else None."""
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) is dict:
        value = get_args(annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


def _in_dict_field(model: type[BaseModel], prefix: str, name: str) -> bool:
    """Whether ``name`` sets a field of an entry of a ``dict[str, Model]`` field."""
    for field in _settable(model):
        value = _dict_model(model, field)
        head = f"{prefix}{field.upper()}__"
        if value is None or not name.startswith(head):
            continue
        key, sep, rest = name[len(head) :].partition("__")
        if key and sep and rest.lower() in value.model_fields:
            return True
    return False


def _settable(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name != "sections"]


def _env_names(model: type[BaseModel], prefix: str) -> set[str]:
    """The variable names that set ``model``'s fields (nested models with ``__``)."""
    names = set()
    for name in _settable(model):
        names.add(prefix + name.upper())
        nested = _nested_model(model, name)
        if nested is not None:
            names |= _env_names(nested, f"{prefix}{name.upper()}__")
    return names


def _suggest(name: str, candidates: set[str] | list[str], *, quote: bool = False) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if quote else f" (did you mean {close[0]}?)"


def _unknown_variables(
    model: type[BaseModel], prefix: str, *, sections: frozenset[str] = frozenset()
) -> list[str]:
    known = _env_names(model, prefix)
    problems = []
    for name in _variable_names():
        if not name.startswith(prefix) or name in known or _in_dict_field(model, prefix, name):
            continue
        head, sep, _ = name[len(prefix) :].partition("__")
        if sep and head.lower() in sections:
            continue  # a section's variable: that section's loader checks it
        problems.append(f"unknown setting {name}{_suggest(name, known)}")
    return problems


def _unknown_keys(
    model: type[BaseModel],
    table: dict[str, Any],
    where: str,
    *,
    sections: frozenset[str] = frozenset(),
) -> list[str]:
    fields = _settable(model)
    problems = []
    for key, value in table.items():
        if key in fields:
            nested = _nested_model(model, key)
            if nested is not None and isinstance(value, dict):
                problems += _unknown_keys(nested, value, f"[{key}] of {where}")
            entries = _dict_model(model, key)
            if entries is not None and isinstance(value, dict):
                for entry, table in value.items():
                    if isinstance(table, dict):
                        problems += _unknown_keys(entries, table, f"[{key}.{entry}] of {where}")
        elif key in sections:
            if not isinstance(value, dict):
                problems.append(f"{key} in {where} must be a table ([{key}])")
        else:
            problems.append(
                f"unknown setting {key!r} in {where}{_suggest(key, fields, quote=True)}"
            )
    return problems


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ConfigurationError("; ".join(problems))


class LocalSettings(BaseModel):
    """Settings of the embedded ``local`` provider (``BREAKGLASS_LOCAL__*``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    poll_interval: float = Field(default=0.02, gt=0, le=5)
    """Seconds between reads of the local store; each read is a confirmation."""

    path: Path | None = None
    """The local flag store; ``<state_dir>/local.db`` when unset."""


class GuardSettings(BaseModel):
    """Settings of the request guard (``BREAKGLASS_GUARD__*``)."""

    retry_after: int = Field(default=30, ge=0)
    """The ``Retry-After`` header, in seconds, on a 503 while halted."""

    status_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """A public status page the 503 body links to (``status_url``), e.g. a deployer's
    ``https://breakglass.example.org/notify/status/acme-bank``."""


class Settings(BaseSettings):
    """breakglass settings. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=DOTENV_FILE,
        env_file_encoding="utf-8",
        # Unknown names are refused by settings_customise_sources, with better words.
        extra="ignore",
        allow_inf_nan=False,
    )

    provider: str = "local"
    """The adapter that serves the flag: ``local``, ``unleash``, ``launchdarkly``, ``flagsmith``, ``relay``."""

    providers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Several adapters at once (``["launchdarkly", "local"]``, or ``launchdarkly,local`` in the
    environment); replaces ``provider``. Stop wins across them; a halt goes to every one."""

    flag_key: str = DEFAULT_FLAG_KEY
    """The flag that says the system may run."""

    max_staleness: float = Field(default=30.0, gt=0, le=MAX_STALENESS_LIMIT)
    """Seconds a confirmation stays fresh (at most one day); after that the flag reads false."""

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
        """Refuse unknown names, then add the TOML file below the environment and ``.env``."""
        document = read_config_file()
        sections = known_sections()
        _refuse(
            _unknown_variables(cls, ENV_PREFIX, sections=sections)
            + _unknown_keys(cls, document, str(config_file()), sections=sections)
        )
        fields = set(_settable(cls))
        toml = InitSettingsSource(
            settings_cls, {key: value for key, value in document.items() if key in fields}
        )
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
    """Read the settings; any problem is one :class:`ConfigurationError` line naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, ENV_PREFIX, None)) from None


SectionT = TypeVar("SectionT", bound=BaseSettings)


def load_section(
    model: type[SectionT], section: str, settings: Settings | None = None, **overrides: Any
) -> SectionT:
    """Read a vendor adapter's settings section.

    ``model`` is a :class:`BaseSettings` subclass; it is read from
    ``BREAKGLASS_<SECTION>__<FIELD>`` variables, the ``.env`` file and the
    ``[<section>]`` table of the TOML file (absent: the model's defaults). Values
    in ``settings.sections[section]`` and then ``overrides`` take precedence over
    all of those. Unknown variables or keys of the section are refused.
    """
    if settings is not None:
        overrides = {**settings.sections.get(section, {}), **overrides}
    prefix = f"{ENV_PREFIX}{section.upper()}__"

    class _Section(model):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(
            env_prefix=prefix,
            env_nested_delimiter="__",
            env_file=DOTENV_FILE,
            env_file_encoding="utf-8",
            extra="ignore",
            allow_inf_nan=False,
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
            table = read_config_file().get(section, {})
            where = f"[{section}] of {config_file()}"
            if not isinstance(table, dict):
                raise ConfigurationError(f"{section} in {config_file()} must be a table")
            _refuse(_unknown_variables(cls, prefix) + _unknown_keys(cls, table, where))
            toml = InitSettingsSource(settings_cls, table)
            return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    _Section.__name__ = model.__name__
    _Section.__qualname__ = model.__qualname__
    try:
        return _Section(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix, section)) from None


# Plain words for pydantic's error types; the rest keep pydantic's own (short) message.
_PLAIN = {
    "missing": "is required",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "finite_number": "must be a finite number",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "extra_forbidden": "is not a setting",
}
_BOUNDS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "must be one of {expected}",
}


def _describe(exc: ValidationError, prefix: str, section: str | None) -> str:
    # Name the variable (and TOML key) to fix and what is wrong; never echo the
    # input, which may be a secret.
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=True):
        loc = [str(part) for part in error["loc"]]
        variable = prefix + "__".join(part.upper() for part in loc)
        key = ".".join(loc)
        where = f"[{section}] {key}" if section else key
        problems.append(f"{variable}: {_plain(error)} (TOML: {where})")
    return "invalid setting " + "; ".join(problems)


def _plain(error: Any) -> str:
    kind = error["type"]
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**error.get("ctx", {}))
    message = str(error["msg"]).removeprefix("Value error, ")
    return _one_line(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())
