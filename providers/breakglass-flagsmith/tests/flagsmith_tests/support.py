"""Helpers shared by the adapter's test modules (conftest.py cannot be imported by them)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from breakglass_flagsmith.settings import FlagsmithSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from flagsmith_tests.server import FlagsmithServer


def settings_for(server: FlagsmithServer, **overrides: Any) -> FlagsmithSettings:
    """Adapter settings pointing at ``server``, with an organisation ``Api-Key`` for admin calls."""
    values: dict[str, Any] = {
        "api_url": server.api_url,
        "environment_key": SecretStr(server.server_key),
        "admin_token": SecretStr(f"Api-Key {server.master_key}"),
        "project_id": server.project["id"],
        "environment_api_key": server.client_key,
        "refresh_interval": 0.05,
        "request_timeout": 0.5,
    }
    values.update(overrides)
    return FlagsmithSettings(**values)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.002) -> float | None:
    """Poll ``predicate`` until true; the seconds it took, or ``None`` after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)
    return time.monotonic() - start
