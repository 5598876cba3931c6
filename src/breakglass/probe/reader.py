"""One probe reader: a process that reads the flag exactly as an inference service would.

Started by the probe as ``python -m breakglass.probe.reader``, one process per
reader. It builds a fresh provider client from the settings it is given, puts
the bridge's engine and guard behind it, and prints one line (see
:mod:`breakglass.probe.wire`) each time its guard starts refusing or admitting,
stamped with the shared monotonic clock.

It lives until its stdin closes (the probe closed it, or the probe died) or its
``--lifetime`` runs out, whichever comes first, so it can never outlive the
probe for long. Ctrl-C in a terminal reaches the whole process group: a reader
ignores SIGINT and lets the probe, which restores the flag first, end it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from breakglass.bridge import Bridge
from breakglass.errors import BreakglassError
from breakglass.probe.wire import Kind, error_line, state_line
from breakglass.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from breakglass.state import FlagState


class _Out:
    """Whole lines to stdout from any thread; a closed pipe means the probe is gone."""

    def __init__(self, stream: TextIO, gone: threading.Event) -> None:
        self._stream = stream
        self._gone = gone
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            try:
                self._stream.write(text + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._gone.set()


def _watch_stdin(gone: threading.Event) -> None:
    # The probe never writes to a reader's stdin; EOF is its way (or its death's) of saying stop.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    gone.set()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m breakglass.probe.reader")
    parser.add_argument("--settings", required=True, help="JSON object of settings overrides")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one reader until stdin closes or the lifetime ends; return the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Errors only: the engine and guard log every halt as a warning *before* listeners run,
    # and a reader's log line is not worth time on the path being measured.
    logging.basicConfig(
        level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = _parse_args(argv)
    gone = threading.Event()
    out = _Out(sys.stdout, gone)
    try:
        settings = load_settings(**json.loads(args.settings))
        bridge = Bridge.from_settings(settings)
    except (BreakglassError, ValueError) as exc:
        out.line(error_line(f"{type(exc).__name__}: {exc}"))
        return 1
    guard = bridge.guard()

    def on_state(state: FlagState) -> None:
        # The moment the guard's deadline moved, not this listener's (other listeners ran first).
        decided, at = bridge.engine.decided
        if decided is not state:
            at = time.monotonic()  # a newer decision already took effect: no earlier than now
        out.line(state_line(Kind.FLIP, active=guard.active, at=at, cause=state.cause.value))

    unsubscribe = bridge.engine.subscribe(on_state)
    threading.Thread(target=_watch_stdin, args=(gone,), name="probe-stdin", daemon=True).start()
    try:
        bridge.start()
        state = bridge.engine.wait_for_confirmation(args.ready_timeout)
        out.line(
            state_line(
                Kind.READY, active=guard.active, at=time.monotonic(), cause=state.cause.value
            )
        )
        gone.wait(args.lifetime)
    except Exception as exc:  # noqa: BLE001 -- reported to the probe, which decides what it means
        out.line(error_line(f"{type(exc).__name__}: {exc}"))
        return 1
    finally:
        unsubscribe()  # the closing bridge's own "closed" decision is not an observation
        guard.close()
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
