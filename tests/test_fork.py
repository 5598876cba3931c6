"""os.fork() after the bridge started: the child starts halted, with its own readers and fresh locks."""

from __future__ import annotations

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
from breakglass.testing.forked import Child

if TYPE_CHECKING:
    from collections.abc import Iterator
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


def test_child_starts_halted_and_follows_halts_and_resumes(
    bridge: tuple[Bridge, LocalStore],
) -> None:
    """The child's own reader confirms; a halt and a resume reach it."""
    parent, store = bridge
    parent_loop = parent.backend.source.readers()[0]
    guard = parent.guard()

    def body(child: Child) -> dict[str, Any]:
        loops = parent.backend.source.readers()
        own = bool(loops) and loops[0] is not parent_loop and loops[0].alive
        active_in = wait_for(lambda: guard.active, BOUND)
        child.tell("active")
        child.wait_for_go()
        halted_in = wait_for(lambda: not guard.active, BOUND)
        try:
            with guard.admit():
                refused = False
        except Suspended:
            refused = True
        child.tell("halted")
        child.wait_for_go()
        resumed_in = wait_for(lambda: guard.active, BOUND)
        return {
            "own_reader": own,
            "active_in": active_in,
            "halted_in": halted_in,
            "refused": refused,
            "resumed_in": resumed_in,
        }

    child = Child(body)
    try:
        assert child.heard() == "active"
        store.write(KEY, False, actor="t", reason="halt")
        child.go()
        assert child.heard() == "halted"
        store.write(KEY, True, actor="t", reason="resume")
        child.go()
        result = child.result(30.0)
    finally:
        child.kill()
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

    def body(_child: Child) -> dict[str, Any]:
        return {
            "active": guard.active,
            "cause": parent.engine.state.cause.value,
            "rebuilt": parent.backend.source is not source,
        }

    try:
        result = Child(body).result(30.0)
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

    def body(_child: Child) -> dict[str, Any]:
        guard.active  # noqa: B018 -- the hot path must not block
        guard.stats()
        value = client.get_boolean_value(KEY, True)
        # Its own reader must answer (the flag flips, so active or off, never stuck unconfirmed).
        answered = wait_for(lambda: parent.engine.state.cause is not Cause.UNCONFIRMED, BOUND)
        return {"value": value, "answered": answered, "state": repr(parent.engine.state)}

    batch: list[Child] = []
    with _busy_parent(parent, store, guard, client):
        try:
            for _ in range(25):
                batch = [Child(body) for _ in range(8)]
                for child in batch:
                    result = child.result(30.0)
                    assert result["answered"] is not None, result
        finally:
            for child in batch:
                child.kill()
