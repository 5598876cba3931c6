"""Settings from the environment, a .env file and a TOML file; secrets stay secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from breakglass.errors import ConfigurationError
from breakglass.settings import load_section, load_settings

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("BREAKGLASS_PROVIDER", "BREAKGLASS_FLAG_KEY", "BREAKGLASS_MAX_STALENESS"):
        monkeypatch.delenv(name, raising=False)


class VendorSettings(BaseSettings):
    url: str = "http://127.0.0.1:1"
    token: SecretStr = SecretStr("")
    refresh_interval: float = 1.0


def test_defaults() -> None:
    """Local provider, system-active, 30 s staleness."""
    settings = load_settings()
    assert (settings.provider, settings.flag_key, settings.max_staleness) == (
        "local",
        "system-active",
        30.0,
    )


def test_environment_beats_dotenv_beats_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources stack: environment, then .env, then breakglass.toml."""
    (tmp_path / "breakglass.toml").write_text(
        'flag_key = "from-toml"\nmax_staleness = 9\nprovider = "toml"\n[local]\npoll_interval = 0.5\n'
    )
    (tmp_path / ".env").write_text("BREAKGLASS_MAX_STALENESS=7\nBREAKGLASS_PROVIDER=dotenv\n")
    monkeypatch.setenv("BREAKGLASS_PROVIDER", "Unleash")
    settings = load_settings()
    assert settings.provider == "unleash"
    assert settings.max_staleness == 7
    assert settings.flag_key == "from-toml"
    assert settings.local.poll_interval == 0.5


def test_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested settings use a double underscore."""
    monkeypatch.setenv("BREAKGLASS_GUARD__RETRY_AFTER", "5")
    assert load_settings().guard.retry_after == 5


def test_config_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BREAKGLASS_CONFIG_FILE points at another TOML file."""
    other = tmp_path / "conf" / "bg.toml"
    other.parent.mkdir()
    other.write_text('flag_key = "elsewhere"\n')
    monkeypatch.setenv("BREAKGLASS_CONFIG_FILE", str(other))
    assert load_settings().flag_key == "elsewhere"


def test_section_for_an_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter's section reads BREAKGLASS_<SECTION>__* and the TOML table of that name."""
    (tmp_path / "breakglass.toml").write_text('[vendor]\nurl = "http://127.0.0.1:4242/api"\n')
    monkeypatch.setenv("BREAKGLASS_VENDOR__TOKEN", "s3cr3t-token-value")
    section = load_section(VendorSettings, "vendor")
    assert section.url == "http://127.0.0.1:4242/api"
    assert section.token.get_secret_value() == "s3cr3t-token-value"
    assert "s3cr3t" not in repr(section)
    assert "s3cr3t" not in str(section)


def test_errors_name_the_variable_never_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value is reported by variable name; the value (maybe a secret) is not echoed."""
    monkeypatch.setenv("BREAKGLASS_VENDOR__REFRESH_INTERVAL", "hunter2-not-a-number")
    with pytest.raises(ConfigurationError) as caught:
        load_section(VendorSettings, "vendor")
    assert "BREAKGLASS_VENDOR__REFRESH_INTERVAL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"), [("BREAKGLASS_MAX_STALENESS", "0"), ("BREAKGLASS_FLAG_KEY", " ")]
)
def test_invalid_core_settings(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Zero staleness or an empty key are refused with the variable named."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()
