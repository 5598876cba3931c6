"""Reading the local store: a background poll, each successful read a confirmation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import StoreError
from breakglass.observation import NoValue, Observation
from breakglass.reading import ReadingLoop, stall_allowance

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from breakglass.local.store import LocalStore

logger = logging.getLogger("breakglass.local")


class LocalSource:
    """A :class:`breakglass.seams.FlagSource` on the local store.

    Polls every ``poll_interval`` seconds on a :class:`ReadingLoop`. A read that
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
        self._reader = store.reader()
        self._loop = ReadingLoop(
            "breakglass-local",
            self.poll_once,
            interval=poll_interval,
            crashed=self._crashed,
            # A read waits at most the SQLite busy timeout (1 s).
            stall_after=stall_allowance(poll_interval, 1.0),
        )

    @property
    def name(self) -> str:
        """Always ``"local"``."""
        return "local"

    def __repr__(self) -> str:
        return f"LocalSource({self._store!r}, flag_key={self._flag_key!r})"

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the poll thread; the first read happens at once on it."""
        self._loop.start(listener)

    def readers(self) -> Sequence[ReadingLoop]:
        """The one poll loop."""
        return (self._loop,)

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
        self._loop.close(timeout=1.0)

    def _crashed(self, problem: str) -> Observation:
        self._current = self._current.unreadable(problem)
        return self._current
