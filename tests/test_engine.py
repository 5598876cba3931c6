"""The engine: observations in, one decision out; persistence across restarts."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

import pytest

from breakglass.engine import StateEngine
from breakglass.persistence import StateStore
from breakglass.state import Cause, FlagState
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from breakglass.observation import Observation

STALENESS = 30.0


@pytest.fixture
def make_engine(
    clock: ManualClock, tmp_path: Path
) -> Iterator[Callable[..., tuple[StateEngine, ScriptedSource]]]:
    engines: list[StateEngine] = []

    def make(
        store_path: Path | None = None, *, store: bool = True
    ) -> tuple[StateEngine, ScriptedSource]:
        source = ScriptedSource("local", clock)
        path = store_path or tmp_path / "state.db"
        engine = StateEngine(
            "system-active",
            [source],
            max_staleness=STALENESS,
            store=StateStore(path, "local", "system-active") if store else None,
            clock=clock,
        )
        engine.start()
        engines.append(engine)
        return engine, source

    yield make
    for engine in engines:
        engine.close()


def test_cold_start_is_halted_unconfirmed(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """Before any confirmation the flag reads halted, cause unconfirmed."""
    engine, _ = make_engine()
    assert engine.active is False
    assert engine.state.cause is Cause.UNCONFIRMED


def test_active_until_deadline_without_any_recompute(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """The hot-path check turns false at the deadline even if nothing recomputes."""
    engine, source = make_engine()
    source.confirm(True)
    assert engine.active
    clock.advance(STALENESS - 0.001)
    assert engine.active
    clock.advance(0.002)
    assert engine.active is False
    assert engine.state.cause is Cause.STALE


def test_confirmations_extend_the_deadline(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """Each confirmation moves the deadline; a failed contact does not."""
    engine, source = make_engine()
    source.confirm(True)
    clock.advance(20)
    source.confirm(True)
    clock.advance(20)
    assert engine.active
    source.fail("HTTP 502")
    clock.advance(11)
    assert engine.active is False
    assert "HTTP 502" in (engine.state.detail or "")


def test_wall_clock_jump_does_not_unfreeze_a_stale_value(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """Freshness is monotonic: moving the wall clock back does not make a stale true fresh."""
    engine, source = make_engine()
    source.confirm(True)
    clock.advance(STALENESS + 1)
    clock.jump_wall(-3600)
    assert engine.active is False
    assert engine.state.cause is Cause.STALE
    clock.jump_wall(7200)
    assert engine.state.cause is Cause.STALE


def test_listeners_hear_each_change_of_decision_once(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """Repeated confirmations of the same value notify nobody; flips notify once."""
    engine, source = make_engine()
    changes: list[FlagState] = []
    engine.subscribe(changes.append)
    for value in (True, True, True, False, False, True):
        source.confirm(value)
    assert [(s.active, s.cause) for s in changes] == [
        (True, Cause.ACTIVE),
        (False, Cause.OFF),
        (True, Cause.ACTIVE),
    ]


def test_the_moment_a_decision_took_effect_is_kept_for_listeners(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """A listener times a flip by when the guard's deadline moved, not by when it is called."""
    engine, source = make_engine()
    heard: list[tuple[FlagState, float]] = []

    def slow_listener(state: FlagState) -> None:
        clock.advance(0.5)  # listeners before this one took their time

    engine.subscribe(slow_listener)
    engine.subscribe(lambda state: heard.append(engine.decided))
    for value in (True, False):
        before = clock.monotonic()
        source.confirm(value)
        decided, at = heard[-1]
        assert decided.active is value
        assert decided is engine.state
        assert at == before  # the moment the decision took effect, before the 0.5 s of listeners
    assert engine.decided[1] < clock.monotonic()


