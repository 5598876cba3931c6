"""Test helpers that ship with breakglass: clocks and sources a test drives by hand.

The shared provider conformance suite lives in :mod:`breakglass.testing.conformance`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK
from breakglass.observation import Observation

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from breakglass.clock import Clock
    from breakglass.reading import ReadingLoop

__all__ = ["ManualClock", "ScriptedSource"]


class ManualClock:
    """A :class:`breakglass.clock.Clock` that moves only when told to.

    The monotonic and the wall clock move together on :meth:`advance`; the
    wall clock alone moves on :meth:`jump_wall` (an NTP step, a VM resume).
    """

    def __init__(self, start: datetime | None = None, boot: str | None = "manual-boot") -> None:
        self._mono = 1000.0
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self.boot: str | None = boot
        """What :meth:`boot_id` answers; change it to simulate a reboot."""

    def monotonic(self) -> float:
        """The manual monotonic time."""
        return self._mono

    def now(self) -> datetime:
        """The manual wall-clock time."""
        return self._wall

    def boot_id(self) -> str | None:
        """The simulated boot id."""
        return self.boot

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        with self._lock:
            self._mono += seconds
            self._wall += timedelta(seconds=seconds)

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (negative: backwards)."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)


class ScriptedSource:
    """A :class:`breakglass.seams.FlagSource` whose observations a test pushes.

    ``push`` reports synchronously on the caller's thread, so a test sees the
    engine's decision as soon as ``push`` returns.
    """

    def __init__(self, name: str = "scripted", clock: Clock | None = None) -> None:
        self._name = name
        self._clock = clock
        self._listener: Callable[[Observation], None] | None = None
        self._current = Observation.unread(name)
        self.started = False
        self.closed = False

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Remember the listener."""
        self._listener = listener
        self.started = True

    def current(self) -> Observation:
        """The latest pushed observation."""
        return self._current

    def close(self) -> None:
        """Stop reporting."""
        self.closed = True
        self._listener = None

    def readers(self) -> Sequence[ReadingLoop]:
        """None: a test pushes the observations itself."""
        return ()

    def push(self, observation: Observation) -> None:
        """Report ``observation`` to the engine now."""
        self._current = observation
        if self._listener is not None:
            self._listener(observation)

    def confirm(self, value: object) -> None:
        """Report that the vendor just confirmed ``value`` (raw)."""
        self.push(Observation.confirmed(self._name, value, self._require_clock()))

    def missing(self) -> None:
        """Report that the vendor just said the flag does not exist."""
        self.push(Observation.missing(self._name, self._require_clock()))

    def fail(self, error: str) -> None:
        """Report a failed contact (the value ages)."""
        self.push(self._current.failed(error))

    def unreadable(self, error: str) -> None:
        """Report that the value cannot be told at all."""
        self.push(self._current.unreadable(error))

    def _require_clock(self) -> Clock:
        return SYSTEM_CLOCK if self._clock is None else self._clock
