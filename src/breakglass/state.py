"""The fail-closed decision: the observations of all sources -> one :class:`FlagState`.

The flag is **active only when breakglass is sure it is true**. A source's value
is *fresh* while ``now - confirmed_at <= max_staleness`` on the monotonic clock.

1. Any fresh source says false -> halted (stop wins).
2. Otherwise, at least one fresh source says true -> active, until the last of
   those confirmations ages out.
3. Otherwise -> halted, with the most telling cause.

:func:`decide` is pure; :class:`breakglass.engine.StateEngine` runs it on every
observation and when a freshness deadline passes, never per request.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from breakglass.observation import NoValue, Observation

if TYPE_CHECKING:
    from collections.abc import Iterable

HALTED_DEADLINE = -math.inf
"""The deadline of every halted state: no monotonic time is before it."""


class Cause(enum.StrEnum):
    """Why the flag reads as it does. Every cause but ``ACTIVE`` means halted."""

    ACTIVE = "active"
    """A fresh source confirmed ``true`` and none confirmed ``false``."""

    OFF = "off"
    """A fresh source confirmed ``false``, or the host was halted before a restart."""

    STALE = "stale"
    """The last confirmation is older than ``max_staleness``."""

    UNCONFIRMED = "unconfirmed"
    """No source has confirmed any value since start (cold start, vendor away)."""

    ERROR = "error"
    """A source cannot tell the value (it failed before any confirmation, or its store is unreadable)."""

    FLAG_MISSING = "flag_missing"
    """The vendor says the flag does not exist."""

    WRONG_TYPE = "wrong_type"
    """The vendor served something other than a boolean."""

    STORE_UNAVAILABLE = "store_unavailable"
    """The durable state store cannot be read or written, so a halt could not survive a restart."""

    CLOSED = "closed"
    """The bridge was closed."""

    READER_STOPPED = "reader_stopped"
    """A source's reading thread ended or hangs (the engine watches every reader)."""


PROBLEM_CAUSES = frozenset(
    {Cause.FLAG_MISSING, Cause.WRONG_TYPE, Cause.ERROR, Cause.READER_STOPPED}
)
"""Halts a source *confirmed* (the vendor answered, or the reader itself is broken), as
opposed to a vendor merely away. They override a remembered ``true`` and are persisted."""


# When several sources are unsure, report the cause that tells an operator most.
_CAUSE_PRIORITY = (
    Cause.READER_STOPPED,
    Cause.FLAG_MISSING,
    Cause.WRONG_TYPE,
    Cause.ERROR,
    Cause.STALE,
    Cause.UNCONFIRMED,
)


@dataclass(frozen=True, slots=True)
class FlagState:
    """The decision at one moment.

    Attributes:
        active: Whether the system may run.
        cause: Why (see :class:`Cause`).
        source: The source that decided, or ``None``.
        confirmed_at: Wall-clock time of the deciding confirmation, if any.
        confirmed_mono: The same moment on the monotonic clock, if any.
        deadline: Monotonic time until which ``active`` holds; halted states
            use :data:`HALTED_DEADLINE`. The guard compares it with the clock.
        detail: A sentence for people (never a secret).
        remembered: Whether the decision rests on the state remembered from
            before this process started rather than on a live source.
    """

    active: bool
    cause: Cause
    source: str | None = None
    confirmed_at: datetime | None = None
    confirmed_mono: float | None = None
    deadline: float = HALTED_DEADLINE
    detail: str | None = None
    remembered: bool = False

    def same_decision(self, other: FlagState) -> bool:
        """Whether ``other`` is the same decision for the same reason (ignoring ages)."""
        return (self.active, self.cause, self.source) == (other.active, other.cause, other.source)

    def age_ms(self, now_mono: float) -> float | None:
        """Milliseconds since the deciding confirmation, or ``None``."""
        if self.confirmed_mono is None:
            return None
        return max(0.0, (now_mono - self.confirmed_mono) * 1000.0)


@dataclass(frozen=True, slots=True)
class Remembered:
    """The last confirmed decision, as loaded from the durable store at start-up."""

    active: bool
    confirmed_at: datetime
    source: str
    confirmed_mono: float | None = None
    """The confirmation on the monotonic clock (which counts from the host's boot)."""
    boot_id: str | None = None
    """The boot that monotonic time belongs to; ``None``: unknown (a row from an older version)."""


def _classify(obs: Observation, now_mono: float, max_staleness: float) -> Cause:
    if obs.value is NoValue.FLAG_MISSING and obs.confirmed_at is not None:
        return Cause.FLAG_MISSING
    if obs.value is NoValue.READER_STOPPED:
        return Cause.READER_STOPPED
    if obs.value is NoValue.UNREADABLE:
        return Cause.ERROR
    if obs.confirmed_at is None:
        # Nothing confirmed yet, whether or not the attempts failed; the error goes in the detail.
        return Cause.UNCONFIRMED
    # `type(...) is bool` on purpose: 0, 1, "false", None and {} are wrong types, never coerced.
    if type(obs.value) is not bool:
        return Cause.WRONG_TYPE
    age = now_mono - obs.confirmed_at
    if age > max_staleness or age < 0:
        # A confirmation from the future is not trusted either.
        return Cause.STALE
    return Cause.ACTIVE if obs.value else Cause.OFF


_TEXTS = {
    Cause.ACTIVE: "the flag is on and fresh",
    Cause.OFF: "the flag is off",
    Cause.STALE: "no confirmation within max_staleness",
    Cause.UNCONFIRMED: "no value confirmed since start",
    Cause.ERROR: "the source cannot tell the value",
    Cause.FLAG_MISSING: "the source (vendor or local store) has no such flag",
    Cause.WRONG_TYPE: "the source served something other than a boolean",
    Cause.STORE_UNAVAILABLE: "the durable state store is unusable",
    Cause.CLOSED: "the bridge was closed",
    Cause.READER_STOPPED: "a reader stopped reporting",
}


