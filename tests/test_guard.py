"""The request guard: the lock-free check, in-flight counting, drain, refusals."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import pytest

from breakglass.engine import StateEngine
from breakglass.guard import DrainResult, Guard, GuardStats, Suspended
from breakglass.persistence import StateStore
from breakglass.state import FlagState
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

STALENESS = 30.0


@pytest.fixture
def make_guard(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[Guard, StateEngine, ScriptedSource]]]:
    engines: list[StateEngine] = []

    def make(
        *, retry_after: int = 30, store: StateStore | None = None
    ) -> tuple[Guard, StateEngine, ScriptedSource]:
        source = ScriptedSource("local", clock)
        engine = StateEngine(
            "system-active", [source], max_staleness=STALENESS, store=store, clock=clock
        )
        # No deadline timer: only what a test does recomputes the decision.
        monkeypatch.setattr(engine, "_run_timer", lambda: None)
        engine.start()
        engines.append(engine)
        return Guard(engine, retry_after=retry_after), engine, source

    yield make
    for engine in engines:
        engine.close()


def test_active_until_deadline_then_refused_without_any_recompute(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """The guard refuses once the deadline passes, before the engine recomputes or announces anything."""
    guard, engine, source = make_guard()
    source.confirm(True)
    announced: list[FlagState] = []
    engine.subscribe(announced.append)
    assert guard.active
    with guard.admit():
        pass
    clock.advance(STALENESS - 0.001)
    assert guard.active
    clock.advance(0.002)
    assert guard.active is False
    with pytest.raises(Suspended) as refused:
        guard.admit()
    assert refused.value.refusal.reason.startswith("stale: ")
    assert refused.value.refusal.since == clock.now()
    assert announced == []  # the engine has not recomputed: the deadline alone refused
    assert guard.stats() == GuardStats(
        in_flight=0, admitted=1, completed=1, drained=0, refused=1, halted_since=clock.now()
    )


def test_active_uses_the_engines_manual_clock(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """Without a clock argument the guard reads the engine's clock, not the system's."""
    guard, _, source = make_guard()
    source.confirm(True)
    clock.advance(STALENESS + 1)  # real time has not moved; only the manual clock knows
    assert guard.active is False


def test_active_never_takes_the_guards_lock(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """The per-request check works while another thread holds the counting lock."""
    guard, _, source = make_guard()
    source.confirm(True)
    with guard._lock:
        assert guard.active is True


def test_cold_start_refuses_with_unknown_since(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """Before any confirmation every request is refused, and the start of the halt is unknown."""
    guard, _, _ = make_guard(retry_after=7)
    with pytest.raises(Suspended) as refused:
        guard.admit()
    refusal = refused.value.refusal
    assert refusal.reason == "unconfirmed: no value confirmed since start"
    assert refusal.since is None
    assert refusal.retry_after == 7
    assert guard.stats().halted_since is None
    assert guard.stats().refused == 1


def test_remembered_halt_reports_when_it_was_confirmed(
    clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A halt persisted before a restart is refused with the time it was confirmed."""
    source = ScriptedSource("local", clock)
    first = StateEngine(
        "system-active",
        [source],
        max_staleness=STALENESS,
        store=StateStore(tmp_path / "state.db", "local", "system-active"),
        clock=clock,
    )
    first.start()
    source.confirm(False)
    halted_at = clock.now()
    first.close()
    clock.advance(3600)
    engine = StateEngine(
        "system-active",
        [ScriptedSource("local", clock)],
        max_staleness=STALENESS,
        store=StateStore(tmp_path / "state.db", "local", "system-active"),
        clock=clock,
    )
    monkeypatch.setattr(engine, "_run_timer", lambda: None)
    engine.start()
    try:
        guard = Guard(engine)
        refusal = guard.refusal()
        assert refusal is not None
        assert refusal.reason.startswith("off: ")
        assert refusal.since == halted_at
    finally:
        engine.close()


