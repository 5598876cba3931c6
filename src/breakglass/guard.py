"""The request guard: the per-request check, requests in flight, drain, and the refusal.

:attr:`Guard.active` is the hot path. It reads the deadline the engine
precomputed on its last recompute and compares it with the monotonic clock:
no I/O, no vendor call, no lock. When the flag turns false (or the last
confirmation ages out) the deadline is already in the past, so the guard
refuses at once, without waiting for the engine to recompute.

Requests admitted while active are never cut: they hold a :class:`Ticket`
until they finish, and a halt only turns *new* requests away. The guard counts
what it admitted, completed, drained (completed after a halt began) and
refused, and :meth:`Guard.drain` waits, bounded, until nothing is in flight::

    guard = Guard(engine, retry_after=30)
    try:
        with guard.admit():
            run_inference()
    except Suspended as exc:
        reply_503(exc.refusal)

The ASGI and WSGI middleware in :mod:`breakglass.middleware` do exactly this
for each HTTP request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from breakglass import forking
from breakglass.clock import SystemClock
from breakglass.errors import BreakglassError
from breakglass.state import Cause, public_reason

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from types import TracebackType

    from breakglass.clock import Clock
    from breakglass.engine import StateEngine
    from breakglass.state import FlagState

logger = logging.getLogger("breakglass.guard")


@dataclass(frozen=True, slots=True)
class GuardStats:
    """A snapshot of the guard's counters.

    Attributes:
        in_flight: Requests admitted and not yet released.
        admitted: Requests admitted since the guard was created.
        completed: Admitted requests that were released.
        drained: Completed requests during whose lifetime a halt began: they
            were admitted while active and allowed to finish.
        refused: Requests turned away while halted.
        halted_since: When the current halt began (UTC wall clock); ``None``
            while active, or when the guard started halted and the moment is
            not known.
    """

    in_flight: int
    admitted: int
    completed: int
    drained: int
    refused: int
    halted_since: datetime | None


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What :meth:`Guard.drain` achieved.

    Attributes:
        completed: Requests that completed while :meth:`Guard.drain` waited.
        remaining: Requests still in flight when it returned (0 when drained).
    """

    completed: int
    remaining: int

    @property
    def drained(self) -> bool:
        """Whether nothing was left in flight."""
        return self.remaining == 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why new requests are turned away, for the 503 notice.

    Attributes:
        reason: The halt's cause and detail, e.g. ``"off: the flag is off"``.
        since: When the halt began (UTC), or ``None`` when not known.
        retry_after: Seconds a client should wait before retrying.
        status_url: A public page about the suspension (a deployer status page), if any.
    """

    reason: str
    since: datetime | None
    retry_after: int
    status_url: str | None = None


class Suspended(BreakglassError):  # noqa: N818 -- names the state the service is in, like `Timeout`
    """Raised by :meth:`Guard.admit` while the system is halted.

    Attributes:
        refusal: The reason, the start of the halt and the retry hint.
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"service suspended: {refusal.reason}")
        self.refusal = refusal


