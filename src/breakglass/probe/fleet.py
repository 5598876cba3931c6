"""The reader processes of one probe run: start them together, listen to them, always end them.

Each reader is ``python -m breakglass.probe.reader`` with its stdout on a pipe
(the :mod:`breakglass.probe.wire` lines), its stderr in a log file of its own,
and its stdin on a pipe the probe never writes: closing it tells the reader to
stop, and the kernel closes it too if the probe dies, so no reader outlives
the probe. :meth:`Fleet.close` then waits, terminates and kills, each step
bounded, and reaps every process.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Self

from breakglass.errors import ProbeError
from breakglass.probe.wire import Kind, ReaderEvent, parse

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

_LINE_LIMIT = 64 * 1024
"""Bytes a reader may send without a newline before it is declared broken."""


@dataclass(slots=True)
class Reader:
    """One reader process and what the probe knows of it.

    Attributes:
        index: The reader's number, from 0.
        process: The process.
        log_path: Where its stderr goes.
        ready: Its ``ready`` event, once received.
        active: Whether its guard admits requests, as last reported.
        cause: The engine's cause behind :attr:`active`.
        exited: Its stdout reached end-of-file (it exited or closed it).
        error: The text of its ``error`` line, or of a line out of protocol.
    """

    index: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    ready: ReaderEvent | None = None
    active: bool | None = None
    cause: str = ""
    exited: bool = False
    error: str | None = None
    _buffer: bytes = field(default=b"", repr=False)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of its stderr, for an error message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def problem(self) -> str | None:
        """Why this reader can no longer report, or ``None`` while it can."""
        if self.error is not None:
            return f"reader {self.index} (pid {self.pid}) failed: {self.error}"
        if self.exited:
            code = self.process.poll()
            tail = self.log_tail()
            return f"reader {self.index} (pid {self.pid}) exited (status {code})" + (
                f": {tail}" if tail else ""
            )
        return None


class Fleet:
    """``count`` reader processes on the same settings, each in a state directory of its own.

    Args:
        count: How many readers to start.
        settings: Settings overrides given to every reader (JSON-ready, no secrets:
            readers take credentials from the environment they inherit).
        workdir: A private directory for the readers' state and logs.
        ready_timeout: Seconds a reader waits for its provider's first answer.
        lifetime: Seconds after which a reader ends by itself, whatever happens.

    Use it as a context manager, so the readers are ended on every way out.
    """

    def __init__(
        self,
        count: int,
        settings: dict[str, Any],
        workdir: Path,
        *,
        ready_timeout: float,
        lifetime: float,
    ) -> None:
        if count < 1:
            raise ValueError(f"a fleet needs at least one reader, not {count}")
        self.count = count
        self._settings = settings
        self._workdir = workdir
        self._ready_timeout = ready_timeout
        self._lifetime = lifetime
        self.readers: list[Reader] = []
        self._selector = selectors.DefaultSelector()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Start every reader at once (they import and connect in parallel)."""
        for index in range(self.count):
            settings = {**self._settings, "state_dir": str(self._workdir / f"reader-{index}")}
            log_path = self._workdir / f"reader-{index}.log"
            log = log_path.open("wb")
            try:
                process = subprocess.Popen(  # noqa: S603 -- our own interpreter and module, no shell
                    [
                        sys.executable,
                        "-m",
                        "breakglass.probe.reader",
                        "--settings",
                        json.dumps(settings),
                        "--ready-timeout",
                        str(self._ready_timeout),
                        "--lifetime",
                        str(self._lifetime),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            except OSError as exc:
                log.close()
                raise ProbeError(f"cannot start reader {index}: {exc}") from exc
            reader = Reader(index, process, log_path, log)
            self.readers.append(reader)
            assert process.stdout is not None  # noqa: S101 -- stdout=PIPE above
            os.set_blocking(process.stdout.fileno(), False)
            self._selector.register(process.stdout, selectors.EVENT_READ, reader)

    def wait_ready(self, timeout: float, check: Callable[[], None]) -> None:
        """Wait until every reader sent ``ready``, at most ``timeout`` seconds.

        Args:
            timeout: The bound on the whole wait.
            check: Called between waits; raises to abandon the wait (an interrupt).

        Raises:
            ProbeError: A reader failed, exited, or was not ready in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            check()
            self.raise_on_problem()
            waiting = [r.index for r in self.readers if r.ready is None]
            if not waiting:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                shown = ", ".join(map(str, waiting[:10])) + (" ..." if len(waiting) > 10 else "")
                raise ProbeError(
                    f"{len(waiting)} of {self.count} readers were not ready within {timeout:g} s "
                    f"(readers {shown}); raise --ready-timeout, or check the provider settings"
                )
            self.poll(min(left, 0.05))

    # ------------------------------------------------------------------ listening

    def poll(self, timeout: float) -> list[tuple[Reader, ReaderEvent]]:
        """Read what the readers sent within ``timeout`` seconds, in arrival order per reader."""
        events: list[tuple[Reader, ReaderEvent]] = []
        if not self._selector.get_map():
            time.sleep(max(0.0, timeout))
            return events
        for key, _ in self._selector.select(max(0.0, timeout)):
            reader: Reader = key.data
            stream = key.fileobj
            assert not isinstance(stream, int)  # noqa: S101 -- registered as a file object
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                reader.exited = True
                self._selector.unregister(stream)
                continue
            events.extend((reader, event) for event in self._take_lines(reader, chunk))
        return events

    def _take_lines(self, reader: Reader, chunk: bytes) -> list[ReaderEvent]:
        reader._buffer += chunk
        *lines, reader._buffer = reader._buffer.split(b"\n")
        if len(reader._buffer) > _LINE_LIMIT:
            reader.error = "sent a line longer than 64 KiB"
            reader._buffer = b""
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                event = parse(text)
            except ValueError:
                reader.error = f"printed a line out of protocol: {text[:200]!r}"
                continue
            if event.kind is Kind.ERROR:
                reader.error = event.text
            else:
                if event.kind is Kind.READY:
                    reader.ready = event
                reader.active = event.active
                reader.cause = event.cause
            events.append(event)
        return events

    def raise_on_problem(self) -> None:
        """Raise if any reader failed or exited.

        Raises:
            ProbeError: Naming the first such reader and the tail of its log.
        """
        for reader in self.readers:
            problem = reader.problem()
            if problem is not None:
                raise ProbeError(problem)

    # ------------------------------------------------------------------ stop

    def close(self, grace: float = 3.0) -> None:
        """End every reader: close stdin, then terminate, then kill; each step bounded; reap all."""
        if self._closed:
            return
        self._closed = True
        for reader in self.readers:
            with contextlib.suppress(OSError):
                if reader.process.stdin is not None:
                    reader.process.stdin.close()
        self._wait_all(grace)
        for reader in self.readers:
            if reader.process.poll() is None:
                with contextlib.suppress(OSError):
                    reader.process.terminate()
        self._wait_all(2.0)
        for reader in self.readers:
            if reader.process.poll() is None:
                with contextlib.suppress(OSError):
                    reader.process.kill()
        self._wait_all(5.0)
        for reader in self.readers:
            if reader.process.stdout is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(reader.process.stdout)
                reader.process.stdout.close()
            reader.log.close()
        self._selector.close()

    def _wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for reader in self.readers:
            left = max(0.0, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                reader.process.wait(timeout=left)
