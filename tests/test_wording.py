"""Counts read as words: singular for exactly one, plural for none and for many."""

from __future__ import annotations

import pytest

from breakglass.wording import agrees, counted


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 readers"), (1, "1 reader"), (2, "2 readers"), (-1, "-1 readers")],
)
def test_counted_takes_the_singular_for_exactly_one(count: int, expected: str) -> None:
    assert counted(count, "reader") == expected


def test_counted_uses_an_irregular_plural_when_given() -> None:
    assert counted(1, "strategy", "strategies") == "1 strategy"
    assert counted(3, "strategy", "strategies") == "3 strategies"
    assert counted(0, "reader process", "reader processes") == "0 reader processes"


def test_agrees_picks_the_verb_for_the_count() -> None:
    assert [agrees(n, "does", "do") for n in (0, 1, 2)] == ["do", "does", "do"]
