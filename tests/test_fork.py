"""os.fork() after the bridge started: the child starts halted, with its own readers and fresh locks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from openfeature import api

from breakglass.bridge import Bridge
from breakglass.guard import Guard, Suspended
from breakglass.local.store import LocalStore
from breakglass.settings import LocalSettings, Settings
from breakglass.state import Cause
from breakglass.testing.conformance import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KEY = "system-active"
POLL = 0.02
BOUND = 5.0
"""Seconds: generous bounds on a busy two-core host; the point is "does it", not "how fast"."""

pytestmark = pytest.mark.filterwarnings(
    # os.fork() in a process with threads is what this module is about.
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[tuple[Bridge, LocalStore]]:
    store = LocalStore(tmp_path / "local.db")
    store.write(KEY, True, actor="t", reason="on")
    settings = Settings(
        provider="local",
        state_dir=tmp_path / "state",
        max_staleness=30.0,
        local=LocalSettings(path=store.path, poll_interval=POLL),
    )
    bridge = Bridge.from_settings(settings).start()
    assert wait_for(lambda: bridge.engine.active, BOUND) is not None
    yield bridge, store
    bridge.close()


def _fork(child: Callable[[int], dict[str, Any]]) -> tuple[int, int]:
    """Fork; the child runs ``child(write_fd)``, writes its JSON result and exits without cleanup."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- runs in the child
        os.close(read_fd)
        code = 0
        try:
            result = child(write_fd)
        except BaseException as exc:  # noqa: BLE001 -- the child must always exit
            result, code = {"error": repr(exc)}, 1
        try:
            os.write(write_fd, (json.dumps(result) + "\n").encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _kill(children: list[tuple[int, int]]) -> None:
    """Reap the children a failed test left behind."""
    for pid, fd in children:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _read_result(pid: int, read_fd: int, timeout: float) -> dict[str, Any]:
    """The child's result, or a failure naming the hang (the child is killed)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        pytest.fail(f"child {pid} hung for {timeout} s (deadlock?)")
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    assert status is not None
    assert os.waitstatus_to_exitcode(status) == 0, text
    result: dict[str, Any] = json.loads(text)
    return result


def test_child_starts_halted_and_follows_halts_and_resumes(
    bridge: tuple[Bridge, LocalStore],
) -> None:
    """The child's first read is halted; its own reader confirms; a halt and a resume reach it."""
    parent, store = bridge
    parent_loop = parent.backend.source.readers()[0]
    guard = parent.guard()
    go_halt, go_resume = os.pipe(), os.pipe()

    def child(_fd: int) -> dict[str, Any]:
        first = (guard.active, parent.engine.state.cause.value)
        loops = parent.backend.source.readers()
        own = bool(loops) and loops[0] is not parent_loop and loops[0].alive
        active_in = wait_for(lambda: guard.active, BOUND)
        os.read(go_halt[0], 1)
        halted_in = wait_for(lambda: not guard.active, BOUND)
        try:
            with guard.admit():
                refused = False
        except Suspended:
            refused = True
        os.read(go_resume[0], 1)
        resumed_in = wait_for(lambda: guard.active, BOUND)
        return {
            "first": first,
            "own_reader": own,
            "active_in": active_in,
            "halted_in": halted_in,
            "refused": refused,
            "resumed_in": resumed_in,
        }

    pid, fd = _fork(child)
    time.sleep(0.3)
    store.write(KEY, False, actor="t", reason="halt")
    os.write(go_halt[1], b"x")
    time.sleep(0.3)
    store.write(KEY, True, actor="t", reason="resume")
    os.write(go_resume[1], b"x")
    result = _read_result(pid, fd, 30.0)
    first_active, first_cause = result["first"]
    # The child either still waits for its own reader or that reader confirmed already.
    assert first_active is False or first_cause == Cause.ACTIVE.value
    assert first_cause in {Cause.UNCONFIRMED.value, Cause.ACTIVE.value}
    assert result["own_reader"] is True
    assert result["active_in"] is not None
    assert result["halted_in"] is not None, "a halt must reach the forked child"
    assert result["refused"] is True
    assert result["resumed_in"] is not None, "a resume must reach the forked child"
    assert wait_for(lambda: parent.engine.active, BOUND) is not None, parent.engine.state


def test_a_child_does_not_serve_the_parents_true(bridge: tuple[Bridge, LocalStore]) -> None:
    """Until its own reader has read the flag, the child reads halted, whatever the parent had."""
    parent, store = bridge
    guard = parent.guard()
    source = parent.backend.source
    # Another process holds the store's write lock: the child's first reads cannot get through.
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")

    def child(_fd: int) -> dict[str, Any]:
        return {
            "active": guard.active,
            "cause": parent.engine.state.cause.value,
            "rebuilt": parent.backend.source is not source,
        }

    try:
        pid, fd = _fork(child)
        result = _read_result(pid, fd, 30.0)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert result == {"active": False, "cause": Cause.UNCONFIRMED.value, "rebuilt": True}
    assert parent.engine.active, "30 s of freshness: one blocked second does not halt the parent"


@contextmanager
def _busy_parent(parent: Bridge, store: LocalStore, guard: Guard, client: Any) -> Iterator[None]:
    """Keep the engine's locks, its listeners, the store and the guard busy in other threads."""
    stop = threading.Event()

    def churn() -> None:
        value = False
        while not stop.is_set():
            store.write(KEY, value, actor="t", reason="churn")
            value = not value
            time.sleep(0.02)

    def hammer() -> None:
        while not stop.is_set():
            try:
                with guard.admit():
                    pass
            except Suspended:
                pass
            client.get_boolean_value(KEY, False)

    workers = [threading.Thread(target=f, daemon=True) for f in (churn, hammer, hammer)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(5)


def test_200_forks_under_load_never_deadlock(bridge: tuple[Bridge, LocalStore]) -> None:
    """Forks taken while the parent's locks are busy: every child answers, halted or confirmed."""
    parent, store = bridge
    guard = parent.guard()
    parent.register("fork-test")
    client = api.get_client("fork-test")

    def child(_fd: int) -> dict[str, Any]:
        guard.active  # noqa: B018 -- the hot path must not block
        guard.stats()
        value = client.get_boolean_value(KEY, True)
        # Its own reader must answer (the flag flips, so active or off, never stuck unconfirmed).
        answered = wait_for(lambda: parent.engine.state.cause is not Cause.UNCONFIRMED, BOUND)
        return {"value": value, "answered": answered, "state": repr(parent.engine.state)}

    batch: list[tuple[int, int]] = []
    with _busy_parent(parent, store, guard, client):
        try:
            for _ in range(25):
                batch = [_fork(child) for _ in range(8)]
                while batch:
                    pid, fd = batch.pop(0)
                    result = _read_result(pid, fd, 30.0)
                    assert result["answered"] is not None, result
        finally:
            _kill(batch)
