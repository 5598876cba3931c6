"""Summary statistics of latencies where some rounds timed out.

A timed-out round is not a missing sample: its latency is known to exceed the
timeout. It is counted in ``timed_out`` and ranks above every observed value,
so it can become a percentile (reported as ``None``, "beyond the timeout")
but is never dropped to make the figures look better.

Percentiles use the nearest-rank method: the ``p``-th percentile of ``N``
rounds is the value of rank ``ceil(p / 100 * N)`` in ascending order. It is
always a value that was actually measured, and it never understates the tail:
with fewer than 100 rounds the p99 is the maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

PERCENTILES = (50, 95, 99)


def nearest_rank(ordered: list[float], percent: float) -> float:
    """The ``percent``-th percentile of ``ordered`` (ascending, non-empty) by nearest rank.

    Args:
        ordered: The values in ascending order; ``math.inf`` stands for a timeout.
        percent: The percentile, in (0, 100].

    Returns:
        The value of rank ``ceil(percent / 100 * len(ordered))``.

    Raises:
        ValueError: ``ordered`` is empty or ``percent`` is out of range.
    """
    if not ordered:
        raise ValueError("no values to take a percentile of")
    if not 0 < percent <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percent}")
    # round() first, so 95 / 100 * 20 = 19.000000000000004 is rank 19, not 20.
    rank = max(1, math.ceil(round(percent / 100 * len(ordered), 9)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of one latency series, in milliseconds.

    Attributes:
        rounds: Rounds in the series, observed or not.
        n: Rounds observed within the timeout.
        timed_out: Rounds not observed within the timeout.
        min: The smallest observed value (``None`` when nothing was observed).
        p50: The median by nearest rank; ``None`` when it falls on a timeout.
        p95: The 95th percentile; ``None`` when it falls on a timeout.
        p99: The 99th percentile; ``None`` when it falls on a timeout.
        max: The largest value; ``None`` when any round timed out.
    """

    rounds: int
    n: int
    timed_out: int
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def percentile(self, percent: int) -> float | None:
        """``p50``, ``p95`` or ``p99`` by number."""
        return {50: self.p50, 95: self.p95, 99: self.p99}[percent]

    def as_dict(self, digits: int = 3) -> dict[str, Any]:
        """JSON-ready data; ``None`` stands for "beyond the timeout" (or nothing measured)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "rounds": self.rounds,
            "n": self.n,
            "timed_out": self.timed_out,
            "min": r(self.min),
            "p50": r(self.p50),
            "p95": r(self.p95),
            "p99": r(self.p99),
            "max": r(self.max),
        }


def summarize(values: Iterable[float | None]) -> Summary:
    """Summarise one series; ``None`` is a round that timed out.

    Args:
        values: One latency per round (any unit; the probe uses milliseconds),
            ``None`` for a round that was not observed within the timeout.

    Returns:
        The summary. An empty series has ``rounds == 0`` and every figure ``None``.
    """
    series = list(values)
    seen = sorted(v for v in series if v is not None)
    timed_out = len(series) - len(seen)
    ordered: list[float] = seen + [math.inf] * timed_out
    if not ordered:
        return Summary(0, 0, 0, None, None, None, None, None)

    def finite(value: float) -> float | None:
        return None if math.isinf(value) else value

    return Summary(
        rounds=len(ordered),
        n=len(seen),
        timed_out=timed_out,
        min=seen[0] if seen else None,
        p50=finite(nearest_rank(ordered, 50)),
        p95=finite(nearest_rank(ordered, 95)),
        p99=finite(nearest_rank(ordered, 99)),
        max=finite(ordered[-1]),
    )
