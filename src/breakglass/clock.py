"""Time, read in one place.

Freshness is measured on the monotonic clock, so a wall-clock jump can never
make a stale value fresh again. Wall-clock time (UTC) is used only for what
people read: ``confirmed_at`` in status output, audit records, the 503 notice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """**Protocol**: the two clocks breakglass reads.

    Implemented by :data:`SYSTEM_CLOCK`, and by
    :class:`breakglass.testing.ManualClock` in tests. Called from any thread.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for freshness and latency)."""
        ...

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The process's real clocks."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


SYSTEM_CLOCK: Clock = SystemClock()


def isoformat_ms(moment: datetime) -> str:
    """Format a UTC time as RFC 3339 with milliseconds, e.g. ``2026-11-27T10:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 time; a naive one is taken as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
