"""Settings checks every adapter's tests run: a missing table, a misspelt key."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def isolate_settings(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Run in ``directory`` with no ``BREAKGLASS_*`` variable of the caller's environment."""
    for name in list(os.environ):
        if name.upper().startswith("BREAKGLASS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(directory)


def check_section_is_strict(
    load: Callable[[], Any],
    section: str,
    *,
    required: str,
    table: str,
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``load`` names ``required`` when ``[section]`` is absent, and refuses a misspelt key in it.

    ``table`` is a valid body of ``[section]`` (TOML lines); the check appends a typo to it.
    """
    isolate_settings(monkeypatch, directory)
    config = directory / "breakglass.toml"
    config.write_text(f'provider = "{section}"\n')
    variable = f"BREAKGLASS_{section.upper()}__{required.upper()}"
    with pytest.raises(ConfigurationError, match=re.escape(f"{variable}: is required")):
        load()
    config.write_text(f"[{section}]\n{table}{required}x = 1\n")
    with pytest.raises(
        ConfigurationError, match=re.escape(f"unknown setting '{required}x' in [{section}]")
    ):
        load()
