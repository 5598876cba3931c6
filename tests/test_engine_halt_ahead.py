"""A source's early halt: the guard refuses at once, the source's own report decides."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass.engine import StateEngine
from breakglass.guard import Guard, Suspended
from breakglass.provider import SystemActiveProvider
from breakglass.state import Cause, public_reason
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "system-active"


class AheadSource(ScriptedSource):
    """A scripted source that can also halt ahead of its next observation."""

    def __init__(self, name: str, clock: ManualClock) -> None:
        super().__init__(name, clock)
        self.halt: Callable[[Cause], None] | None = None

    def on_halt_ahead(self, halt: Callable[[Cause], None]) -> None:
        self.halt = halt

    def ahead(self, cause: Cause = Cause.OFF) -> None:
        assert self.halt is not None, "the engine did not hand this source its early halt"
        self.halt(cause)


@pytest.fixture
def two(clock: ManualClock) -> Iterator[tuple[StateEngine, AheadSource, ScriptedSource]]:
    fast = AheadSource("relay", clock)
    other = ScriptedSource("other", clock)
    engine = StateEngine(KEY, [fast, other], max_staleness=30.0, clock=clock)
    engine.start()
    fast.confirm(True)
    other.confirm(True)
    assert engine.active
    yield engine, fast, other
    engine.close()


def test_an_early_halt_refuses_at_once_and_its_moment_is_the_decisions(
    two: tuple[StateEngine, AheadSource, ScriptedSource], clock: ManualClock
) -> None:
    engine, fast, _ = two
    guard = Guard(engine)
    try:
        clock.advance(0.5)
        early = clock.monotonic()
        fast.ahead(Cause.OFF)
        assert not engine.active
        assert not guard.active
        with pytest.raises(Suspended) as refused:
            guard.admit()
        # The public reason is the coming halt's, not "stale".
        assert refused.value.refusal.reason == public_reason(Cause.OFF)
        assert engine.ahead_cause is Cause.OFF
        # Every other way of reading the flag refuses as well: the state, OpenFeature.
        assert not engine.state.active
        assert engine.state.cause is Cause.OFF
        details = SystemActiveProvider(engine).resolve_boolean_details(KEY, True)
        assert details.value is False
        clock.advance(0.25)  # the source's checked read takes a while
        fast.confirm(False)
        assert engine.state.cause is Cause.OFF
        assert engine.decided == (engine.state, early)
        assert engine.ahead_cause is None
    finally:
        guard.close()


def test_a_report_that_still_says_active_ends_the_early_halt(
    two: tuple[StateEngine, AheadSource, ScriptedSource], clock: ManualClock
) -> None:
    engine, fast, _ = two
    fast.ahead(Cause.OFF)
    assert not engine.active
    clock.advance(0.1)
    fast.confirm(True)  # the checked read contradicts the byte: a corrupt or torn header
    assert engine.active
    assert engine.state.active
    assert engine.decided[0].active
    assert engine.ahead_cause is None


def test_only_the_source_that_halted_ahead_ends_it(
    two: tuple[StateEngine, AheadSource, ScriptedSource], clock: ManualClock
) -> None:
    engine, fast, other = two
    fast.ahead(Cause.OFF)
    clock.advance(0.1)
    other.confirm(True)  # another source's fresh true must not let the guard admit again
    assert not engine.active
    assert not engine.state.active
    fast.confirm(False)
    assert not engine.active
    assert engine.state.cause is Cause.OFF


def test_an_early_halt_on_a_halted_or_closed_engine_changes_nothing(
    two: tuple[StateEngine, AheadSource, ScriptedSource], clock: ManualClock
) -> None:
    engine, fast, _ = two
    fast.confirm(False)
    halted = engine.decided
    clock.advance(1.0)
    fast.ahead(Cause.ERROR)
    assert engine.ahead_cause is None
    assert engine.decided == halted
    engine.close()
    fast.ahead(Cause.OFF)
    assert engine.ahead_cause is None
    assert not engine.active
