"""The shared conformance suite (C1-C17), run with the real ``flagsmith`` SDK against the protocol server."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass.testing.conformance import ConformanceHarness, NotExpressible, ProviderConformance

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from flagsmith_tests.server import FlagsmithServer

pytestmark = pytest.mark.live

# Short intervals keep the suite quick; poll_bound follows from them (FlagsmithSettings.poll_bound).
REFRESH_INTERVAL = 0.05
REQUEST_TIMEOUT = 0.3


class FlagsmithHarness:
    """The vendor is the protocol server; the dashboard changes its state in-process, as a user."""

    poll_bound = REFRESH_INTERVAL + REQUEST_TIMEOUT

    def __init__(
        self, server: FlagsmithServer, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.server = server
        self.root = root
        self._env = monkeypatch
        self._runs = 0
        self._wrong = (f"ser.wrong{secrets.token_hex(8)}", f"wrongpfx.{secrets.token_hex(12)}")

    def _configure(self, environment_key: str, master_key: str) -> None:
        # The plugin reads its section from the environment, as a deployment would.
        env = {
            "BREAKGLASS_FLAGSMITH__API_URL": self.server.api_url,
            "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY": environment_key,
            "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN": f"Api-Key {master_key}",
            "BREAKGLASS_FLAGSMITH__PROJECT_ID": str(self.server.project["id"]),
            "BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY": self.server.client_key,
            "BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL": str(REFRESH_INTERVAL),
            "BREAKGLASS_FLAGSMITH__REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
            "BREAKGLASS_FLAGSMITH__CONFIRM_TIMEOUT": "1",
        }
        for key, value in env.items():
            self._env.setenv(key, value)

    def settings(self, **overrides: Any) -> Settings:
        self._configure(self.server.server_key, self.server.master_key)
        self._runs += 1
        overrides.setdefault("state_dir", self.root / f"state-{self._runs}")
        return Settings(provider="flagsmith", **overrides)

    def set_from_dashboard(self, active: bool) -> None:
        self.server.set_enabled(active)

    def vendor_value(self) -> bool | None:
        return self.server.vendor_value()

    def delete_flag(self) -> None:
        self.server.delete_feature()

    def set_wrong_type(self) -> None:
        raise NotExpressible("a Flagsmith feature state's `enabled` is always a boolean")

    def serve_garbage(self) -> None:
        self.server.mode = "garbage"

    def stop(self) -> None:
        self.server.stop()

    def stall(self) -> None:
        self.server.stall()

    def serve_true_while_off(self) -> None:
        # A change the SDK's data never shows (a cache, an unpublished version): readers stay on.
        self.server.document_hook = _every_feature(enabled=True)

    def exclude_service_while_on(self) -> None:
        self.server.document_hook = _every_feature(enabled=False)

    def restore(self) -> None:
        self.server.restore()
        if self.server.vendor_value() is not True:
            self.server.set_enabled(True)

    def bad_credentials(self) -> Settings:
        settings = self.settings()
        self._configure(*self._wrong)
        return settings

    def secrets(self) -> list[str]:
        server = self.server
        return [server.server_key, server.user_token, server.master_key, *self._wrong]

    def away_causes(self) -> frozenset[Cause]:
        # After a confirmation the value ages (stale); before any, a failed contact is an error.
        return frozenset({Cause.STALE, Cause.ERROR})


class TestFlagsmithConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self, fs_server: FlagsmithServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> ConformanceHarness:
        return FlagsmithHarness(fs_server, tmp_path, monkeypatch)


def _every_feature(*, enabled: bool) -> Callable[[dict[str, Any]], None]:
    def hook(document: dict[str, Any]) -> None:
        for state in document["feature_states"]:
            state["enabled"] = enabled

    return hook
