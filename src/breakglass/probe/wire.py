"""The line protocol a reader process speaks to the probe on its stdout.

One event per line, fields separated by single spaces::

    ready <0|1> <monotonic> <cause>     the engine answered; the guard's first state
    flip <0|1> <monotonic> <cause>      the guard started admitting (1) or refusing (0)
    error <text>                        the reader cannot go on (one line, no secrets)

``<monotonic>`` is :func:`time.monotonic` in the reader, with microseconds.
It is comparable with the probe's own stamps because ``CLOCK_MONOTONIC`` is
one clock for every process on a host (Linux, macOS and Windows alike), so no
clock offset has to be estimated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """What a line reports."""

    READY = "ready"
    FLIP = "flip"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    """One parsed line from a reader.

    Attributes:
        kind: What the line reports.
        active: Whether the reader's guard admits requests (``ready`` and ``flip``).
        at: The reader's monotonic time of the event (``ready`` and ``flip``).
        cause: The engine's cause for the decision, e.g. ``"off"`` (``ready`` and ``flip``).
        text: The message of an ``error`` line.
    """

    kind: Kind
    active: bool = False
    at: float = 0.0
    cause: str = ""
    text: str = ""


def state_line(kind: Kind, *, active: bool, at: float, cause: str) -> str:
    """Format a ``ready`` or ``flip`` line (without the newline)."""
    return f"{kind.value} {int(active)} {at:.6f} {cause}"


def error_line(text: str) -> str:
    """Format an ``error`` line; newlines in ``text`` are flattened."""
    return f"{Kind.ERROR.value} {' '.join(text.split())}"


def parse(line: str) -> ReaderEvent:
    """Parse one line.

    Raises:
        ValueError: The line is not in the protocol (a reader printed something else).
    """
    kind_text, _, rest = line.strip().partition(" ")
    kind = Kind(kind_text)
    if kind is Kind.ERROR:
        return ReaderEvent(kind, text=rest)
    active, at, cause = rest.split(" ")
    if active not in ("0", "1"):
        raise ValueError(f"not a 0 or 1: {active!r}")
    return ReaderEvent(kind, active=active == "1", at=float(at), cause=cause)
