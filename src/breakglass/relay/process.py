"""Running ``breakglass relay`` as a child process (the probe's ``--via relay``, and tests).

:class:`RelayProcess` starts the relay command with the environment given,
waits for its JSON "serving" line (``--json``: it names the OFREP address it
bound) and stops it on every way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Self

from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from types import TracebackType


class RelayStartError(BreakglassError):
    """The relay did not start; the message carries its stderr."""


class RelayProcess:
    """``python -m breakglass relay`` with ``env`` added to this process's environment.

    Args:
        env: ``BREAKGLASS_*`` variables for the relay (provider, state dir, relay path...);
            ``None`` removes a variable this process has.
        log_path: Where the relay's stderr goes.
        timeout: Seconds to wait for the "serving" line.
    """

    def __init__(
        self, env: Mapping[str, str | None], log_path: Path, *, timeout: float = 30.0
    ) -> None:
        merged: dict[str, str | None] = {**os.environ, **env}
        self._env = {name: value for name, value in merged.items() if value is not None}
        self._log_path = log_path
        self._timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.ofrep_url: str | None = None
        self.line = ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The relay's process id."""
        assert self.process is not None  # noqa: S101 -- started
        return self.process.pid

    def start(self) -> None:
        """Start it (again, after a kill) and wait for its "serving" line."""
        self._release()
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "breakglass", "relay", "--json"],
                stdout=subprocess.PIPE,
                stderr=log,
                env=self._env,
            )
        assert self.process.stdout is not None  # noqa: S101 -- stdout=PIPE
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                if sel.select(0.1):
                    self.line = self.process.stdout.readline().decode(errors="replace").strip()
                    break
                if self.process.poll() is not None:
                    break
        serving = _serving(self.line)
        if serving is None:
            self.stop()
            tail = self._log_path.read_text(errors="replace").strip()[-800:]
            raise RelayStartError(f"breakglass relay did not start: {self.line!r} {tail}")
        self.ofrep_url = serving.get("ofrep")

    def kill(self) -> None:
        """SIGKILL: no goodbye written, the channel file left as it was."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._release()

    def stop(self) -> None:
        """SIGTERM (the relay writes "closed"), then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def _release(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()


def _serving(line: str) -> dict[str, Any] | None:
    """The relay's "serving" line, or ``None`` for anything else (its JSON error, nothing)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("event") == "serving" else None
