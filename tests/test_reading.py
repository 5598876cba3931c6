"""The supervised reading loop: a reader never dies, and one that stops reporting halts the flag."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest

from breakglass.bridge import Bridge
from breakglass.clock import SYSTEM_CLOCK
from breakglass.engine import StateEngine
from breakglass.local.store import LocalStore
from breakglass.observation import Observation
from breakglass.reading import ReadingLoop
from breakglass.settings import LocalSettings, Settings
from breakglass.state import Cause
from breakglass.testing.conformance import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

KEY = "system-active"


def _local_bridge(tmp_path: Path) -> tuple[Bridge, Path]:
    path = tmp_path / "local.db"
    LocalStore(path).write(KEY, True, actor="t", reason="on")
    settings = Settings(
        provider="local",
        state_dir=tmp_path / "state",
        max_staleness=30.0,
        local=LocalSettings(path=path, poll_interval=0.02),
    )
    return Bridge.from_settings(settings).start(), path


def _set_raw(path: Path, text: str) -> None:
    # What a hostile or buggy writer could leave in the file: any JSON text at all.
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("UPDATE flags SET value = ? WHERE key = ?", (text, KEY))


def test_deeply_nested_value_halts_at_once_and_the_reader_carries_on(tmp_path: Path) -> None:
    """A value that makes the JSON decoder raise RecursionError halts at once; repaired, it resumes."""
    bridge, path = _local_bridge(tmp_path)
    try:
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
        _set_raw(path, "[" * 100_000 + "]" * 100_000)
        # Well inside max_staleness (30 s): the halt comes from the error, not from ageing.
        assert wait_for(lambda: bridge.engine.state.cause is Cause.ERROR, 5.0) is not None
        assert bridge.engine.active is False
        assert "RecursionError" in (bridge.engine.state.detail or "")
        (loop,) = bridge.backend.source.readers()
        assert loop.alive
        _set_raw(path, "true")
        # The loop backs off while the reads keep failing (at most 5 s between two reads).
        assert wait_for(lambda: bridge.engine.active, 10.0) is not None, bridge.engine.state
    finally:
        bridge.close()


def test_a_non_boolean_value_halts_at_once(tmp_path: Path) -> None:
    """An object where a boolean belongs halts at once (wrong_type), it does not age out."""
    bridge, path = _local_bridge(tmp_path)
    try:
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
        _set_raw(path, '{"enabled": true}')
        assert wait_for(lambda: bridge.engine.state.cause is Cause.WRONG_TYPE, 5.0) is not None
    finally:
        bridge.close()


class _LoopSource:
    """A source on a real reading loop whose step a test controls."""

    name = "looped"

    def __init__(self, stall_after: float = 30.0) -> None:
        self.current_obs = Observation.unread(self.name)
        self.gate = threading.Event()
        self.gate.set()
        self.exit = False
        self.loop = ReadingLoop(
            "test-loop",
            self.step,
            interval=0.02,
            crashed=self.crashed,
            stall_after=stall_after,
        )

    def step(self) -> Observation:
        if self.exit:
            raise SystemExit
        self.gate.wait()
        self.current_obs = Observation(self.name, True, *_now())
        return self.current_obs

    def crashed(self, problem: str) -> Observation:
        self.current_obs = self.current_obs.unreadable(problem)
        return self.current_obs

    def start(self, listener: Callable[[Observation], None]) -> None:
        self.loop.start(listener)

    def current(self) -> Observation:
        return self.current_obs

    def close(self) -> None:
        self.gate.set()
        self.loop.close()

    def readers(self) -> Sequence[ReadingLoop]:
        return (self.loop,)


def _now() -> tuple[float, datetime]:
    return SYSTEM_CLOCK.monotonic(), SYSTEM_CLOCK.now()


# The loop lets SystemExit end its thread, as it should; pytest reports that as unhandled.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reader_thread_that_ends_halts_with_reader_stopped() -> None:
    """Only interpreter exit ends a loop; the engine notices the dead thread and halts."""
    source = _LoopSource()
    engine = StateEngine(KEY, [source], max_staleness=30.0)
    engine.start()
    try:
        assert wait_for(lambda: engine.active, 5.0) is not None
        source.exit = True
        assert wait_for(lambda: engine.state.cause is Cause.READER_STOPPED, 5.0) is not None
        assert engine.active is False
        assert not source.loop.alive
        assert "has ended" in (engine.state.detail or "")
    finally:
        engine.close()


def test_a_hung_reader_halts_with_reader_stopped_and_recovers() -> None:
    """A step that hangs past stall_after halts the flag; when it finishes, reading resumes."""
    source = _LoopSource(stall_after=0.5)
    engine = StateEngine(KEY, [source], max_staleness=30.0)
    engine.start()
    try:
        assert wait_for(lambda: engine.active, 5.0) is not None
        source.gate.clear()
        assert wait_for(lambda: engine.state.cause is Cause.READER_STOPPED, 5.0) is not None
        source.gate.set()
        assert wait_for(lambda: engine.active, 5.0) is not None
    finally:
        engine.close()


def test_a_crashing_step_is_reported_and_the_loop_goes_on() -> None:
    """Every exception but interpreter exit becomes an observation error; the thread stays up."""
    reported: list[Observation] = []
    calls = 0

    def step() -> Observation:
        nonlocal calls
        calls += 1
        raise MemoryError if calls % 2 else AttributeError("'NoneType' object has no attribute 'x'")

    loop = ReadingLoop(
        "crashing",
        step,
        interval=0.01,
        crashed=lambda problem: Observation("x").unreadable(problem),
        stall_after=30.0,
    )
    loop.start(reported.append)
    try:
        assert wait_for(lambda: loop.crashes >= 3, 10.0) is not None
        assert loop.alive
        assert loop.problem() is None
        assert {o.error for o in reported} >= {
            "unexpected MemoryError while reading crashing; the reader carries on",
            "unexpected AttributeError while reading crashing; the reader carries on",
        }
    finally:
        loop.close()
