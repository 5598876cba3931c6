"""What a flag source saw: one observation of the flag from one source.

A source never decides whether the system may run. It reports what it read,
exactly as read (``value`` is the raw value, not coerced), and *when the vendor
last confirmed it* on the monotonic clock. :mod:`breakglass.state` turns the
observations of all sources into one decision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breakglass.clock import Clock


class NoValue(enum.Enum):
    """Markers for an observation that carries no flag value."""

    UNREAD = "unread"
    """Nothing has been read from the vendor yet (cold start)."""

    FLAG_MISSING = "flag_missing"
    """The vendor answered, and the flag does not exist there (deleted, archived, never created)."""

    UNREADABLE = "unreadable"
    """The source can no longer tell the value at all (for example a corrupt local store)."""

    READER_STOPPED = "reader_stopped"
    """The source's reading thread ended or hangs: nothing it reported earlier can be trusted."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One source's latest view of the flag.

    Attributes:
        source: The source's name, e.g. ``"local"`` or ``"unleash"``.
        value: The raw value as read, or a :class:`NoValue` marker. Anything
            but ``True`` or ``False`` (``"false"``, ``0``, ``None``, ``{}``) is
            a wrong type and reads as halted.
        confirmed_at: Monotonic time of the vendor's last confirmation of
            ``value`` (a successful poll, a stream message, a valid stream
            status); ``None`` when never confirmed.
        confirmed_wall: The same moment on the UTC wall clock, for people.
        error: Why the last contact failed, if it did. A failed contact does not
            change ``value`` or ``confirmed_at``: the value just ages.
    """

    source: str
    value: object = NoValue.UNREAD
    confirmed_at: float | None = None
    confirmed_wall: datetime | None = None
    error: str | None = None

    @classmethod
    def unread(cls, source: str) -> Observation:
        """The observation of a source that has not heard from its vendor yet."""
        return cls(source=source)

    @classmethod
    def confirmed(cls, source: str, value: object, clock: Clock) -> Observation:
        """The vendor just confirmed ``value`` (raw, as read)."""
        return cls(source, value, clock.monotonic(), clock.now())

    @classmethod
    def missing(cls, source: str, clock: Clock) -> Observation:
        """The vendor just confirmed that the flag does not exist."""
        return cls(source, NoValue.FLAG_MISSING, clock.monotonic(), clock.now())

    def failed(self, error: str) -> Observation:
        """This observation after a failed contact: same value, ageing, with the error."""
        return replace(self, error=error)

    def unreadable(self, error: str) -> Observation:
        """This source can no longer tell the value at all."""
        return replace(self, value=NoValue.UNREADABLE, error=error)

    def stopped(self, error: str) -> Observation:
        """This source's reader no longer reports (set by the engine's watch, not by the source)."""
        return replace(self, value=NoValue.READER_STOPPED, error=error)
