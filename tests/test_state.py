"""The fail-closed decision rules, on the pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from breakglass.observation import NoValue, Observation
from breakglass.state import (
    HALTED_DEADLINE,
    Cause,
    Remembered,
    decide,
    remembered_deadline,
)

NOW = 1000.0
WALL = datetime(2026, 1, 1, tzinfo=UTC)
STALENESS = 30.0
BOOT = "boot-1"


def seen(
    value: object, age: float = 0.0, source: str = "a", error: str | None = None
) -> Observation:
    return Observation(source, value, NOW - age, WALL - timedelta(seconds=age), error)


def test_fresh_true_is_active_until_it_ages_out() -> None:
    """Active only on a fresh confirmed true; the deadline is confirmation + max_staleness."""
    state = decide([seen(True, age=10)], NOW, STALENESS)
    assert state.active
    assert state.cause is Cause.ACTIVE
    assert state.deadline == NOW - 10 + STALENESS


def test_fresh_false_halts() -> None:
    """A fresh false halts with cause off."""
    state = decide([seen(False)], NOW, STALENESS)
    assert not state.active
    assert state.cause is Cause.OFF
    assert state.deadline == HALTED_DEADLINE


def test_stop_wins_over_any_number_of_trues() -> None:
    """One fresh false beats fresh trues from other sources."""
    state = decide(
        [seen(True, source="a"), seen(False, source="b"), seen(True, source="c")], NOW, STALENESS
    )
    assert (state.active, state.cause, state.source) == (False, Cause.OFF, "b")


def test_one_unsure_source_halts_however_many_say_true() -> None:
    """Every configured mechanism must say true: a stale one could be hiding a pressed stop."""
    state = decide([seen(False, age=31, source="a"), seen(True, source="b")], NOW, STALENESS)
    assert (state.active, state.cause, state.source) == (False, Cause.STALE, "a")
    state = decide([Observation.unread("a"), seen(True, source="b")], NOW, STALENESS)
    assert (state.active, state.cause, state.source) == (False, Cause.UNCONFIRMED, "a")
    state = decide(
        [seen(True, source="a").unreadable("403"), seen(True, source="b")], NOW, STALENESS
    )
    assert (state.active, state.cause) == (False, Cause.ERROR)


def test_earliest_deadline_among_fresh_trues() -> None:
    """With several fresh trues, the flag stays active only until the first one ages out."""
    state = decide([seen(True, age=20, source="a"), seen(True, age=5, source="b")], NOW, STALENESS)
    assert state.active
    assert state.source == "a"
    assert state.deadline == NOW - 20 + STALENESS


@pytest.mark.parametrize(
    ("observation", "cause"),
    [
        (Observation.unread("a"), Cause.UNCONFIRMED),
        (Observation("a", error="connection refused"), Cause.UNCONFIRMED),
        (seen(True, age=STALENESS + 0.001), Cause.STALE),
        (seen(True, age=-1), Cause.STALE),
        (seen(NoValue.FLAG_MISSING), Cause.FLAG_MISSING),
        (seen(True).unreadable("file is not a database"), Cause.ERROR),
        (seen("false"), Cause.WRONG_TYPE),
        (seen("true"), Cause.WRONG_TYPE),
        (seen(0), Cause.WRONG_TYPE),
        (seen(1), Cause.WRONG_TYPE),
        (seen(None), Cause.WRONG_TYPE),
        (seen({}), Cause.WRONG_TYPE),
        (seen([True]), Cause.WRONG_TYPE),
    ],
    ids=[
        "unread",
        "error-before-confirmation",
        "stale",
        "confirmed-in-future",
        "flag-missing",
        "unreadable",
        "str-false",
        "str-true",
        "zero",
        "one",
        "null",
        "object",
        "list",
    ],
)
def test_every_unsure_state_is_halted_with_its_cause(
    observation: Observation, cause: Cause
) -> None:
    """Every way to be unsure reads as halted, with the cause named."""
    state = decide([observation], NOW, STALENESS)
    assert state.active is False
    assert state.cause is cause
    assert state.deadline == HALTED_DEADLINE
    assert state.detail


def test_failed_contact_keeps_a_fresh_value_until_it_ages() -> None:
    """A failed poll does not halt at once; the value ages and then halts as stale."""
    obs = seen(True, age=5).failed("HTTP 503")
    assert decide([obs], NOW, STALENESS).active
    later = decide([obs], NOW + STALENESS, STALENESS)
    assert later.cause is Cause.STALE
    assert "HTTP 503" in (later.detail or "")


def test_most_telling_cause_is_reported() -> None:
    """Among unsure sources, flag_missing beats stale beats unconfirmed."""
    state = decide(
        [
            Observation.unread("a"),
            seen(True, age=99, source="b"),
            seen(NoValue.FLAG_MISSING, source="c"),
        ],
        NOW,
        STALENESS,
    )
    assert (state.cause, state.source) == (Cause.FLAG_MISSING, "c")


def test_no_sources_is_halted() -> None:
    """Nothing configured is nothing confirmed."""
    assert decide([], NOW, STALENESS).active is False


def test_remembered_false_halts_until_a_fresh_true() -> None:
    """A halt from before a restart holds until a source confirms true."""
    remembered = Remembered(active=False, confirmed_at=WALL, source="local")
    state = decide([Observation.unread("local")], NOW, STALENESS, remembered)
    assert (state.active, state.cause) == (False, Cause.OFF)
    assert decide([seen(True, source="local")], NOW, STALENESS, remembered).active


def _remembered_true(
    age: float, mono_age: float | None = None, boot: str | None = BOOT
) -> Remembered:
    mono_age = age if mono_age is None else mono_age
    return Remembered(
        active=True,
        confirmed_at=WALL - timedelta(seconds=age),
        source="local",
        confirmed_mono=NOW - mono_age,
        boot_id=boot,
    )


def test_remembered_true_is_served_only_until_its_deadline() -> None:
    """A remembered true is active until its age reaches max_staleness."""
    remembered = _remembered_true(10)
    deadline = remembered_deadline(remembered, NOW, WALL, STALENESS, BOOT)
    assert deadline == pytest.approx(NOW + 20)
    unread = [Observation.unread("local")]
    assert decide(unread, NOW, STALENESS, remembered, deadline).active
    assert not decide(unread, deadline, STALENESS, remembered, deadline).active


@pytest.mark.parametrize("age", [STALENESS + 1, -5.0], ids=["too-old", "from-the-future"])
def test_remembered_true_outside_its_window_is_not_served(age: float) -> None:
    """A remembered true too old, or dated in the future (clock moved back), is not served."""
    remembered = _remembered_true(age)
    assert remembered_deadline(remembered, NOW, WALL, STALENESS, BOOT) == HALTED_DEADLINE


@pytest.mark.parametrize(
    ("wall_age", "mono_age", "boot", "now_boot"),
    [
        (5.0, STALENESS + 60, BOOT, BOOT),  # wall clock stepped back: looks 5 s old, is not
        (STALENESS + 60, 5.0, BOOT, BOOT),  # host slept: the monotonic clock stood still
        (5.0, -5.0, BOOT, BOOT),  # monotonic time in the future: not from this boot's clock
        (5.0, 5.0, "other-boot", BOOT),  # confirmed before a reboot: its age cannot be told
        (5.0, 5.0, None, BOOT),  # a row from before ages were kept
        (5.0, 5.0, BOOT, None),  # this host cannot tell its boot
    ],
    ids=["wall-stepped-back", "slept", "mono-future", "rebooted", "old-row", "no-boot-id"],
)
def test_remembered_true_whose_age_cannot_be_verified_is_not_served(
    wall_age: float, mono_age: float, boot: str | None, now_boot: str | None
) -> None:
    """Both clocks must agree the confirmation is young, within one boot; otherwise halted."""
    remembered = _remembered_true(wall_age, mono_age, boot)
    assert remembered_deadline(remembered, NOW, WALL, STALENESS, now_boot) == HALTED_DEADLINE


@pytest.mark.parametrize("problem", [NoValue.FLAG_MISSING, NoValue.UNREADABLE, "a string"])
def test_a_confirmed_problem_outranks_a_remembered_true(problem: object) -> None:
    """Flag missing, unreadable or wrong type, confirmed live, halt even with a fresh remembered true."""
    remembered = _remembered_true(1)
    deadline = remembered_deadline(remembered, NOW, WALL, STALENESS, BOOT)
    obs = (
        Observation("local").unreadable("HTTP 403")
        if problem is NoValue.UNREADABLE
        else seen(problem, source="local")
    )
    state = decide([obs], NOW, STALENESS, remembered, deadline)
    assert state.active is False
    assert state.cause in {Cause.FLAG_MISSING, Cause.ERROR, Cause.WRONG_TYPE}
    # A vendor merely away is no such confirmation: the remembered true still stands.
    away = Observation("local").failed("connection refused")
    assert decide([away], NOW, STALENESS, remembered, deadline).active
