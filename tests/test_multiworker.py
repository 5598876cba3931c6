"""The guarded sample service under real multi-process servers: every worker halts, every worker resumes.

* ``gunicorn --preload -w 4``: the bridge starts once in the master and each
  worker is *forked* from it (``breakglass.forking`` must give each one its own
  readers, or a worker keeps serving the master's ``true``).
* ``uvicorn --workers 4``: each worker process imports the service and runs its
  own bridge.

The service listens on a Unix socket in the test's directory (no port to clash
with parallel runs); every response names its worker (``x-worker-pid``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from breakglass.local.store import LocalStore

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
KEY = "system-active"
WORKERS = 4
POLL = 0.02
BOUND = 10.0
"""Seconds for a change to reach every worker: the local provider's bound is one poll (20 ms);
the rest is slack for a busy two-core host and for requests to reach every worker at all."""
CLIENTS = 16


class Service:
    """A running server and a client that spreads requests over its workers."""

    def __init__(self, sock: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.sock = sock
        self.process = process
        self.log = log
        # A new connection per request: a kept-alive one would stay with the worker that took it.
        transport = httpx.HTTPTransport(
            uds=str(sock), limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.client = httpx.Client(transport=transport, base_url="http://service", timeout=10)
        self.pool = ThreadPoolExecutor(CLIENTS)

    def burst(self) -> list[tuple[str, int]]:
        """``CLIENTS`` concurrent requests: (worker pid, status) of each answer."""

        def one(_: int) -> tuple[str, int]:
            response = self.client.get("/infer")
            return response.headers.get("x-worker-pid", "?"), response.status_code

        return list(self.pool.map(one, range(CLIENTS)))

    def until_every_worker(self, status: int, timeout: float) -> dict[str, float]:
        """Send bursts until every worker answered ``status`` (and none answers otherwise after it).

        Returns each worker's first such answer, in seconds from the call.
        """
        started = time.monotonic()
        first: dict[str, float] = {}
        while time.monotonic() - started < timeout:
            for pid, code in self.burst():
                if code == status:
                    first.setdefault(pid, time.monotonic() - started)
                else:
                    # A worker that flips back has not really changed: it must be asked again.
                    first.pop(pid, None)
            if len(first) >= WORKERS:
                return first
            time.sleep(0.01)
        pytest.fail(
            f"only {sorted(first)} answered {status} within {timeout} s; log:\n"
            + self.log.read_text(errors="replace")[-3000:]
        )

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _start(command: list[str], tmp_path: Path, sock: Path) -> Service:
    env = {
        **os.environ,
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_LOCAL__POLL_INTERVAL": str(POLL),
        "BREAKGLASS_CONFIG_FILE": str(tmp_path / "breakglass.toml"),
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    (tmp_path / "breakglass.toml").write_text("")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not _listening(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return Service(sock, process, log)


def _listening(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock))
        except OSError:
            return False
    return True


@pytest.fixture(params=["gunicorn-preload", "uvicorn-workers"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Service, LocalStore]]:
    store = LocalStore(tmp_path / "state" / "local.db")
    store.write(KEY, True, actor="test", reason="start")
    sock = tmp_path / "service.sock"
    if request.param == "gunicorn-preload":
        command = [
            str(VENV_BIN / "gunicorn"),
            "--preload",
            "--workers",
            str(WORKERS),
            "--bind",
            f"unix:{sock}",
            "--graceful-timeout",
            "2",
            "examples.wsgi_service:app",
        ]
    else:
        command = [
            str(VENV_BIN / "uvicorn"),
            "--workers",
            str(WORKERS),
            "--uds",
            str(sock),
            "--log-level",
            "warning",
            "examples.asgi_service:app",
        ]
    running = _start(command, tmp_path, sock)
    yield running, store
    running.close()


def test_a_halt_reaches_every_worker_and_a_resume_brings_every_one_back(
    service: tuple[Service, LocalStore],
) -> None:
    """Every worker serves, then refuses within the bound after a halt, then serves after a resume."""
    running, store = service
    serving = running.until_every_worker(200, 30.0)
    assert len(serving) == WORKERS, serving
    store.write(KEY, False, actor="test", reason="halt every worker")
    halted = running.until_every_worker(503, BOUND)
    store.write(KEY, True, actor="test", reason="resume every worker")
    resumed = running.until_every_worker(200, BOUND)
    print(  # the figures for docs/performance.md
        f"halt reached all {WORKERS} workers in {max(halted.values()):.3f} s, "
        f"resume in {max(resumed.values()):.3f} s"
    )
