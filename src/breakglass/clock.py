"""Time, read in one place.

Freshness is measured on the monotonic clock, so a wall-clock jump can never
make a stale value fresh again. Wall-clock time (UTC) is used only for what
people read: ``confirmed_at`` in status output, audit records, the 503 notice.

Across a restart the monotonic clock still counts (it runs from the host's
boot), so a remembered confirmation keeps both readings and the boot's id: its
age is trusted only when both clocks agree it is young, within the same boot.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


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

    def boot_id(self) -> str | None:
        """An id of the monotonic clock's epoch (the host's boot); ``None`` when unknown."""
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

    def boot_id(self) -> str | None:
        """The kernel's boot id (Linux); ``None`` elsewhere, so nothing remembered is trusted."""
        return _read_boot_id()


@functools.cache
def _read_boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


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