def public_reason(cause: Cause) -> str:
    """The cause in words fit for an outside client: no host names, paths or vendor errors."""
    return f"{cause.value}: {_TEXTS[cause]}"


def _detail(obs: Observation, cause: Cause, max_staleness: float) -> str:
    text = _TEXTS[cause]
    if cause is Cause.WRONG_TYPE:
        text = f"the vendor served a {type(obs.value).__name__}, not a boolean"
    elif cause is Cause.STALE:
        text = f"no confirmation within max_staleness ({max_staleness:g} s)"
    return f"{text}: {obs.error}" if obs.error and cause is not Cause.ACTIVE else text


def decide(
    observations: Iterable[Observation],
    now_mono: float,
    max_staleness: float,
    remembered: Remembered | None = None,
    remembered_deadline: float = HALTED_DEADLINE,
) -> FlagState:
    """Decide whether the system may run, by the fail-closed rules.

    Args:
        observations: The latest observation of each source.
        now_mono: The current monotonic time.
        max_staleness: Seconds a confirmation stays fresh.
        remembered: The decision persisted before this process started, used
            only until a source confirms something itself.
        remembered_deadline: Monotonic time until which a remembered ``true``
            may be served (its wall-clock age mapped onto the monotonic clock).

    Returns:
        The decision. Never raises.
    """
    # Every configured mechanism must say "may run": a source that cannot be read could be the
    # one whose stop was pressed, so one unsure source halts however many others say true.
    first_to_age: tuple[float, Observation] | None = None
    unsure: list[tuple[Cause, Observation]] = []
    for obs in observations:
        cause = _classify(obs, now_mono, max_staleness)
        if cause is Cause.OFF:
            return FlagState(
                active=False,
                cause=Cause.OFF,
                source=obs.source,
                confirmed_at=obs.confirmed_wall,
                confirmed_mono=obs.confirmed_at,
                detail=_detail(obs, cause, max_staleness),
            )
        if cause is Cause.ACTIVE:
            assert obs.confirmed_at is not None  # noqa: S101 -- guaranteed by _classify
            deadline = obs.confirmed_at + max_staleness
            if first_to_age is None or deadline < first_to_age[0]:
                first_to_age = (deadline, obs)
        else:
            unsure.append((cause, obs))
    if first_to_age is not None and not unsure:
        deadline, obs = first_to_age
        return FlagState(
            active=True,
            cause=Cause.ACTIVE,
            source=obs.source,
            confirmed_at=obs.confirmed_wall,
            confirmed_mono=obs.confirmed_at,
            deadline=deadline,
            detail=_detail(obs, Cause.ACTIVE, max_staleness),
        )
    return _decide_unsure(unsure, now_mono, max_staleness, remembered, remembered_deadline)


def _decide_unsure(
    unsure: list[tuple[Cause, Observation]],
    now_mono: float,
    max_staleness: float,
    remembered: Remembered | None,
    remembered_deadline: float,
) -> FlagState:
    problems = [item for item in unsure if item[0] in PROBLEM_CAUSES]
    if problems:
        # A live confirmation of a problem outranks whatever was remembered from before.
        return _unsure_state(problems, max_staleness)
    if remembered is not None:
        if not remembered.active:
            return FlagState(
                active=False,
                cause=Cause.OFF,
                source=remembered.source,
                confirmed_at=remembered.confirmed_at,
                detail="halted before this process started; waiting for a fresh true",
                remembered=True,
            )
        if now_mono < remembered_deadline:
            return FlagState(
                active=True,
                cause=Cause.ACTIVE,
                source=remembered.source,
                confirmed_at=remembered.confirmed_at,
                confirmed_mono=remembered_deadline - max_staleness,
                deadline=remembered_deadline,
                detail="remembered from before this process started, until it ages out",
                remembered=True,
            )
    if not unsure:
        return FlagState(active=False, cause=Cause.UNCONFIRMED, detail="no source configured")
    return _unsure_state(unsure, max_staleness)


def _unsure_state(unsure: list[tuple[Cause, Observation]], max_staleness: float) -> FlagState:
    cause, obs = min(unsure, key=lambda item: _CAUSE_PRIORITY.index(item[0]))
    return FlagState(
        active=False,
        cause=cause,
        source=obs.source,
        confirmed_at=obs.confirmed_wall,
        confirmed_mono=obs.confirmed_at,
        detail=_detail(obs, cause, max_staleness),
    )


def remembered_deadline(
    remembered: Remembered,
    now_mono: float,
    now_wall: datetime,
    max_staleness: float,
    boot_id: str | None = None,
) -> float:
    """Map a remembered ``true`` onto this process's monotonic clock.

    Served only when its age can be verified: confirmed in this boot (so its
    monotonic time is comparable), and young on *both* clocks. The wall clock
    alone could have been stepped back (an old ``true`` looks fresh); the
    monotonic clock alone stands still while the host sleeps. A confirmation
    that lies in the future on either clock, or whose age cannot be verified,
    is not served at all.
    """
    if not remembered.active:
        return HALTED_DEADLINE
    if remembered.confirmed_mono is None or boot_id is None or remembered.boot_id != boot_id:
        return HALTED_DEADLINE
    wall_age = (now_wall - remembered.confirmed_at).total_seconds()
    mono_age = now_mono - remembered.confirmed_mono
    if wall_age < 0 or mono_age < 0:
        return HALTED_DEADLINE
    age = max(wall_age, mono_age)
    if age > max_staleness:
        return HALTED_DEADLINE
    return now_mono + max_staleness - age
