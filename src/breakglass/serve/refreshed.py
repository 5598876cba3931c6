"""What every replica must learn from the shared store, kept in memory and re-read every few seconds.

The API tokens and the session revocations are read this way: a change made on
one replica (or by the CLI) reaches every replica within the refresh interval,
and a store that has gone away never locks anyone out of the stop button: the
last value read keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Generic, TypeVar

from breakglass.errors import ServeStoreError

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("breakglass.serve")

T = TypeVar("T")


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Refreshed(Generic[T]):
    """A value read from the store by ``read``, re-read when ``refresh`` seconds old."""

    def __init__(self, read: Callable[[], T], empty: T, *, refresh: float, what: str) -> None:
        self._read = read
        self._value = empty
        self._refresh = refresh
        self._what = what
        self._read_at = -float("inf")
        self._reading = threading.Lock()
        self.problem: str | None = None
        """Why the last re-read failed (the last good value is in use meanwhile)."""

    def get(self) -> T:
        """The value in memory, re-read first when due (unless another thread is reading).

        Called on the event loop (a page handler), a due re-read runs on a thread of its own
        and this call answers from memory: a hanging store must not stall every request,
        halts included. A worker thread reads inline, so it sees a change within ``refresh``.
        """
        if time.monotonic() - self._read_at >= self._refresh and not self._reading.locked():
            if _on_event_loop():
                threading.Thread(target=self.reload, name="breakglass-reread", daemon=True).start()
            else:
                self.reload()
        return self._value

    def reload(self, *, wait: bool = False) -> None:
        """Read the store now; ``wait`` for a read already running rather than skip."""
        # One reader at a time: with the store hanging, requests must not pile up behind it.
        if not self._reading.acquire(blocking=wait):
            return
        try:
            try:
                value = self._read()
            except ServeStoreError as exc:
                if self.problem is None:
                    logger.error(  # noqa: TRY400 -- one line
                        "cannot re-read %s; using the last read: %s", self._what, exc
                    )
                self.problem = str(exc)
                self._read_at = time.monotonic()  # retry after the interval, not per request
                return
            self._value = value  # one reference swapped: readers see the old or the new, whole
            self._read_at = time.monotonic()
            self.problem = None
        finally:
            self._reading.release()
