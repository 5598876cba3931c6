"""A worker's source: the relay's decision, read from the channel file, fail-closed.

Rules, each one a way to be unsure that reads as halted:

- **Only a write seen happening is trusted.** The first snapshot after start
  (or after the relay was replaced) only sets the baseline: a file left by a
  dead relay says nothing about now. The worker is halted until the relay
  writes again, so a restarted worker stays halted until the relay confirms.
- **Time is the worker's own.** A new write happened after the last poll that
  still saw the old one, so the relay's ``remaining`` is counted from that poll,
  on the worker's monotonic clock: never later than the truth, whatever clock
  the relay has.
- **The shorter budget wins.** The relay's ``max_staleness`` minus ``remaining``
  is how old the vendor's answer was at the write; the worker's deadline is
  that answer plus the worker's own ``max_staleness`` when that comes sooner.
- **A silent relay is an unsure one.** No new write for ``silent_after``
  seconds (killed, frozen, starved) halts the worker, with the relay's pid.
- **A file that is not a sane channel** (missing, truncated, corrupt, writable
  by others, another flag, a future version) halts at once, with the reason.
- **Relay unsure, worker unsure**: the relay's cause is mirrored (stale stays
  stale, off stays off, a missing flag stays missing).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.observation import NoValue, Observation
from breakglass.reading import ReadingLoop, stall_allowance
from breakglass.relay.channel import ChannelError, ChannelReader, Snapshot
from breakglass.relay.watch import ChangeWatch
from breakglass.source_id import source_id
from breakglass.state import Cause

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


NAME = "relay"
HALT_SETTLE = 0.005
"""Seconds a worker that halted early stays off the CPU before its checked read. A ring wakes
every worker on the host at once and the scheduler runs each until it sleeps: the whole read,
decision and listeners take ~0.4 ms, so the fiftieth worker on two CPUs began only ~10 ms
later. The early halt takes ~0.1 ms; the rest waits until every worker has halted."""


@dataclass(frozen=True, slots=True)
class _Seen:
    instance: str
    seq: int


def _wall(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def observation_for(
    snap: Snapshot, base: float, max_staleness: float, flag_key: str
) -> Observation:
    """What a worker observes from a fresh relay write that happened no earlier than ``base``.

    Args:
        snap: The relay's write.
        base: The worker's monotonic time of its last poll before the write.
        max_staleness: The worker's own ``max_staleness``.
        flag_key: The flag the worker serves.
    """
    if snap.flag_key != flag_key:
        return Observation(
            NAME,
            NoValue.UNREADABLE,
            error=f"the relay serves {snap.flag_key!r}, not {flag_key!r}",
        )
    said = f"relay (pid {snap.pid}): {snap.cause.value}: {snap.detail}"
    confirmed_wall = _wall(snap.confirmed_wall)
    match snap.cause:
        case Cause.ACTIVE:
            # The vendor's confirmation was this old when the relay wrote (the relay's deadline is
            # that confirmation + its own max_staleness). The worker holds to the shorter budget:
            # a worker told 1 s behind a relay allowed 30 s must not run 30 s on an old answer.
            age = snap.max_staleness - snap.remaining
            held = min(snap.remaining, max_staleness - age)
            return Observation(
                NAME,
                value=True,
                confirmed_at=base + held - max_staleness,
                confirmed_wall=confirmed_wall,
            )
        case Cause.OFF:
            return Observation(
                NAME, value=False, confirmed_at=base, confirmed_wall=confirmed_wall, error=said
            )
        case Cause.FLAG_MISSING:
            return Observation(NAME, NoValue.FLAG_MISSING, base, confirmed_wall, error=said)
        case Cause.WRONG_TYPE:
            return Observation(NAME, None, base, confirmed_wall, error=said)
        case Cause.STALE:
            # Older than any freshness: the worker classifies it stale, as the relay did.
            return Observation(
                NAME,
                value=False,
                confirmed_at=base - max_staleness - 1.0,
                confirmed_wall=confirmed_wall,
                error=said,
            )
        case Cause.UNCONFIRMED:
            return Observation(NAME, NoValue.UNREAD, error=said)
        case Cause.ERROR | Cause.STORE_UNAVAILABLE | Cause.CLOSED | Cause.READER_STOPPED:
            return Observation(NAME, NoValue.UNREADABLE, error=said)


def mirrored_cause(relay: Cause) -> Cause:
    """The cause a worker reads for its relay's: the relay's own troubles are the worker's ``error``."""
    if relay in (Cause.OFF, Cause.STALE, Cause.FLAG_MISSING, Cause.WRONG_TYPE, Cause.UNCONFIRMED):
        return relay
    return Cause.ERROR


def channel_source_id(path: Path) -> str:
    """The source id of a worker on the channel at ``path``; its relay reports it as ``channel``.

    The channel carries no upstream identity: the relay reports that itself, and serve
    relates the two by this id and the host.
    """
    return source_id(NAME, str(path.resolve()))


def idle_read(silent_after: float) -> float:
    """The longest a worker behind inotify waits between reads of the channel, in seconds."""
    return min(0.5, silent_after / 4)


