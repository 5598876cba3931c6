"""The state engine: keeps every source's latest observation and the one decision.

It recomputes the decision when a source reports and when a freshness
deadline passes, never per request. Readers on the hot path read
:attr:`StateEngine.deadline` (one float) and compare it with the monotonic
clock; everything else reads :attr:`StateEngine.state`.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING

from breakglass import forking
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import StoreError
from breakglass.observation import NoValue, Observation
from breakglass.seams import HaltsAhead
from breakglass.state import (
    HALTED_DEADLINE,
    PROBLEM_CAUSES,
    Cause,
    FlagState,
    Remembered,
    decide,
    remembered_deadline,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from breakglass.persistence import StateStore
    from breakglass.seams import FlagSource

logger = logging.getLogger("breakglass")


_STORE_RETRY_SECONDS = 2.0
_WATCH_SECONDS = 0.25
"""How often the timer thread checks that every reader still reports."""


def _known(cause: Cause) -> bool:
    """A cause a live source established (a fresh value, or a confirmed problem)."""
    return cause in (Cause.ACTIVE, Cause.OFF) or cause in PROBLEM_CAUSES


def _answered(obs: Observation) -> bool:
    return obs.value is not NoValue.UNREAD or obs.error is not None


class StateEngine:
    """Turns the observations of one or more sources into one fail-closed decision.

    Args:
        flag_key: The flag served (for logs and status).
        sources: The sources to read; each is started by :meth:`start`.
        max_staleness: Seconds a confirmation stays fresh.
        store: The durable last-known state; ``None`` keeps nothing across restarts.
        clock: The clocks to read (tests pass a manual one).
        sources_after_fork: Builds new sources in a forked child (the parent's
            reader threads do not survive ``fork()``); without it a started
            engine's child reads halted, cause ``reader_stopped``.

    Thread-safety: sources report from their own threads; listeners are called
    one at a time, in decision order, from whichever thread caused the change.
    """

    def __init__(
        self,
        flag_key: str,
        sources: Sequence[FlagSource],
        *,
        max_staleness: float,
        store: StateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sources_after_fork: Callable[[], Sequence[FlagSource]] | None = None,
    ) -> None:
        self.flag_key = flag_key
        self.max_staleness = max_staleness
        self._sources = list(sources)
        self._sources_after_fork = sources_after_fork
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        # Re-entrant: a listener may read `state`, which can recompute and notify again.
        self._notify_lock = threading.RLock()
        self._observations: dict[str, Observation] = {
            src.name: Observation.unread(src.name) for src in self._sources
        }
        self._remembered: Remembered | None = None
        self._remembered_deadline = HALTED_DEADLINE
        self._store_problem: str | None = None
        self._store_checked_at = -float("inf")
        self._saved: tuple[bool, float] | None = None
        self._listeners: list[Callable[[FlagState], None]] = []
        self._seq = 0
        self._notified_seq = 0
        self._notified: FlagState | None = None
        self._halt_logged = False  # a recovery is then logged at the halt's level
        # A source's early halt (its name, the coming cause, when): held until it reports.
        self._ahead: tuple[str, Cause, float] | None = None
        self._started = False
        self._closed = False
        self._forked = False
        self._wake = threading.Event()
        self._answered = threading.Event()
        self._timer: threading.Thread | None = None
        initial = FlagState(active=False, cause=Cause.UNCONFIRMED, detail="not started")
        self._state = initial
        self.deadline: float = HALTED_DEADLINE
        """Monotonic time until which the flag is active; read lock-free on the hot path."""
        self.decided: tuple[FlagState, float] = (initial, self._clock.monotonic())
        """The current decision and the monotonic moment it took effect on the guard's path
        (``deadline`` moved); listeners run after it, so a listener that times the decision
        reads it here, not from the clock."""
        forking.in_child(self._after_fork, restart=self._restart_after_fork)

    def __repr__(self) -> str:
        return f"StateEngine(flag_key={self.flag_key!r}, sources={list(self._observations)!r})"

    @property
    def clock(self) -> Clock:
        """The clocks this engine reads."""
        return self._clock

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the remembered state, start the sources and the deadline timer.

        Returns at once and never raises: a source that fails to start is an
        unsure source (halted), logged once. A second call does nothing.
        """
        if self._started:
            return
        self._started = True
        self._load_remembered()
        self._recompute()
        for src in self._sources:
            if isinstance(src, HaltsAhead):
                src.on_halt_ahead(functools.partial(self.halt_ahead, src.name))
            try:
                src.start(self._on_observation)
            except Exception as exc:
                logger.exception("source %s failed to start", src.name)
                self._on_observation(
                    self._observations[src.name].unreadable(
                        f"failed to start: {type(exc).__name__}"
                    )
                )
        self._timer = threading.Thread(
            target=self._run_timer, name="breakglass-deadline", daemon=True
        )
        self._timer.start()

    def close(self) -> None:
        """Stop the sources and the timer; the flag reads halted (cause ``closed``) from now on."""
        if self._closed:
            return
        self._closed = True
        # Halted from this moment, for every reader (guard, state, OpenFeature), not once the
        # sources have closed: closing a vendor SDK can take a second, past any deadline.
        self._publish(FlagState(active=False, cause=Cause.CLOSED, detail="the bridge was closed"))
        for src in self._sources:
            try:
                src.close()
            except Exception:
                logger.exception("source %s failed to close", src.name)
        self._wake.set()
        if self._timer is not None:
            self._timer.join(timeout=2.0)

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, nothing from the parent, halted until its own readers confirm."""
        self._lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._wake = threading.Event()
        self._answered = threading.Event()
        self.deadline = HALTED_DEADLINE
        self._ahead = None
        forked = FlagState(
            active=False,
            cause=Cause.UNCONFIRMED,
            detail="forked: halted until this process's own readers confirm",
        )
        self.decided = (forked, self._clock.monotonic())
        # The parent's decision and its remembered state were the parent's; this process has
        # seen nothing yet. Announced to no one: the listeners' state is reset the same way.
        self._state = self._notified = forked
        self._remembered, self._remembered_deadline = None, HALTED_DEADLINE
        self._saved = None
        self._timer = None

    def _restart_after_fork(self) -> None:
        """In a forked child, once every lock is fresh: this process's own readers."""
        if not self._started or self._closed:
            return
        rebuilt: Sequence[FlagSource] | None = None
        if self._sources_after_fork is not None:
            try:
                rebuilt = self._sources_after_fork()
            except Exception:
                logger.exception("cannot rebuild the sources after fork; serving halted")
        if rebuilt is None:
            self._observations = {
                src.name: Observation.unread(src.name).stopped(
                    "the reader threads did not survive fork()"
                )
                for src in self._sources
            }
            self._state = self._notified = decide(
                self._observations.values(), self._clock.monotonic(), self.max_staleness
            )
            return
        self._sources = list(rebuilt)
        self._observations = {src.name: Observation.unread(src.name) for src in self._sources}
        self._started = False
        self._forked = True
        self.start()

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> FlagState:
        """The current decision (an active state past its deadline is recomputed first)."""
        state = self._state
        if state.active:
            ahead = self._ahead
            if ahead is not None:
                # The guard refuses already; every other reader (OpenFeature, OFREP) must too.
                return FlagState(
                    active=False,
                    cause=ahead[1],
                    source=ahead[0],
                    detail=f"{ahead[0]} saw the halt; its checked read follows",
                )
            if self._clock.monotonic() >= state.deadline:
                return self._recompute()
        return state

    @property
    def active(self) -> bool:
        """Whether the system may run now: one float compared with the monotonic clock."""
        return self._clock.monotonic() < self.deadline

    @property
    def ahead_cause(self) -> Cause | None:
        """The cause of an early halt whose observation has not arrived yet, else ``None``."""
        ahead = self._ahead
        return None if ahead is None else ahead[1]

    def halt_ahead(self, source: str, cause: Cause) -> None:
        """Refuse from this instant: ``source`` saw a halt its next observation will report.

        Only ever halts. It holds until that source's next observation, which then
        decides as usual; if that observation still says active, the flag is active
        again at once. The decision's moment (:attr:`decided`) is this one.
        """
        if self._closed or self.deadline == HALTED_DEADLINE:
            return
        now = self._clock.monotonic()
        with self._lock:
            if source in self._observations:
                self.deadline = HALTED_DEADLINE
                self._ahead = (source, cause, now)

    def observations(self) -> list[Observation]:
        """Each source's latest observation."""
        with self._lock:
            return list(self._observations.values())

    def subscribe(self, listener: Callable[[FlagState], None]) -> Callable[[], None]:
        """Call ``listener(state)`` on every change of decision; returns an unsubscribe function.

        A listener's exception is logged and never reaches the source.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def wait_for_confirmation(self, timeout: float) -> FlagState:
        """Wait up to ``timeout`` seconds until every source has answered once; return the state.

        "Answered" means a confirmation, a "flag missing", or a failure: after
        it the decision no longer rests on a remembered state or on nothing.
        """
        self._answered.wait(timeout)
        return self.state

    # ------------------------------------------------------------------ internals

    def _on_observation(self, obs: Observation) -> None:
        if self._closed:
            return
        with self._lock:
            if obs.source not in self._observations:
                logger.warning("ignoring an observation from unknown source %s", obs.source)
                return
            self._observations[obs.source] = obs
            answered = all(_answered(o) for o in self._observations.values())
            ahead = self._ahead
            if ahead is not None and ahead[0] == obs.source:
                self._ahead = None  # this observation decides now
            else:
                ahead = None
        self._recompute(ahead)
        if answered:
            self._answered.set()

    def _load_remembered(self) -> None:
        if self._store is None:
            return
        try:
            self._remembered = self._store.load()
        except StoreError as exc:
            self._store_failed(str(exc))
            return
        if self._remembered is not None and not self._forked:
            # A forked child serves no remembered true: it starts halted (a remembered false holds).
            self._remembered_deadline = remembered_deadline(
                self._remembered,
                self._clock.monotonic(),
                self._clock.now(),
                self.max_staleness,
                self._clock.boot_id(),
            )

    def _recompute(self, ahead: tuple[str, Cause, float] | None = None) -> FlagState:
        with self._lock:
            previous = self._state
            now = self._clock.monotonic()
            state = decide(
                self._observations.values(),
                now,
                self.max_staleness,
                self._remembered,
                self._remembered_deadline,
            )
            if not state.remembered and _known(state.cause):
                # A real source is fresh, or confirmed a problem: what was remembered is obsolete.
                self._remembered = None
            if self._closed:
                return self._state
            if state.active:
                # Remember first, serve after: a true that could not be written is not served.
                state = self._apply_store(state, now)
            changed = not state.same_decision(previous)
            self._seq += 1
            seq = self._seq
            self._state = state
            # A source's early halt holds until that source reports, whoever recomputes first.
            held = state.active and self._ahead is not None
            self.deadline = state.deadline if state.active and not held else HALTED_DEADLINE
            if changed:
                at = ahead[2] if ahead is not None and not state.active else None
                self.decided = (state, self._clock.monotonic() if at is None else at)
        if changed and (state.active or self._store_problem is not None):
            # A halt needs no wake-up (nothing to time; a thread woken on every reader of a host
            # at once costs the last of them), nor does a later deadline: the timer re-reads it
            # when it wakes anyway. A store to retry, or a new active deadline, does.
            self._wake.set()
        self._notify(seq, state)
        if not state.active:
            # Stop first, remember after: neither the guard nor the listeners wait for the disk.
            with self._lock:
                # A newer decision has its own say; closing is no decision, so a halt decided
                # just before close() is still written (the next process must come up halted).
                if self._seq == seq or self._closed:
                    self._apply_store(state, now)
        return state

    def _apply_store(self, state: FlagState, now: float) -> FlagState:
        """Persist confirmed decisions; without a working store, never serve ``true``."""
        if self._store is None:
            return state
        moment = self._to_remember(state, now)
        if moment is not None:
            confirmed_at, confirmed_mono = moment
            saved = self._saved
            due = (
                saved is None
                or saved[0] != state.active
                or confirmed_mono - saved[1] >= self.max_staleness / 4
            )
            if due and (
                self._store_problem is None or now - self._store_checked_at >= _STORE_RETRY_SECONDS
            ):
                self._store_checked_at = now
                try:
                    self._store.save(
                        active=state.active,
                        confirmed_at=confirmed_at,
                        source=str(state.source),
                        confirmed_mono=confirmed_mono,
                        boot_id=self._clock.boot_id(),
                    )
                except StoreError as exc:
                    self._store_failed(str(exc))
                else:
                    self._saved = (state.active, confirmed_mono)
                    self._store_recovered()
        if self._store_problem is not None and state.active:
            return FlagState(
                active=False,
                cause=Cause.STORE_UNAVAILABLE,
                source="state-store",
                detail=f"cannot keep a halt across restarts: {self._store_problem}",
            )
        return state

    def _to_remember(self, state: FlagState, now: float) -> tuple[datetime, float] | None:
        """When ``state`` is knowledge worth keeping across a restart, the moment it was confirmed."""
        if state.remembered:
            return None
        if state.cause in (Cause.ACTIVE, Cause.OFF):
            if state.confirmed_at is None or state.confirmed_mono is None:
                return None
            return state.confirmed_at, state.confirmed_mono
        if state.cause in PROBLEM_CAUSES:
            # A confirmed problem is kept as a halt: the next process must not come up active.
            return self._clock.now(), now
        return None

    def _store_failed(self, problem: str) -> None:
        if self._store_problem is None:
            logger.error("state store unusable, serving halted until it works again: %s", problem)
        self._store_problem = problem
        self._store_checked_at = self._clock.monotonic()

    def _store_recovered(self) -> None:
        if self._store_problem is not None:
            logger.warning("state store works again: %s", self._store)
            self._store_problem = None

    def _publish(self, state: FlagState) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._state = state
            self.deadline = HALTED_DEADLINE
            self.decided = (state, self._clock.monotonic())
        self._notify(seq, state)

    def _notify(self, seq: int, state: FlagState) -> None:
        with self._notify_lock:
            if seq <= self._notified_seq:
                return  # a newer decision was already announced
            self._notified_seq = seq
            previous = self._notified
            if previous is not None and previous.same_decision(state):
                return
            self._notified = state
            self._log_change(previous, state)
            for listener in list(self._listeners):
                try:
                    listener(state)
                except Exception:
                    logger.exception("state listener %r failed", listener)

    def _log_change(self, previous: FlagState | None, state: FlagState) -> None:
        if state.active:
            if self._halt_logged and previous is not None:
                # A recovery matters as much as the halt it ends: the same level, and its cause.
                logger.warning(
                    "%s: ACTIVE again (source %s), after HALTED, cause %s",
                    self.flag_key,
                    state.source,
                    previous.cause.value,
                )
            else:
                logger.info("%s: ACTIVE (source %s)", self.flag_key, state.source)
            self._halt_logged = False
        elif state.cause is Cause.CLOSED:
            logger.info("%s: closed", self.flag_key)
        elif previous is None and state.cause is Cause.UNCONFIRMED:
            # Every start passes through here; a warning would cry wolf on each one.
            logger.info("%s: halted until a source confirms the flag", self.flag_key)
        else:
            self._halt_logged = True
            logger.warning(
                "%s: HALTED, cause %s (source %s): %s",
                self.flag_key,
                state.cause.value,
                state.source,
                state.detail,
            )

    def _is_closed(self) -> bool:
        return self._closed

    def _watch_readers(self) -> None:
        """Halt (cause ``reader_stopped``) for every source whose reading loop ended or hangs."""
        for src in self._sources:
            try:
                problems = [p for loop in src.readers() if (p := loop.problem()) is not None]
            except Exception:
                logger.exception("cannot check the readers of source %s", src.name)
                problems = [f"the readers of {src.name} cannot be checked"]
            if not problems:
                continue
            with self._lock:
                obs = self._observations.get(src.name)
                if obs is None or obs.value is NoValue.READER_STOPPED:
                    continue
                self._observations[src.name] = obs.stopped("; ".join(problems))
            self._recompute()

    def _run_timer(self) -> None:
        while not self._closed:
            self._watch_readers()
            state = self._state
            now = self._clock.monotonic()
            waits = [_WATCH_SECONDS]
            if state.active:
                waits.append(state.deadline - now)
            if self._store_problem is not None:
                waits.append(_STORE_RETRY_SECONDS)
            self._wake.wait(timeout=max(0.0, min(waits)))
            self._wake.clear()
            if self._is_closed():
                return
            current = self._state
            if (current.active and self._clock.monotonic() >= current.deadline) or (
                self._store_problem is not None
            ):
                self._recompute()
