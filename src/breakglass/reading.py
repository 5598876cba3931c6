"""The supervised reading loop: the one thread shape every source reads the flag on.

Each adapter gives the loop a ``step`` (one read of the vendor, returning the
observation to report) and how to turn an unexpected exception into an
observation (:meth:`breakglass.observation.Observation.unreadable`: halted at
once, cause ``error``). The loop then guarantees what no adapter has to get
right on its own:

* **It never dies.** Whatever ``step`` raises (a ``RecursionError`` from a
  deeply nested JSON value, an SDK's ``AttributeError`` on an unexpected
  payload shape, a ``MemoryError``) is reported as an observation error and the
  loop goes on, backing off (:class:`breakglass.retry.RetryPolicy`) while the
  failures repeat. Only interpreter exit (``SystemExit``, ``KeyboardInterrupt``)
  ends it.
* **It can be watched.** Every finished step is a heartbeat; :meth:`ReadingLoop.problem`
  says when the thread has ended or a step has run far longer than it may.
  :class:`breakglass.engine.StateEngine` checks every source's loops and halts
  the flag with cause ``reader_stopped`` when one is in trouble.
* **It keeps a fixed rate:** a slow read delays the next one, never makes reads
  burst to catch up, and a server's "slow down" (``not_before``) is obeyed.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING

from breakglass.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.observation import Observation

logger = logging.getLogger("breakglass")

_EXIT = (SystemExit, KeyboardInterrupt)
"""What ends a reading loop: the interpreter is going away, nothing else."""

_MAX_BACKOFF = 5.0
"""Seconds: the longest wait between two crashing reads."""


_SLACK = 5.0
"""Seconds of scheduling slack before a slow step counts as a stopped reader (busy hosts)."""


def _never() -> float:
    return 0.0


def stall_allowance(interval: float, request_timeout: float) -> float:
    """How long one step may take before its reader counts as stopped.

    One interval, one request at its connect and read timeouts, and slack for a
    busy host: a vendor that is merely slow ages the value (``stale``) first.
    """
    return interval + 2 * request_timeout + _SLACK


def describe_crash(exc: BaseException, where: str) -> str:
    """A secret-free line for an unexpected exception: its type, never its message.

    An exception's message may quote a payload or a header; its type is enough to
    find the bug, and the traceback goes to the debug log.
    """
    return f"unexpected {type(exc).__name__} while reading {where}; the reader carries on"


class ReadingLoop:
    """Runs ``step`` every ``interval`` seconds on a daemon thread and reports what it returns.

    Args:
        name: The thread's name (and the reader's, in messages).
        step: One read. Returns the observation to report, or ``None`` when it
            reported on its own (or has nothing new to say).
        interval: Seconds between the starts of two reads.
        crashed: Turns the description of an unexpected exception into the
            observation to report (normally ``current.unreadable(description)``),
            or reports it itself and returns ``None``.
        stall_after: Seconds one step may take before the reader counts as
            stopped (the request timeouts inside ``step`` plus a margin).
        not_before: The monotonic time before which the next read must not
            start (a server's rate-limit pause), read after every step.
        stop: The event that ends the loop; the source may share it with ``step``.

    Thread-safety: :meth:`problem` may be called from any thread.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Observation | None],
        *,
        interval: float,
        crashed: Callable[[str], Observation | None],
        stall_after: float,
        not_before: Callable[[], float] = _never,
        stop: threading.Event | None = None,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._crashed = crashed
        self.stall_after = stall_after
        self._not_before = not_before
        self._stop = stop if stop is not None else threading.Event()
        self._backoff = RetryPolicy(base_delay=max(interval, 0.05), max_delay=_MAX_BACKOFF)
        self._thread: threading.Thread | None = None
        self._listener: Callable[[Observation], None] | None = None
        self.crashes = 0
        """Unexpected exceptions caught so far (for tests and diagnostics)."""
        self._beat = time.monotonic()

    def __repr__(self) -> str:
        return f"ReadingLoop({self.name!r}, interval={self._interval:g})"

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` was called (or the shared stop event set)."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """Whether the loop's thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the thread; the first read happens at once on it."""
        self._listener = listener
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the loop and wait up to ``timeout`` seconds for the thread to end."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def problem(self, now: float | None = None) -> str | None:
        """Why this reader no longer reports (``None`` while it is fine, not started or closing)."""
        thread = self._thread
        if thread is None or self._stop.is_set():
            return None
        if not thread.is_alive():
            return f"the reader thread {self.name} has ended"
        now = time.monotonic() if now is None else now
        silent = now - self._beat
        if silent > self.stall_after:
            return f"the reader {self.name} has not finished a read for {silent:.0f} s"
        return None

    def _run(self) -> None:
        next_at = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            try:
                obs = self._step()
            except _EXIT:
                raise
            except BaseException as exc:  # noqa: BLE001 -- a reader must survive anything but exit
                failures += 1
                self.crashes += 1
                obs = self._crash_observation(exc, first=failures == 1)
            else:
                failures = 0
            self._beat = time.monotonic()
            if self._stop.is_set():
                return
            if obs is not None:
                self._report(obs)
            now = time.monotonic()
            step = self._interval
            if failures:
                step = max(step, self._backoff.delay(failures))
            # Fixed rate: a slow read delays the next one, never makes reads burst.
            next_at = max(next_at + step, self._not_before(), now)
            self._stop.wait(next_at - now)

    def _crash_observation(self, exc: BaseException, *, first: bool) -> Observation | None:
        description = describe_crash(exc, self.name)
        # The frames, never the message: a message may quote a payload or a credential.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        if first:
            logger.warning("%s\n%s", description, frames)
        else:
            logger.debug("%s (again)", description)
        try:
            return self._crashed(description)
        except Exception:
            logger.exception("%s: could not report an unexpected exception", self.name)
            return None

    def _report(self, obs: Observation) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener(obs)
        except Exception:
            logger.exception("%s: listener failed", self.name)
