"""Fixtures: a fresh LaunchDarkly-protocol server on loopback per test (``fake_ld.py``)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest
from openfeature import api

from launchdarkly_tests.fake_ld import FakeLaunchDarkly

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FLAG = "system-active"

# Short intervals keep the suite quick; the bounds the tests check follow from them.
FAST_SETTINGS = {
    "VERIFY_INTERVAL": "0.1",
    "INITIAL_RECONNECT_DELAY": "0.05",
    "CONNECT_TIMEOUT": "0.5",
    "REQUEST_TIMEOUT": "0.5",
}


@pytest.fixture(autouse=True)
def _reclaim_leaked_sockets() -> Iterator[None]:
    """Collect garbage at the end of every test here.

    ``ld_eventsource`` 1.7.4 (under ``ldclient`` 9.20) raises on a 4xx/5xx
    stream answer without releasing the response, so that socket is closed
    only when the garbage collector finds it, with a ``ResourceWarning``. It
    is the SDK's leak, not the adapter's. The test modules here ignore exactly
    that warning (``ignore:unclosed <socket.socket:ResourceWarning``), and this
    collection makes sure it is found while one of them runs, never during
    another module's test.
    """
    yield
    gc.collect()


@pytest.fixture
def fake() -> Iterator[FakeLaunchDarkly]:
    """A started fake LaunchDarkly holding ``system-active``, on; closed after the test."""
    server = FakeLaunchDarkly(heartbeat_interval=0.5)
    server.add_flag(FLAG, on=True)
    server.start()
    yield server
    server.close()


@pytest.fixture
def ld_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the plugin at a server through ``BREAKGLASS_LAUNCHDARKLY__*``, as a deployment would."""

    def configure(server: FakeLaunchDarkly, **overrides: str) -> None:
        values = {
            **FAST_SETTINGS,
            "SDK_KEY": server.sdk_key,
            "API_TOKEN": server.api_token,
            "PROJECT_KEY": server.project,
            "ENVIRONMENT_KEY": server.environment,
            "BASE_URI": server.url,
            "STREAM_URI": server.url,
            "EVENTS_URI": server.url,
            "API_BASE_URL": server.url,
            **overrides,
        }
        for name, value in values.items():
            monkeypatch.setenv(f"BREAKGLASS_LAUNCHDARKLY__{name}", value)

    return configure


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Every test ends with OpenFeature's global registry empty."""
    yield
    api.clear_providers()
