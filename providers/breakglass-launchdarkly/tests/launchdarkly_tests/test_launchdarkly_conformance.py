"""The shared conformance suite (C1-C17), run against the LaunchDarkly-protocol server on loopback.

The real ``ldclient`` SDK streams from the server; the 'dashboard' is the
server's own state, changed behind the bridge's back.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import pytest
import requests

from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass.testing.conformance import ConformanceHarness, ProviderConformance
from launchdarkly_tests.fake_ld import FakeLaunchDarkly

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# The second mark: see _reclaim_leaked_sockets in conftest.py (the SDK leaks a socket on an HTTP error).
pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

FLAG = "system-active"


class LaunchDarklyHarness:
    """The vendor is the fake LaunchDarkly; the dashboard changes its state directly."""

    poll_bound = 0.0  # streaming: a change is pushed, not polled

    def __init__(self, fake: FakeLaunchDarkly, root: Path, configure: Callable[..., None]) -> None:
        self.fake = fake
        self.root = root
        self._configure = configure
        self._runs = 0
        self._damaged = False
        self._wrong = (f"sdk-wrong-{secrets.token_hex(12)}", f"api-wrong-{secrets.token_hex(12)}")

    def settings(self, **overrides: Any) -> Settings:
        self._configure(self.fake)
        self._runs += 1
        overrides.setdefault("state_dir", self.root / f"state-{self._runs}")
        return Settings(provider="launchdarkly", flag_key=FLAG, **overrides)

    def set_from_dashboard(self, active: bool) -> None:
        self.fake.set_on(FLAG, active, comment="from the dashboard")

    def vendor_value(self) -> bool | None:
        # What LaunchDarkly's own REST API says, as an operator would check it.
        response = requests.get(
            f"{self.fake.url}/api/v2/flags/{self.fake.project}/{FLAG}",
            params={"env": self.fake.environment},
            headers={"Authorization": self.fake.api_token},
            timeout=5,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return bool(response.json()["environments"][self.fake.environment]["on"])

    def delete_flag(self) -> None:
        self.fake.delete_flag(FLAG)
        self._damaged = True

    def set_wrong_type(self) -> None:
        self.fake.set_variations(FLAG, ["true", "false"])
        self._damaged = True

    def serve_garbage(self) -> None:
        self.fake.serve_garbage()

    def stop(self) -> None:
        self.fake.stop()

    def stall(self) -> None:
        self.fake.stall()

    def serve_true_while_off(self) -> None:
        self.fake.set_targeting(FLAG, off_variation=0)  # the off variation serves true
        self._damaged = True

    def exclude_service_while_on(self) -> None:
        self.fake.set_targeting(FLAG, fallthrough_variation=1)  # the default rule serves false
        self._damaged = True

    def restore(self) -> None:
        self.fake.restore()
        if self._damaged:
            # Recreated as a proper boolean flag, with a higher version than the deleted one.
            self.fake.add_flag(FLAG, on=True)
            self._damaged = False
        self.set_from_dashboard(True)

    def bad_credentials(self) -> Settings:
        settings = self.settings()
        self._configure(self.fake, SDK_KEY=self._wrong[0], API_TOKEN=self._wrong[1])
        return settings

    def secrets(self) -> list[str]:
        return [self.fake.sdk_key, self.fake.api_token, *self._wrong]

    def away_causes(self) -> frozenset[Cause]:
        # After a confirmation the value ages (stale); before any, a failed contact is an error.
        return frozenset({Cause.STALE, Cause.ERROR})


class TestLaunchDarklyConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self, fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
    ) -> ConformanceHarness:
        return LaunchDarklyHarness(fake, tmp_path, ld_env)