class Ticket:
    """One admitted request: release it when the request has finished.

    A ticket is a context manager (``with guard.admit(): ...``); :meth:`release`
    may also be called by hand, from any thread, and more than once (only the
    first call counts).
    """

    __slots__ = ("_epoch", "_guard", "_released")

    def __init__(self, guard: Guard, epoch: int) -> None:
        self._guard = guard
        self._epoch = epoch
        self._released = False

    def __repr__(self) -> str:
        return f"Ticket(epoch={self._epoch}, released={self._released})"

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._released

    def release(self) -> None:
        """Count the request as completed (and as drained if a halt began meanwhile)."""
        self._guard._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Guard:
    """Admits requests while the flag is active; drains and refuses when it is not.

    Args:
        engine: The state engine whose decision is enforced. The guard
            subscribes to it; call :meth:`close` to unsubscribe.
        retry_after: Seconds sent in ``Retry-After`` on a refusal.
        status_url: A public status page the 503 body links to (``status_url``).
        clock: The clocks to read; ``None`` (the default) uses the engine's
            clock, which is what the engine's deadline is measured on. Pass
            another clock only if it reads the same monotonic time.

    Thread-safety: :attr:`active` is lock-free. :meth:`admit`, ticket release,
    :meth:`stats` and :meth:`drain` share one short lock and may be called
    from any thread; the engine calls the guard's listener from its own threads.
    """

    __slots__ = (
        "__weakref__",
        "_admitted",
        "_clock",
        "_completed",
        "_drained",
        "_engine",
        "_epoch",
        "_halted",
        "_halted_since",
        "_idle",
        "_in_flight",
        "_lock",
        "_monotonic",
        "_refusal",
        "_refused",
        "_unsubscribe",
        "retry_after",
        "status_url",
    )

    def __init__(
        self,
        engine: StateEngine,
        *,
        retry_after: int = 30,
        clock: Clock | None = None,
        status_url: str | None = None,
    ) -> None:
        if retry_after < 0:
            msg = f"retry_after must be >= 0, not {retry_after}"
            raise ValueError(msg)
        self._engine = engine
        self.retry_after = retry_after
        """Seconds sent in ``Retry-After`` on a refusal."""
        self.status_url = status_url
        """Linked from every refusal's body (``status_url``), when set."""
        # The engine's deadline is on the engine's clock, so that is the one to compare it with.
        self._clock: Clock = clock if clock is not None else engine.clock
        # Bound once, so the check is one slot read and one call; for the real clock, binding
        # time.monotonic itself also skips SystemClock's Python frame (benchmarks/README.md).
        self._monotonic: Callable[[], float] = (
            time.monotonic if isinstance(self._clock, SystemClock) else self._clock.monotonic
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._admitted = 0
        self._completed = 0
        self._drained = 0
        self._refused = 0
        # The halt epoch counts halts begun; a ticket whose epoch differs at release lived through one.
        self._epoch = 0
        self._halted = False
        self._halted_since: datetime | None = None
        self._refusal: Refusal | None = None
        forking.in_child(self._after_fork)
        # Subscribe before reading the state, so no change between the two is missed.
        self._unsubscribe: Callable[[], None] | None = engine.subscribe(self._on_state)
        state = engine.state
        with self._lock:
            # Starting halted is not a halt that begins (no epoch): nothing can be in flight yet.
            if not self._halted and self._monotonic() >= engine.deadline:
                self._halted = True
                # A remembered or confirmed `false` knows when it was confirmed; a cold start does not.
                off = not state.active and state.cause is Cause.OFF
                self._halted_since = state.confirmed_at if off else None
                self._refusal = self._refusal_for(state)

    def __repr__(self) -> str:
        return f"Guard({self._engine!r}, retry_after={self.retry_after})"

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, no requests in flight, halted like the child's engine."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = self._admitted = self._completed = self._drained = self._refused = 0
        self._epoch = 0
        self._halted = True
        self._halted_since = None
        self._refusal = self._refusal_for(self._engine.state)

    # ------------------------------------------------------------------ the hot path

    @property
    def active(self) -> bool:
        """Whether a new request may start now: one monotonic read and one float compare."""
        # Two steps on purpose: CPython 3.11 cannot specialise `self._monotonic()` as a method
        # call on a slot, but it can the plain slot read; this saves ~10 % (benchmarks/README.md).
        monotonic = self._monotonic
        return monotonic() < self._engine.deadline

    # ------------------------------------------------------------------ admission

    def admit(self) -> Ticket:
        """Admit one request, or refuse it.

        Returns:
            A ticket to release when the request has finished (it is a context manager).

        Raises:
            Suspended: The system is halted; the request was counted as refused.
        """
        with self._lock:
            # The check and the epoch are read under the lock the halt listener takes, so a request
            # admitted just before a halt always carries the epoch before it (and counts as drained).
            if self._monotonic() < self._engine.deadline:
                if self._halted:
                    self._resume_locked()
                self._in_flight += 1
                self._admitted += 1
                return Ticket(self, self._epoch)
            if not self._halted:
                self._halt_locked(None)
            self._refused += 1
            refusal = self._refusal
        assert refusal is not None  # noqa: S101 -- set by every transition into halted
        raise Suspended(refusal)

    def check(self) -> None:
        """Refuse if halted, without admitting anything.

        For work that is not counted in flight: a websocket handshake, or each
        step of a long session that should stop between steps once halted.

        Raises:
            Suspended: The system is halted; counted as a refused request.
        """
        if self._monotonic() < self._engine.deadline:
            return
        with self._lock:
            self._sync_locked()
            if not self._halted:
                return  # resumed in between
            self._refused += 1
            refusal = self._refusal
        assert refusal is not None  # noqa: S101 -- set by every transition into halted
        raise Suspended(refusal)

    def refusal(self) -> Refusal | None:
        """The current refusal, or ``None`` while active (does not count a refused request)."""
        with self._lock:
            self._sync_locked()
            return self._refusal if self._halted else None

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            # Ticket and Guard are one unit: the guard owns the ticket's fields.
            if ticket._released:
                return
            ticket._released = True
            self._sync_locked()
            self._in_flight -= 1
            self._completed += 1
            if ticket._epoch != self._epoch:
                self._drained += 1
            if self._in_flight == 0:
                self._idle.notify_all()

    # ------------------------------------------------------------------ reading

    def stats(self) -> GuardStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            self._sync_locked()
            return GuardStats(
                in_flight=self._in_flight,
                admitted=self._admitted,
                completed=self._completed,
                drained=self._drained,
                refused=self._refused,
                halted_since=self._halted_since if self._halted else None,
            )

    def drain(self, timeout: float) -> DrainResult:
        """Wait until no request is in flight, at most ``timeout`` seconds.

        New requests are still admitted while the flag is active, so call this
        after a halt (or once the server stopped accepting) to wait for the
        requests that were already running.

        Args:
            timeout: The most seconds to wait (0 just reports).

        Returns:
            How many requests completed meanwhile and how many remain.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._idle:
            before = self._completed
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return DrainResult(completed=self._completed - before, remaining=self._in_flight)

    def close(self) -> None:
        """Stop listening to the engine (tickets still in flight can be released)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    # ------------------------------------------------------------------ transitions

    def _on_state(self, state: FlagState) -> None:
        """Engine listener: called once per change of decision, from the engine's threads."""
        with self._lock:
            if state.active:
                if self._halted:
                    self._resume_locked()
            elif self._halted:
                # Still halted, for another reason (stale -> off, say): keep the start, update the why.
                self._refusal = self._refusal_for(state)
            else:
                self._halt_locked(state)

    def _sync_locked(self) -> None:
        """Catch up with the deadline when the engine has not announced a change (yet).

        An active decision whose deadline passed refuses at once, but the engine
        announces it only when its timer recomputes; a fresh confirmation right
        after such a lapse restores the same decision and is not announced at all.
        """
        active = self._monotonic() < self._engine.deadline
        if active and self._halted:
            self._resume_locked()
        elif not active and not self._halted:
            self._halt_locked(None)

    def _halt_locked(self, state: FlagState | None) -> None:
        self._halted = True
        self._epoch += 1
        self._halted_since = self._clock.now()
        self._refusal = self._refusal_for(state)
        # Once per halt, never per request; the reason is the engine's own sentence (no secrets).
        logger.warning(
            "guard: refusing new requests (%s); %d in flight will complete",
            self._refusal.reason,
            self._in_flight,
        )

    def _resume_locked(self) -> None:
        self._halted = False
        self._halted_since = None
        self._refusal = None
        logger.info(
            "guard: admitting requests again; so far %d drained, %d refused",
            self._drained,
            self._refused,
        )

    def _refusal_for(self, state: FlagState | None) -> Refusal:
        if state is None or state.active:
            # The deadline moved before the engine announced why: a source's early halt says
            # why; otherwise the confirmation aged out.
            cause = self._engine.ahead_cause or Cause.STALE
        else:
            cause = state.cause
        # Clients see the cause only; the detail may name hosts, paths or vendor errors.
        reason = public_reason(cause)
        return Refusal(
            reason=reason,
            since=self._halted_since,
            retry_after=self.retry_after,
            status_url=self.status_url,
        )
