from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from openfeature import api

from breakglass.testing import ManualClock

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.test_serve_oidc import IdentityProvider


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Every test starts and ends with OpenFeature's global registry empty."""
    yield
    api.clear_providers()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A click runner for ``breakglass`` in ``tmp_path``, its state in ``tmp_path/state``."""
    monkeypatch.setenv("BREAKGLASS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    """An OpenID provider on loopback (``tests/test_serve_oidc.py``), closed after the test."""
    from tests.test_serve_oidc import IdentityProvider

    provider = IdentityProvider()
    yield provider
    provider.close()
