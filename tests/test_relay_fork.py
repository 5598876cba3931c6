"""os.fork() in a worker behind a relay: the child reads the relay itself and reports as itself."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.bridge import Bridge
from breakglass.local.store import LocalStore
from breakglass.reports.fleet import FleetView
from breakglass.settings import Settings
from breakglass.testing.conformance import wait_for
from breakglass.testing.relay import RelayProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KEY = "system-active"
BOUND = 10.0

pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
    ),
]


@pytest.fixture
def receiver() -> Iterator[tuple[FleetView, str]]:
    view = FleetView()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            view.receive(json.loads(body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the stdlib's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield view, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_forked_worker_reads_and_reports_on_its_own(  # noqa: PLR0915 -- one story
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: tuple[FleetView, str]
) -> None:
    view, url = receiver
    store = LocalStore(tmp_path / "local.db")
    store.write(KEY, True, actor="t", reason="on")
    channel = tmp_path / "relay.channel"
    env: dict[str, str | None] = {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_STATE_DIR": str(tmp_path / "relay-state"),
        "BREAKGLASS_LOCAL__PATH": str(store.path),
        "BREAKGLASS_RELAY__PATH": str(channel),
    }
    monkeypatch.setenv("BREAKGLASS_REPORT__URL", url)
    monkeypatch.setenv("BREAKGLASS_REPORT__INTERVAL", "0.2")
    with RelayProcess(env, tmp_path / "relay.log"):
        settings = Settings(
            provider="relay", state_dir=tmp_path / "worker", sections={"relay": {"path": channel}}
        )
        bridge = Bridge.from_settings(settings).start()
        try:
            guard = bridge.guard()
            assert wait_for(lambda: guard.active, BOUND) is not None
            assert wait_for(lambda: _reported(view, os.getpid(), active=True), BOUND) is not None
            go_halt = os.pipe()
            fork_at = [0.0]

            def child() -> dict[str, Any]:
                first = guard.active
                decided, decided_at = bridge.engine.decided
                # Active at once only through this process's own reader (a relay write that came
                # after the fork, on a loaded host), never the parent's decision carried over.
                own = decided.active and decided_at > fork_at[0]
                active_in = wait_for(lambda: guard.active, BOUND)
                os.read(go_halt[0], 1)
                halted_in = wait_for(lambda: not guard.active, BOUND)
                time.sleep(0.5)  # a report or two from the child
                return {
                    "first": first,
                    "own": own,
                    "active_in": active_in,
                    "halted_in": halted_in,
                }

            fork_at[0] = time.monotonic()
            pid, read_fd = _fork(child)
            try:
                # The child reports as itself, and its own flip to active.
                assert wait_for(lambda: _reported(view, pid, active=True), BOUND) is not None
                store.write(KEY, False, actor="t", reason="halt")
                os.write(go_halt[1], b"x")
                result = _result(pid, read_fd)
            finally:
                _reap(pid)
            assert "error" not in result, result
            assert result["first"] is False or result["own"], "a forked child starts halted"
            assert result["active_in"] is not None, "the child's own relay reader confirms"
            assert result["halted_in"] is not None, "a halt through the relay reaches the child"
        finally:
            bridge.close()


def _fork(child: Callable[[], dict[str, Any]]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- runs in the child
        code = 0
        try:
            result = child()
        except BaseException as exc:  # noqa: BLE001 -- the child must always exit
            result, code = {"error": repr(exc)}, 1
        os.write(write_fd, json.dumps(result).encode())
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _result(pid: int, read_fd: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not os.waitpid(pid, os.WNOHANG)[0]:
        assert time.monotonic() < deadline, "the forked child hung"
        time.sleep(0.05)
    with os.fdopen(read_fd) as pipe:
        result: dict[str, Any] = json.loads(pipe.read())
    return result


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _reported(view: FleetView, pid: int, *, active: bool) -> bool:
    return any(r["pid"] == pid and r["active"] is active for r in view.readers())
