"""Failed logins counted once for every replica, through a PostgreSQL store.

Each replica counting alone would let an attacker multiply the attempts by
the number of replicas. The count lives in the shared database (its own
clock, so replicas with different clocks count alike); each replica also
counts in memory, and answers from that count whenever the store does not
answer within a second. A store that has gone away must neither lock people
out nor hold requests: after a failed or slow call the store is left alone for
a few seconds, so a flood meets a hanging database once, not once per request.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol, runtime_checkable

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.limits import FailureLimit, FailureWindow

logger = logging.getLogger("breakglass.serve")

WAIT = 1.0
"""Seconds a request waits for the shared count before answering from its own."""
PAUSE = 5.0
"""Seconds the store is left alone after a failed or slow call."""


@runtime_checkable
class FailureStore(Protocol):
    """**Protocol**: a store that counts failed logins for every replica."""

    def count_failure(self, client: str, limit: int, window: float) -> float | None:
        """Count a failure; seconds to wait when ``client`` is past ``limit`` in ``window``."""
        ...


class SharedFailures:
    """A :class:`FailureLimit` counted in the shared store, and in memory as the fallback."""

    def __init__(
        self, store: FailureStore, local: FailureWindow, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._local = local
        self._clock = clock
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="breakglass-login-limit")
        self._lock = threading.Lock()
        self._paused_until = -float("inf")
        self.problem: str | None = None
        """Why the shared count is not in use (``None`` while it is)."""

    def fail(self, client: str) -> float | None:
        """Count a failure by ``client`` (see :meth:`FailureLimit.fail`)."""
        local = self._local.fail(client)
        if self._clock.monotonic() < self._paused_until:
            return local
        call = self._pool.submit(
            self._store.count_failure, client, self._local.limit, self._local.window
        )
        try:
            shared = call.result(timeout=WAIT)
        except FutureTimeout:
            self._pause("the store did not answer within a second")
            return local
        except Exception as exc:  # noqa: BLE001 -- whatever the store raised, count here instead
            self._pause(str(exc) or type(exc).__name__)
            return local
        if self.problem is not None:
            logger.warning("failed logins are counted in the shared store again")
            self.problem = None
        return shared

    def _pause(self, why: str) -> None:
        with self._lock:
            self._paused_until = self._clock.monotonic() + PAUSE
            if self.problem is None:
                logger.error("failed logins are counted per replica for now: %s", why)
            self.problem = why

    def close(self) -> None:
        """Stop the store's threads (a call still running is abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def failure_limit(
    store: object, limit: int, window: float, *, clock: Clock = SYSTEM_CLOCK
) -> FailureLimit:
    """Shared through ``store`` when it counts for every replica (PostgreSQL), else this replica's own."""
    local = FailureWindow(limit, window, clock=clock)
    if isinstance(store, FailureStore):
        return SharedFailures(store, local, clock=clock)
    return local