def test_a_failing_listener_does_not_stop_others(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """A listener's exception is logged; the next listener is still called."""
    engine, source = make_engine()
    seen: list[bool] = []

    def broken(state: FlagState) -> None:
        raise RuntimeError("listener bug")

    engine.subscribe(broken)
    engine.subscribe(lambda s: seen.append(s.active))
    source.confirm(True)
    assert seen == [True]


def test_source_that_fails_to_start_reads_halted(clock: ManualClock) -> None:
    """A source raising in start() is an unsure source, not a crash."""

    class Exploding(ScriptedSource):
        def start(self, listener: Callable[[Observation], None]) -> None:
            raise OSError("no route")

    engine = StateEngine(
        "system-active", [Exploding("x", clock)], max_staleness=STALENESS, clock=clock
    )
    engine.start()
    try:
        assert engine.state.cause is Cause.ERROR
        assert engine.active is False
    finally:
        engine.close()


def test_restart_while_halted_stays_halted(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """A process restarted while halted stays halted until a fresh true."""
    engine, source = make_engine()
    source.confirm(True)
    source.confirm(False)
    engine.close()
    restarted, source2 = make_engine()
    assert restarted.active is False
    assert restarted.state.cause is Cause.OFF
    for _ in range(3):
        source2.fail("vendor away")
        assert restarted.active is False
        assert restarted.state.cause is Cause.OFF, (
            "the remembered halt must outlive failed contacts"
        )
    source2.confirm(True)
    assert restarted.active


def test_remembered_true_is_served_only_while_young(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """A persisted true serves a restart only until it is max_staleness old."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    clock.advance(10)
    restarted, source2 = make_engine()
    assert restarted.active
    assert "remembered" in (restarted.state.detail or "")
    clock.advance(5)
    source2.fail("vendor still away")
    assert restarted.active, "a failed contact must not drop a young remembered true"
    assert restarted.state.remembered
    clock.advance(STALENESS - 15 + 0.01)
    assert restarted.active is False
    assert restarted.state.cause is Cause.UNCONFIRMED


def test_remembered_true_older_than_staleness_is_not_served(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """A restart after max_staleness starts halted."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    clock.advance(STALENESS + 1)
    restarted, _ = make_engine()
    assert restarted.active is False


def test_a_fresh_false_replaces_a_remembered_true(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """The vendor's answer wins over what was remembered."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    restarted, source2 = make_engine()
    assert restarted.state.active
    source2.confirm(False)
    assert restarted.active is False
    assert restarted.state.cause is Cause.OFF


def test_corrupt_state_store_halts_with_one_log_line(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A corrupt store means halted, even on a fresh true, logged once, no crash loop."""
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    caplog.set_level(logging.ERROR, logger="breakglass")
    engine, source = make_engine(bad)
    for _ in range(20):
        source.confirm(True)
    assert engine.active is False
    assert engine.state.cause is Cause.STORE_UNAVAILABLE
    assert str(bad) in (engine.state.detail or "")
    store_lines = [r for r in caplog.records if "state store unusable" in r.getMessage()]
    assert len(store_lines) == 1


def test_unwritable_state_store_halts(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], tmp_path: Path
) -> None:
    """A store that cannot be created (its directory is a file) means halted."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the state directory should be")
    engine, source = make_engine(blocker / "state.db")
    source.confirm(True)
    assert engine.active is False
    assert engine.state.cause is Cause.STORE_UNAVAILABLE


def test_store_recovers_when_fixed(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
    tmp_path: Path,
    clock: ManualClock,
) -> None:
    """Once the store works again, a fresh true is served again."""
    path = tmp_path / "later.db"
    path.write_bytes(b"garbage" * 200)
    engine, source = make_engine(path)
    source.confirm(True)
    assert engine.state.cause is Cause.STORE_UNAVAILABLE
    path.unlink()
    clock.advance(3)
    source.confirm(True)
    assert engine.active
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT active FROM last_known").fetchone() == (1,)


def test_close_reads_halted(make_engine: Callable[..., tuple[StateEngine, ScriptedSource]]) -> None:
    """A closed engine serves halted, cause closed, and closes its sources."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    assert engine.active is False
    assert engine.state.cause is Cause.CLOSED
    assert source.closed
    source.confirm(True)
    assert engine.active is False


def test_wait_for_confirmation_returns_first_answer(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """wait_for_confirmation returns at once when the state is already decided."""
    engine, source = make_engine(store=False)
    source.confirm(False)
    assert engine.wait_for_confirmation(5.0).cause is Cause.OFF


def test_a_halt_reaches_the_guard_before_it_is_written_down(
    clock: ManualClock, tmp_path: Path
) -> None:
    """Stopping never waits for the disk: the deadline drops before the state store is written."""
    import threading

    class SlowStore(StateStore):
        def __init__(self, *args: object) -> None:
            super().__init__(tmp_path / "slow.db", "local", "system-active")
            self.entered = threading.Event()
            self.release = threading.Event()

        def save(self, **kwargs: object) -> None:
            if kwargs.get("active") is False:
                self.entered.set()
                self.release.wait(5)
            super().save(**kwargs)  # type: ignore[arg-type]

    store = SlowStore()
    source = ScriptedSource("local", clock)
    engine = StateEngine(
        "system-active", [source], max_staleness=STALENESS, store=store, clock=clock
    )
    engine.start()
    try:
        source.confirm(True)
        assert engine.active
        writer = threading.Thread(target=source.confirm, args=(False,))
        writer.start()
        assert store.entered.wait(5)
        assert engine.active is False, "the guard kept admitting while the halt was being written"
        store.release.set()
        writer.join(5)
    finally:
        store.release.set()
        engine.close()


# ---------------------------------------------------------------------- how it fails (issue: fail closed)


@pytest.mark.parametrize("problem", ["missing", "wrong_type", "unreadable"])
def test_a_confirmed_problem_beats_a_remembered_true_and_is_remembered(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], problem: str
) -> None:
    """After a restart, a live "flag missing / wrong type / 403" halts at once and outlives the next restart."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    restarted, source2 = make_engine()
    assert restarted.active, "a young remembered true is served while the vendor is silent"
    if problem == "missing":
        source2.missing()
    elif problem == "wrong_type":
        source2.confirm("true")
    else:
        source2.unreadable("HTTP 403: the token may not read client features")
    assert restarted.active is False
    assert restarted.state.cause in {Cause.FLAG_MISSING, Cause.WRONG_TYPE, Cause.ERROR}
    source2.fail("vendor away")
    assert restarted.active is False, "the remembered true must not come back after the problem"
    restarted.close()
    third, source3 = make_engine()
    source3.fail("vendor away")
    assert third.active is False
    assert third.state.cause is Cause.OFF, "the problem halt was kept in the state store"


def test_wall_clock_stepped_back_across_a_restart_does_not_refresh_a_remembered_true(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """An old true whose wall-clock age was reset by a clock step is not served."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    clock.advance(STALENESS * 10)
    clock.jump_wall(-STALENESS * 10)  # NTP step back: the wall clock says "just now"
    restarted, _ = make_engine()
    assert restarted.active is False
    assert restarted.state.cause is Cause.UNCONFIRMED


def test_a_remembered_true_from_before_a_reboot_is_not_served(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """Across a reboot the monotonic clock restarts: the age cannot be verified, so not served."""
    engine, source = make_engine()
    source.confirm(True)
    engine.close()
    clock.boot = "after-reboot"
    restarted, _ = make_engine()
    assert restarted.active is False


def test_closing_reads_halted_at_once_even_while_sources_take_long_to_close(
    clock: ManualClock,
) -> None:
    """From the moment close() begins, state and the guard read halted (cause closed)."""
    seen: list[FlagState] = []

    class SlowToClose(ScriptedSource):
        def close(self) -> None:
            seen.append(engine.state)
            super().close()

    source = SlowToClose("local", clock)
    engine = StateEngine("system-active", [source], max_staleness=STALENESS, clock=clock)
    engine.start()
    source.confirm(True)
    assert engine.active
    engine.close()
    assert [(s.active, s.cause) for s in seen] == [(False, Cause.CLOSED)]
    clock.advance(STALENESS + 1)
    assert engine.state.cause is Cause.CLOSED


def test_a_problem_halt_decided_just_before_close_is_still_remembered(
    make_engine: Callable[..., tuple[StateEngine, ScriptedSource]],
) -> None:
    """close() right after a halt (here: from a listener, before the halt is written) loses nothing."""
    engine, source = make_engine()
    source.confirm(True)

    def close_on_halt(state: FlagState) -> None:
        if state.cause is Cause.FLAG_MISSING:
            engine.close()

    engine.subscribe(close_on_halt)
    source.missing()
    assert engine.state.cause is Cause.CLOSED
    restarted, source2 = make_engine()
    source2.fail("vendor away")
    assert restarted.active is False
    assert restarted.state.cause is Cause.OFF
