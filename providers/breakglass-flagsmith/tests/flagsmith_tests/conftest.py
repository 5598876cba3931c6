"""Fixtures: a fresh Flagsmith-protocol server on loopback per test (see ``server.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from openfeature import api

from flagsmith_tests.server import FlagsmithServer
from flagsmith_tests.support import settings_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from breakglass_flagsmith.settings import FlagsmithSettings


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Every test ends with OpenFeature's global registry empty."""
    yield
    api.clear_providers()


@pytest.fixture
def fs_server() -> Iterator[FlagsmithServer]:
    """A running server, stopped (and its connections cut) after the test."""
    server = FlagsmithServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fs_settings(fs_server: FlagsmithServer) -> FlagsmithSettings:
    return settings_for(fs_server)
