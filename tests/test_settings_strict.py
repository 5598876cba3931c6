"""Strict settings: a typo or a broken file is one line naming it; a missing table is its defaults."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from breakglass.audit.settings import load_audit_settings
from breakglass.cli import main
from breakglass.errors import ConfigurationError
from breakglass.serve.settings import load_serve_settings
from breakglass.settings import load_section, load_settings
from breakglass.testing.settings import isolate_settings

if TYPE_CHECKING:
    from pathlib import Path

# Words of pydantic's own reports that an operator should never have to decode.
JARGON = ("validation error", "Extra inputs", "pydantic", "Traceback", "For further information")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_settings(monkeypatch, tmp_path)


class VendorSettings(BaseSettings):
    url: str = "http://127.0.0.1:1"
    token: SecretStr = SecretStr("")


def _error(**overrides: object) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert not [word for word in JARGON if word in message], message
    return message


def test_a_file_without_optional_tables_means_defaults(tmp_path: Path) -> None:
    """No [audit], no vendor table: every section reads its defaults, nothing raises."""
    (tmp_path / "breakglass.toml").write_text('provider = "local"\n')
    assert load_settings().provider == "local"
    assert load_audit_settings().record_changes is True
    assert load_section(VendorSettings, "vendor").url == "http://127.0.0.1:1"


def test_a_section_table_is_read(tmp_path: Path) -> None:
    """A present table still works, next to the core keys."""
    (tmp_path / "breakglass.toml").write_text(
        "max_staleness = 5\n[audit]\nrecord_changes = false\n"
    )
    assert load_settings().max_staleness == 5
    assert load_audit_settings().record_changes is False


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('provder = "unleash"\n', "'provder'"),
        ("[local]\npoll_intervl = 1\n", "'poll_intervl'"),
        ("[unlesh]\nurl = 'http://x/api'\n", "'unlesh'"),
    ],
)
def test_unknown_toml_keys_are_refused(tmp_path: Path, toml: str, named: str) -> None:
    """A misspelt key is an error naming it (not a silent run on the local provider)."""
    (tmp_path / "breakglass.toml").write_text(toml)
    message = _error()
    assert named in message
    assert "unknown setting" in message


def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    """The nearest real name is offered."""
    (tmp_path / "breakglass.toml").write_text('provder = "unleash"\n')
    assert "did you mean 'provider'" in _error()


def test_unknown_keys_in_a_section_table_are_refused(tmp_path: Path) -> None:
    """A section checks its own table's keys."""
    (tmp_path / "breakglass.toml").write_text("[audit]\nrecord_change = false\n")
    load_settings()  # the core does not read the section's keys
    with pytest.raises(ConfigurationError, match="'record_change' in \\[audit\\]"):
        load_audit_settings()


@pytest.mark.parametrize(
    "name",
    ["BREAKGLASS_PROVDER", "BREAKGLASS_LOCAL__POLL_INTERVL", "BREAKGLASS_NOSUCHSECTION__URL"],
)
def test_unknown_variables_are_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A BREAKGLASS_* variable that sets nothing is an error naming it."""
    monkeypatch.setenv(name, "unleash")
    assert name in _error()


def test_unknown_section_variable_is_refused_by_its_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BREAKGLASS_AUDIT__* is the audit section's to check."""
    monkeypatch.setenv("BREAKGLASS_AUDIT__DATABSE_URL", "postgresql://x")
    load_settings()
    with pytest.raises(ConfigurationError, match="BREAKGLASS_AUDIT__DATABSE_URL"):
        load_audit_settings()


def test_unknown_dotenv_variables_are_refused(tmp_path: Path) -> None:
    """The .env file is held to the same rule."""
    (tmp_path / ".env").write_text("# comment\nexport BREAKGLASS_MAX_STALENES=5\n")
    assert "BREAKGLASS_MAX_STALENES " in _error() + " "


