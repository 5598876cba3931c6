"""The shared conformance suite, run against the embedded local provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass.testing.conformance import ProviderConformance
from tests.local_harness import LocalHarness

if TYPE_CHECKING:
    from pathlib import Path


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalHarness:
        return LocalHarness(tmp_path)
