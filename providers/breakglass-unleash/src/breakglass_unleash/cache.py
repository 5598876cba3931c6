"""The Unleash SDK's cache, in memory only."""

from __future__ import annotations

import threading
from typing import Any

from UnleashClient.cache import BaseCache


class MemoryCache(BaseCache):
    """The SDK's cache, kept in memory only.

    The SDK's default ``FileCache`` persists the last payload on disk and loads
    it at the next start, even when the server is unreachable; a stale ``true``
    would come back from the dead. This cache dies with the process.
    """

    bootstrapped = False

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        with self._lock:
            self._data[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        """Store every item of ``data``."""
        with self._lock:
            self._data.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        """The value under ``key``, else ``default``."""
        with self._lock:
            return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        with self._lock:
            return key in self._data

    def destroy(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
