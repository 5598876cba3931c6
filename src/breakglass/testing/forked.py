"""Running a test's code in a forked child: what it returns comes back as JSON, a hang is a failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


class Child:
    """A forked child running ``body(child)``; the parent reads its result or kills it.

    ``body`` may call :meth:`tell` to send the parent a line (for a handshake)
    and :meth:`wait_for_go` to block until the parent calls :meth:`go`.
    """

    def __init__(self, body: Callable[[Child], dict[str, Any]]) -> None:
        self._up_read, self._up_write = os.pipe()
        self._down_read, self._down_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover -- runs in the child
            self._run(body)
        os.close(self._up_write)
        os.close(self._down_read)
        self._up = os.fdopen(self._up_read)
        self._done = False

    def _run(self, body: Callable[[Child], dict[str, Any]]) -> None:  # pragma: no cover
        os.close(self._up_read)
        os.close(self._down_write)
        code = 0
        try:
            result = body(self)
        except BaseException as exc:  # noqa: BLE001 -- the child must always exit
            result, code = {"error": repr(exc)}, 1
        try:
            self.tell(json.dumps(result))
        finally:
            os._exit(code)

    # ------------------------------------------------------------------ in the child

    def tell(self, line: str) -> None:
        """Send the parent one line."""
        os.write(self._up_write, (line + "\n").encode())

    def wait_for_go(self) -> None:
        """Block until the parent calls :meth:`go`."""
        os.read(self._down_read, 1)

    # ------------------------------------------------------------------ in the parent

    def go(self) -> None:
        """Let the child past :meth:`wait_for_go`."""
        os.write(self._down_write, b"x")

    def heard(self) -> str:
        """The child's next line (blocking)."""
        return self._up.readline().strip()

    def result(self, timeout: float) -> dict[str, Any]:
        """The child's JSON result; fails the test (killing the child) when it hangs or fails."""
        deadline = time.monotonic() + timeout
        status = 0
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"child {self.pid} hung for {timeout} s (deadlock?)")
            time.sleep(0.01)
        self._done = True
        text = self._up.read()
        self._close()
        if os.waitstatus_to_exitcode(status) != 0:
            pytest.fail(f"child {self.pid} failed: {text}")
        lines = text.strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        """End the child now (a failed test leaves none behind)."""
        if not self._done:
            self._done = True
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._close()

    def _close(self) -> None:
        self._up.close()
        with contextlib.suppress(OSError):
            os.close(self._down_write)
