"""A reader's reporter: tells serve what this process decides, off the request path.

The engine's listener only notes the flip time and wakes the reporter's own
thread; sending happens there, with a short timeout, so neither a request nor
a halt ever waits for serve. A report that fails is not retried: the next one
(at the next change or heartbeat) carries the newest state anyway. When the
bridge closes, one last report says so, and serve shows the reader stopped
rather than silent.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from breakglass import forking
from breakglass.reports.report import ReaderReport

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from breakglass.engine import StateEngine
    from breakglass.reports.settings import ReportSettings
    from breakglass.state import FlagState

logger = logging.getLogger("breakglass.reports")

PATH = "/v1/reports"


def default_service() -> str:
    """The program's name (``uvicorn``, ``gunicorn``, ``breakglass``...)."""
    return Path(sys.argv[0]).name or "python"


class Reporter:
    """Reports one engine's decision to serve: at once on a flip, else every ``interval``.

    Args:
        engine: The engine whose decision is reported.
        settings: Where and how often.
        role: ``relay``, ``bridge`` or ``worker``.
        provider: The provider(s) the engine reads, for people.
        source_ids: What each provider reads (:mod:`breakglass.source_id`), ``None`` when unknown.
        channel: A relay's: the source id its workers report.
    """

    def __init__(
        self,
        engine: StateEngine,
        settings: ReportSettings,
        *,
        role: str,
        provider: str,
        source_ids: Sequence[str | None] | None = None,
        channel: str | None = None,
    ) -> None:
        if settings.url is None:
            raise ValueError("a reporter needs report.url")
        self._engine = engine
        self._settings = settings
        self._url = settings.url + PATH
        self._role = role
        self._provider = provider
        self._source_ids = None if source_ids is None else tuple(source_ids)
        self._channel = channel
        self._service = settings.service or default_service()
        self._host = socket.gethostname()
        self._instance = os.urandom(8).hex()
        self._clock = engine.clock
        self._seq = 0
        self._last_active: bool | None = None
        self._flipped_at: datetime | None = None
        self._failing = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = engine.subscribe(self._on_state)
        self._started = False
        self.sent = 0
        """Reports serve accepted (for tests and diagnostics)."""
        forking.in_child(self._after_fork, restart=self._restart_after_fork)

    def __repr__(self) -> str:
        return f"Reporter({self._url!r}, role={self._role!r})"

    def start(self) -> None:
        """Start the sending thread; the first report goes at once."""
        self._started = True
        self._last_active = self._engine.state.active
        self._thread = threading.Thread(target=self._run, name="breakglass-reporter", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop, after one last report of the current (normally closed) state."""
        self._unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.timeout + 1.0)

    def report(self) -> ReaderReport:
        """The report of the current state."""
        state = self._engine.state
        self._seq += 1
        return ReaderReport(
            host=self._host,
            pid=os.getpid(),
            instance=self._instance,
            service=self._service,
            role=self._role,
            provider=self._provider,
            flag=self._engine.flag_key,
            active=state.active,
            cause=state.cause.value,
            confirmed_at=state.confirmed_at,
            flipped_at=self._flipped_at,
            sent_at=self._clock.now(),
            seq=self._seq,
            interval=self._settings.interval,
            source_ids=self._source_ids,
            channel=self._channel,
        )

    def send(self) -> bool:
        """Send one report now; whether serve accepted it (never raises)."""
        body = json.dumps(self.report().to_dict()).encode()
        request = urllib.request.Request(  # noqa: S310 -- the URL is validated as http(s)
            self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        if self._settings.token is not None:
            request.add_header("Authorization", f"Bearer {self._settings.token.get_secret_value()}")
        try:
            with urllib.request.urlopen(request, timeout=self._settings.timeout) as response:  # noqa: S310
                status: int = response.status
                ok = 200 <= status < 300
                problem = f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            ok, problem = False, f"HTTP {exc.code}"
            exc.close()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            ok, problem = False, type(exc).__name__
        if ok:
            self.sent += 1
            if self._failing:
                logger.info("reports reach %s again", self._settings.url)
            self._failing = False
        elif not self._failing:
            # Once per outage; the reason is a status or an exception type, never a token.
            logger.warning(
                "cannot report to %s (%s); will keep trying", self._settings.url, problem
            )
            self._failing = True
        return ok

    def _after_fork(self) -> None:
        # A forked child is another reader: its own instance, its own count, no flip seen yet.
        self._instance = os.urandom(8).hex()
        self._seq = 0
        self._flipped_at = None
        self._last_active = False  # the child starts halted (breakglass.forking)
        self._wake = threading.Event()
        self._thread = None
        self.sent = 0

    def _restart_after_fork(self) -> None:
        if self._started and not self._stop.is_set():
            self._stop = threading.Event()
            self.start()

    def _on_state(self, state: FlagState) -> None:
        # The engine's thread, maybe during a halt: note and wake, nothing more.
        if state.active != self._last_active:
            self._last_active = state.active
            self._flipped_at = self._clock.now()
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._send_safely()
            self._wake.wait(self._settings.interval)
        self._send_safely()  # the last word: normally "closed", so serve shows the reader stopped

    def _send_safely(self) -> None:
        try:
            self.send()
        except Exception:
            # A reporter that dies would read as a silent reader: say why here and carry on.
            logger.exception("reporter: a report could not be built or sent")
