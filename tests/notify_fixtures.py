"""Notification test fixtures (a pytest plugin: ``pytest_plugins = ["tests.notify_fixtures"]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.notify_receivers import Receivers

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    """The services on a fresh loopback port, for one test."""
    r = Receivers()
    yield r
    r.close()
