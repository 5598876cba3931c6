"""The shared conformance suite (C1-C17), run against a real unleash-server on loopback."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import pytest
import requests

from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass.testing.conformance import ConformanceHarness, NotExpressible, ProviderConformance

if TYPE_CHECKING:
    from pathlib import Path

    # The harness lives in conftest.py, which test modules cannot import (importlib mode).
    ChaosProxy = Any
    UnleashServer = Any

pytestmark = pytest.mark.live

# Short intervals keep the suite quick; poll_bound follows from them (UnleashSettings.poll_bound).
TEST_SETTINGS = {
    "BREAKGLASS_UNLEASH__REFRESH_INTERVAL": "0.05",
    "BREAKGLASS_UNLEASH__SDK_REFRESH_INTERVAL": "0.25",
    "BREAKGLASS_UNLEASH__REQUEST_TIMEOUT": "0.3",
    "BREAKGLASS_UNLEASH__APP_NAME": "breakglass-conformance",
}


class UnleashHarness:
    """The vendor is the real server (reached through a chaos proxy); the dashboard is its Admin API."""

    def __init__(
        self,
        server: UnleashServer,
        proxy: ChaosProxy,
        root: Path,
        flag: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.server = server
        self.proxy = proxy
        self.root = root
        self.flag = flag
        self._env = monkeypatch
        self._runs = 0
        self._archived = False
        self._excluded = False
        self._wrong = (
            f"default:development.wrong-{secrets.token_hex(8)}",
            f"*:*.wrong-{secrets.token_hex(8)}",
        )
        refresh = float(TEST_SETTINGS["BREAKGLASS_UNLEASH__REFRESH_INTERVAL"])
        timeout = float(TEST_SETTINGS["BREAKGLASS_UNLEASH__REQUEST_TIMEOUT"])
        # A halt needs one single-flag read; a resume also waits for the SDK's poll (poll_bound).
        self.poll_bound = refresh + timeout
        self.resume_bound = server.settings(
            refresh_interval=refresh,
            sdk_refresh_interval=float(TEST_SETTINGS["BREAKGLASS_UNLEASH__SDK_REFRESH_INTERVAL"]),
            request_timeout=timeout,
        ).poll_bound
        server.create_flag(flag, enabled=True)

    def _configure(self, client_token: str, admin_token: str) -> None:
        # The plugin reads its section from the environment, as a deployment would.
        for key, value in TEST_SETTINGS.items():
            self._env.setenv(key, value)
        self._env.setenv("BREAKGLASS_UNLEASH__URL", self.proxy.api_url)
        # Admin and audit calls go straight to the server, so serve_garbage breaks only reading.
        self._env.setenv("BREAKGLASS_UNLEASH__ADMIN_URL", self.server.api_url)
        self._env.setenv("BREAKGLASS_UNLEASH__CLIENT_TOKEN", client_token)
        self._env.setenv("BREAKGLASS_UNLEASH__ADMIN_TOKEN", admin_token)

    def settings(self, **overrides: Any) -> Settings:
        self._configure(self.server.client_token, self.server.admin_token)
        self._runs += 1
        overrides.setdefault("state_dir", self.root / f"state-{self._runs}")
        return Settings(provider="unleash", flag_key=self.flag, **overrides)

    def set_from_dashboard(self, active: bool) -> None:
        self.server.set_flag(self.flag, enabled=active)

    def vendor_value(self) -> bool | None:
        response = requests.get(
            f"{self.server.api_url}/client/features/{self.flag}",
            headers={"Authorization": self.server.client_token},
            timeout=5,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return bool(response.json()["enabled"])

    def delete_flag(self) -> None:
        # Archived is what the dashboard's "delete" does; restore() revives it.
        self.server.archive_flag(self.flag)
        self._archived = True

    def set_wrong_type(self) -> None:
        raise NotExpressible("an Unleash flag's enabled state is always a boolean")

    def serve_garbage(self) -> None:
        self.proxy.mode = "garbage"

    def stop(self) -> None:
        self.server.stop()

    def stall(self) -> None:
        self.server.stall()

    def serve_true_while_off(self) -> None:
        raise NotExpressible("a disabled Unleash flag is false for every context")

    def exclude_service_while_on(self) -> None:
        # A constraint that leaves the service's app out: the switch on, readers served false.
        self.server.exclude_every_app(self.flag)
        self._excluded = True

    def restore(self) -> None:
        if self._excluded:
            self.server.default_strategy(self.flag)
            self._excluded = False
        self.proxy.mode = "pass"
        self.server.resume()
        self.server.start()
        if self._archived:
            self.server.revive_flag(self.flag)
            self._archived = False
        self.set_from_dashboard(True)

    def bad_credentials(self) -> Settings:
        settings = self.settings()
        self._configure(*self._wrong)
        return settings

    def secrets(self) -> list[str]:
        return [self.server.client_token, self.server.admin_token, *self._wrong]

    def away_causes(self) -> frozenset[Cause]:
        # After a confirmation the value ages; before any, the cause is unconfirmed (C8 accepts it).
        return frozenset({Cause.STALE})


class TestUnleashConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self,
        unleash_server: UnleashServer,
        chaos_proxy: ChaosProxy,
        tmp_path: Path,
        flag_name: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> ConformanceHarness:
        return UnleashHarness(unleash_server, chaos_proxy, tmp_path, flag_name, monkeypatch)