class RelaySource:
    """A :class:`breakglass.seams.FlagSource` reading a relay's channel file.

    Args:
        reader: The channel file's reader.
        flag_key: The flag this worker serves (the relay must serve the same).
        max_staleness: The worker engine's ``max_staleness``.
        poll_interval: Seconds between reads of the file (no syscall on the request path).
        silent_after: Seconds without a new write after which the relay counts as gone.
        clock: The clocks to read.
    """

    def __init__(
        self,
        reader: ChannelReader,
        *,
        flag_key: str,
        max_staleness: float,
        poll_interval: float = 0.005,
        silent_after: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        watch: ChangeWatch | None = None,
    ) -> None:
        self._reader = reader
        self._flag_key = flag_key
        self._max_staleness = max_staleness
        self._poll_interval = poll_interval
        self._silent_after = silent_after
        self._clock = clock
        self._current = Observation.unread(NAME)
        self._seen: _Seen | None = None
        self._last_poll: float | None = None
        self._changed_at: float | None = None
        self._pid = 0
        self._watch = watch
        # With a watch, a read follows each change the relay rings, and at least every _idle
        # seconds (to take its heartbeats and see silence); without one, a read every poll_interval.
        self._idle = idle_read(silent_after)
        self._first = True
        self._untrusted = True
        self._halt_ahead: Callable[[Cause], None] | None = None
        self._report_next = False
        self._loop = ReadingLoop(
            "breakglass-relay",
            self._step,
            interval=0.0 if watch is not None else poll_interval,
            crashed=self._crashed,
            # A read is one pread of a local file: only a stalled disk makes it slow.
            stall_after=stall_allowance(poll_interval, 1.0),
        )

    @property
    def name(self) -> str:
        """Always ``"relay"``."""
        return NAME

    def __repr__(self) -> str:
        return f"RelaySource({self._reader!r}, flag_key={self._flag_key!r})"

    def on_halt_ahead(self, halt: Callable[[Cause], None]) -> None:
        """Called with the cause as soon as a ring's write says "not active" (see :class:`HaltsAhead`)."""
        self._halt_ahead = halt

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the poll thread; the first read happens at once on it."""
        self._loop.start(listener)

    def readers(self) -> Sequence[ReadingLoop]:
        """The one poll loop."""
        return (self._loop,)

    def current(self) -> Observation:
        """The latest observation."""
        return self._current

    def _step(self) -> Observation | None:
        if self._watch is not None and not self._first:
            if self._untrusted:
                # Waiting for a write seen happening (a worker's start, a relay replaced): the
                # relay rings only changes, so look every poll until its next heartbeat lands.
                self._watch.wait(self._poll_interval)
            else:
                # Each worker at its own moment: after a halt woke the whole host at once, equal
                # timeouts would keep the fleet reading in step, and the next halt could meet
                # the host busy with fifty reads. Half to all of _idle drifts them apart.
                rang = self._watch.wait(self._idle * (0.5 + random.random() / 2))  # noqa: S311
                if rang and self._halt_ahead is not None:
                    # Fifty workers woken at once share two CPUs: the byte that says "halt"
                    # stops this one's guard, then it makes way for the others; the checked
                    # read below decides (halted in the meantime, whatever it finds).
                    cause = self._reader.halted_cause()
                    if cause is not None:
                        self._report_next = True
                        self._halt_ahead(mirrored_cause(cause))
                        time.sleep(HALT_SETTLE)
        self._first = False
        return self.poll_once()

    def poll_once(self) -> Observation | None:
        """Read the file once; return the new observation, or ``None`` when nothing changed."""
        now = self._clock.monotonic()
        try:
            snap = self._reader.read()
        except ChannelError as exc:
            if exc.torn and self._seen is not None:
                # A write in progress (a busy relay, descheduled mid-write): its next write, or
                # this one completed, wakes the next read. Only if it stays torn does it halt,
                # and the last good read keeps counting as "before the write".
                return self._check_torn(now, str(exc))
            self._last_poll = now
            self._seen = None  # trust starts over from a write seen happening
            self._untrusted = True
            self._changed_at = None
            if exc.missing:
                return self._set(Observation(NAME, NoValue.UNREAD, error=str(exc)))
            return self._set(self._current.unreadable(f"relay channel: {exc}"))
        previous_poll, self._last_poll = self._last_poll, now
        seen = _Seen(snap.instance, snap.seq)
        if seen == self._seen:
            return self._check_silence(now)
        first = self._seen is None
        self._seen = seen
        self._changed_at = now
        self._pid = snap.pid
        if first or previous_poll is None:
            self._untrusted = True
            if self._current.value is NoValue.UNREAD:
                # Not an answer yet (no error): wait_for_confirmation keeps waiting for the next write.
                return self._set(Observation.unread(NAME))
            return None
        self._untrusted = False
        return self._set(observation_for(snap, previous_poll, self._max_staleness, self._flag_key))

    def _check_torn(self, now: float, problem: str) -> Observation | None:
        if self._changed_at is None or now - self._changed_at <= self._silent_after:
            return None
        self._seen = None
        self._untrusted = True
        return self._set(
            self._current.unreadable(
                f"relay channel unreadable for {now - self._changed_at:.1f} s: {problem}"
            )
        )

    def _check_silence(self, now: float) -> Observation | None:
        if self._changed_at is None or now - self._changed_at <= self._silent_after:
            return None
        if self._current.value is NoValue.UNREADABLE:
            return None  # already said
        return self._set(
            self._current.unreadable(
                f"relay (pid {self._pid}) silent for {now - self._changed_at:.1f} s"
            )
        )

    def _set(self, obs: Observation) -> Observation | None:
        if obs == self._current and not self._report_next:
            return None
        # After an early halt the engine holds the guard until this source reports: always report.
        self._report_next = False
        self._current = obs
        return obs

    def close(self) -> None:
        """Stop polling; returns within about one poll interval."""
        self._loop.close(timeout=1.0)
        self._reader.close()
        if self._watch is not None:
            self._watch.close()

    def _crashed(self, problem: str) -> Observation | None:
        self._seen = None
        self._untrusted = True
        return self._set(self._current.unreadable(problem))
