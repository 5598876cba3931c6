"""Waiting in a long-running command's main thread until SIGTERM or Ctrl-C.

The obvious way, a handler calling ``Event.set()`` while the main thread sits in
``Event.wait()``, left ``breakglass relay`` running after about one SIGTERM in
three sent just after it had answered an OFREP connection: the signal was no
longer pending and the handler had not run. The kernel may hand a process's
signal to any of its threads, and Python runs handlers only in the main thread,
which slept on in its lock.
The handler here takes no lock, and the signal also writes a byte to a pipe
(``signal.set_wakeup_fd``, from whichever thread received it), which wakes the
main thread's ``select`` so that it runs the handler at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from types import FrameType, TracebackType
from typing import Self

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Catches SIGTERM and SIGINT from construction until :meth:`close` (main thread only).

    Use as a context manager around the command's serving; :meth:`wait` returns
    the signal that asked it to stop, :meth:`sleep` waits for one a while. Either
    signal is caught even where the process inherited it ignored.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):  # os.pipe() descriptors are not inherited
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}

    def __repr__(self) -> str:
        return f"StopSignals(received={self.received!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.received = signum  # no lock: this runs between any two bytecodes of the main thread

    def wait(self, poll: float = 0.5) -> int:
        """Block until SIGTERM or SIGINT arrived; return its number."""
        while self.received is None:
            # Woken by the pipe at once; ``poll`` only bounds a wake-up byte lost to a full pipe.
            self._pause(poll)
        return self.received

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return ``True`` at once when SIGTERM or SIGINT arrived."""
        deadline = time.monotonic() + seconds
        while self.received is None and (left := deadline - time.monotonic()) > 0:
            self._pause(left)
        return self.received is not None

    def _pause(self, timeout: float) -> None:
        select.select([self._read], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

    def close(self) -> None:
        """Put the previous handlers and wake-up descriptor back."""
        if self._read < 0:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)
        self._read = self._write = -1