def test_a_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """BREAKGLASS_CONFIG_FILE must name an existing file (a typo there loses every setting)."""
    monkeypatch.setenv("BREAKGLASS_CONFIG_FILE", str(tmp_path / "nope.toml"))
    message = _error()
    assert "BREAKGLASS_CONFIG_FILE" in message
    assert "no such file" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"provider = \n", "not valid TOML"),
        (b'flag_key = "caf\xe9"\n', "not UTF-8"),
    ],
)
def test_a_broken_file_is_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    """Malformed TOML or bytes that are not UTF-8: one line naming the file."""
    (tmp_path / "breakglass.toml").write_bytes(content)
    message = _error()
    assert words in message
    assert "breakglass.toml" in message


@pytest.mark.parametrize("value", ["1e12", "inf", "nan", "86401"])
def test_max_staleness_is_finite_and_at_most_a_day(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A two-day-old remembered true is never fresh."""
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", value)
    assert "BREAKGLASS_MAX_STALENESS" in _error()


def test_max_staleness_of_a_day_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound itself is allowed."""
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", "86400")
    assert load_settings().max_staleness == 86400


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", "greater than 0"),
        ("-1", "greater than 0"),
        ("inf", "finite"),
        ("nan", "finite"),
        ("301", "at most 300"),
    ],
)
def test_serve_halt_timeout_is_positive_and_finite(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    """A halt's wait for its first acknowledgement is never none, negative or endless."""
    monkeypatch.setenv("BREAKGLASS_SERVE__HALT_TIMEOUT", value)
    with pytest.raises(ConfigurationError) as caught:
        load_serve_settings()
    assert "BREAKGLASS_SERVE__HALT_TIMEOUT" in str(caught.value)
    assert words in str(caught.value)


def test_serve_halt_timeout_is_read_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 s unless set: its own setting, whatever any vendor's request timeout is."""
    assert load_serve_settings().halt_timeout == 30.0
    monkeypatch.setenv("BREAKGLASS_SERVE__HALT_TIMEOUT", "2.5")
    assert load_serve_settings().halt_timeout == 2.5


def test_type_errors_are_plain_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not pydantic's wording: what to fix, in one line."""
    monkeypatch.setenv("BREAKGLASS_MAX_STALENESS", "soon")
    monkeypatch.setenv("BREAKGLASS_GUARD__RETRY_AFTER", "1.5")
    message = _error()
    assert "BREAKGLASS_MAX_STALENESS: must be a number (TOML: max_staleness)" in message
    assert (
        "BREAKGLASS_GUARD__RETRY_AFTER: must be a whole number (TOML: guard.retry_after)" in message
    )


def test_harness_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """BREAKGLASS_CONFIG_FILE and BREAKGLASS_TEST_* are read elsewhere, not refused."""
    monkeypatch.setenv("BREAKGLASS_TEST_POSTGRES_URL", "postgresql://x")
    assert load_settings().provider == "local"


def test_sections_are_checked_even_without_variables(tmp_path: Path) -> None:
    """A section given as a non-table is refused, naming it."""
    (tmp_path / "breakglass.toml").write_text('audit = "yes"\n')
    assert "audit" in _error()


def test_halt_works_with_a_file_without_audit_table(tmp_path: Path) -> None:
    """The operator can halt with a minimal breakglass.toml (it crashed before)."""
    (tmp_path / "breakglass.toml").write_text(f'provider = "local"\nstate_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(main, ["halt", "--reason", "incident"])
    assert result.exit_code == 0, result.output
    assert "halted" in result.output


@pytest.mark.live
@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (b"provider = \n", "not valid TOML"),
        (b"provder = 'unleash'\n", "unknown setting 'provder'"),
        (b"max_staleness = inf\n", "must be a finite number"),
    ],
)
def test_the_real_command_prints_one_line(tmp_path: Path, toml: bytes, words: str) -> None:
    """Through the installed command: one error line (halt: NOT HALTED, exit 4), no traceback."""
    (tmp_path / "breakglass.toml").write_bytes(toml)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BREAKGLASS_STATE_DIR": str(tmp_path)}
    for command, code, prefix in (
        (["halt", "--reason", "x"], 4, "breakglass: NOT HALTED: "),
        (["status"], 1, "breakglass: error: "),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "breakglass", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == code, done.stderr
        assert words in done.stderr
        assert done.stderr.startswith(prefix)
        assert "Traceback" not in done.stderr
        # One line; a failed halt adds only its fallback lines.
        assert all(line.startswith("  fallback: ") for line in done.stderr.splitlines()[1:])
