"""Reading the local store: a background poll, each successful read a confirmation."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import StoreError
from breakglass.observation import NoValue, Observation

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.local.store import LocalStore

logger = logging.getLogger("breakglass.local")


class LocalSource:
    """A :class:`breakglass.seams.FlagSource` on the local store.

    Polls every ``poll_interval`` seconds on a daemon thread. A read that
    succeeds confirms the value (the file *is* the authority on this host). A
    lock held too long by another process is a failed contact (the value ages);
    a corrupt or unreadable file means the value is unknown (halted at once).
    """

    def __init__(
        self,
        store: LocalStore,
        flag_key: str,
        *,
        poll_interval: float = 0.02,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._flag_key = flag_key
        self._poll_interval = poll_interval
        self._clock = clock
        self._current = Observation.unread(self.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader = store.reader()

    @property
    def name(self) -> str:
        """Always ``"local"``."""
        return "local"

    def __repr__(self) -> str:
        return f"LocalSource({self._store!r}, flag_key={self._flag_key!r})"

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the poll thread; the first read happens at once on it."""
        self._thread = threading.Thread(
            target=self._run, args=(listener,), name="breakglass-local", daemon=True
        )
        self._thread.start()

    def current(self) -> Observation:
        """The latest observation."""
        return self._current

    def poll_once(self) -> Observation:
        """Read the store once and return the new observation (used by the poll thread)."""
        try:
            value = self._reader.read(self._flag_key)
        except StoreError as exc:
            if exc.transient:
                self._current = self._current.failed(str(exc))
            else:
                self._current = self._current.unreadable(str(exc))
            return self._current
        if value is NoValue.FLAG_MISSING:
            self._current = Observation.missing(self.name, self._clock)
        else:
            self._current = Observation.confirmed(self.name, value, self._clock)
        return self._current

    def close(self) -> None:
        """Stop polling; returns within about one poll interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self, listener: Callable[[Observation], None]) -> None:
        while not self._stop.is_set():
            obs = self.poll_once()
            try:
                listener(obs)
            except Exception:
                logger.exception("listener failed on %r", obs)
            self._stop.wait(self._poll_interval)
