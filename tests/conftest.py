from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from openfeature import api

from breakglass.testing import ManualClock

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Every test starts and ends with OpenFeature's global registry empty."""
    yield
    api.clear_providers()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
