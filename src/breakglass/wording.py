"""Counts in words, singular or plural as the number needs.

An operator reads these lines in an emergency: "1 reader does not read"
reads at a glance where "1 reader(s) do not read" makes them stop.
"""

from __future__ import annotations


def agrees(count: int, one: str, many: str) -> str:
    """``one`` when ``count`` is exactly 1, else ``many`` (so 0 takes the plural)."""
    return one if count == 1 else many


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` in agreement: ``counted(1, "reader")`` is ``"1 reader"``.

    Args:
        count: How many.
        noun: The singular form.
        plural: The plural form when it is not ``noun`` + "s" ("strategies").
    """
    return f"{count} {agrees(count, noun, plural if plural is not None else noun + 's')}"


__all__ = ["agrees", "counted"]