def test_halt_refuses_new_requests_and_drains_those_in_flight(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """Requests admitted before a halt complete and count as drained; new ones are refused."""
    guard, _, source = make_guard()
    source.confirm(True)
    tickets = [guard.admit() for _ in range(3)]
    clock.advance(1)
    source.confirm(False)
    halted_at = clock.now()
    with pytest.raises(Suspended):
        guard.admit()
    with pytest.raises(Suspended) as refused:
        guard.admit()
    assert refused.value.refusal.reason == "off: the flag is off"
    assert refused.value.refusal.since == halted_at
    assert guard.stats().in_flight == 3
    for ticket in tickets:
        ticket.release()
    assert guard.stats() == GuardStats(
        in_flight=0, admitted=3, completed=3, drained=3, refused=2, halted_since=halted_at
    )


def test_requests_admitted_after_a_resume_are_not_drained(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """Only requests that lived through a halt count as drained; the resume clears halted_since."""
    guard, _, source = make_guard()
    source.confirm(True)
    before = guard.admit()
    source.confirm(False)
    source.confirm(True)
    after = guard.admit()
    assert guard.stats().halted_since is None
    before.release()
    after.release()
    stats = guard.stats()
    assert (stats.admitted, stats.completed, stats.drained) == (2, 2, 1)


def test_a_lapse_the_engine_has_not_announced_still_counts_as_a_halt(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """A request completing after its deadline passed is drained, even with no recompute."""
    guard, _, source = make_guard()
    source.confirm(True)
    ticket = guard.admit()
    clock.advance(STALENESS + 1)
    ticket.release()
    assert guard.stats().drained == 1


def test_a_fresh_confirmation_after_an_unannounced_lapse_resumes(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """The engine does not announce active -> active, so the guard resumes from the deadline."""
    guard, _, source = make_guard()
    source.confirm(True)
    clock.advance(STALENESS + 1)
    with pytest.raises(Suspended):
        guard.admit()
    source.confirm(True)  # same decision as before the lapse: no listener call
    with guard.admit():
        pass
    assert guard.stats().halted_since is None


def test_cause_changes_during_a_halt_keep_its_start(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]], clock: ManualClock
) -> None:
    """A halt that turns from off to flag missing keeps its start and updates the reason."""
    guard, _, source = make_guard()
    source.confirm(True)
    source.confirm(False)
    halted_at = clock.now()
    clock.advance(STALENESS + 5)
    source.missing()
    refusal = guard.refusal()
    assert refusal is not None
    assert refusal.reason.startswith("flag_missing: ")
    assert refusal.since == halted_at


def test_release_counts_once(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """Releasing a ticket twice (close and exhaustion, say) completes one request."""
    guard, _, source = make_guard()
    source.confirm(True)
    ticket = guard.admit()
    ticket.release()
    ticket.release()
    assert ticket.released
    stats = guard.stats()
    assert (stats.in_flight, stats.completed) == (0, 1)


def test_ticket_is_released_when_the_work_raises(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """The context manager releases the ticket on an exception too."""
    guard, _, source = make_guard()
    source.confirm(True)
    with pytest.raises(RuntimeError), guard.admit():
        raise RuntimeError("inference failed")
    assert guard.stats().in_flight == 0


def test_check_refuses_without_admitting(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """check() counts a refusal while halted and nothing at all while active."""
    guard, _, source = make_guard()
    source.confirm(True)
    guard.check()
    source.confirm(False)
    with pytest.raises(Suspended):
        guard.check()
    stats = guard.stats()
    assert (stats.admitted, stats.in_flight, stats.refused) == (0, 0, 1)


def test_drain_waits_until_nothing_is_in_flight(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """drain() returns as soon as the last request completes."""
    guard, _, source = make_guard()
    source.confirm(True)
    tickets = [guard.admit() for _ in range(2)]
    source.confirm(False)

    def finish() -> None:
        for ticket in tickets:
            time.sleep(0.02)
            ticket.release()

    worker = threading.Thread(target=finish)
    worker.start()
    started = time.monotonic()
    result = guard.drain(timeout=5.0)
    worker.join(timeout=5.0)
    assert result == DrainResult(completed=2, remaining=0)
    assert result.drained
    assert time.monotonic() - started < 4.0


def test_drain_gives_up_at_its_timeout(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """drain() is bounded: it reports what is still in flight when the timeout passes."""
    guard, _, source = make_guard()
    source.confirm(True)
    stuck = guard.admit()
    done = guard.admit()
    threading.Timer(0.01, done.release).start()
    started = time.monotonic()
    # A second for the timer's thread to release one: on a loaded machine it can start late.
    result = guard.drain(timeout=1.0)
    elapsed = time.monotonic() - started
    assert result == DrainResult(completed=1, remaining=1)
    assert not result.drained
    assert 0.95 <= elapsed < 5.0
    stuck.release()
    assert guard.drain(timeout=0) == DrainResult(completed=0, remaining=0)


def test_counting_is_thread_safe(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """Many threads admitting and releasing at once lose no count."""
    guard, _, source = make_guard()
    source.confirm(True)
    threads, per_thread = 8, 2000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait(timeout=5.0)
        for _ in range(per_thread):
            with guard.admit():
                pass

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30.0)
    stats = guard.stats()
    assert (stats.admitted, stats.completed, stats.in_flight) == (16000, 16000, 0)


def test_logs_once_per_change_never_per_request(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A halt with many refused requests logs one line, and the resume one more."""
    guard, _, source = make_guard()
    source.confirm(True)
    with caplog.at_level(logging.INFO, logger="breakglass.guard"):
        source.confirm(False)
        for _ in range(100):
            with pytest.raises(Suspended):
                guard.admit()
        source.confirm(True)
        for _ in range(100):
            with guard.admit():
                pass
    lines = [r.getMessage() for r in caplog.records if r.name == "breakglass.guard"]
    assert len(lines) == 2
    assert "refusing new requests (off: the flag is off)" in lines[0]
    assert "admitting requests again" in lines[1]


def test_close_stops_listening(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """After close() the engine's changes no longer reach the guard's counters."""
    guard, _, source = make_guard()
    source.confirm(True)
    ticket = guard.admit()
    guard.close()
    guard.close()
    source.confirm(False)
    source.confirm(True)
    ticket.release()
    assert guard.stats().drained == 0


def test_negative_retry_after_is_rejected(
    make_guard: Callable[..., tuple[Guard, StateEngine, ScriptedSource]],
) -> None:
    """Retry-After cannot be negative."""
    with pytest.raises(ValueError, match="retry_after"):
        make_guard(retry_after=-1)
