"""What the propagation benchmarks share: when an engine flipped, and how the times are summed up."""

from __future__ import annotations

import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breakglass.engine import StateEngine
    from breakglass.state import FlagState


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(values: list[float], timeouts: int, *, digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"n": 0, "timeouts": timeouts}
    return {
        "n": len(values),
        "timeouts": timeouts,
        "min": round(min(values), digits),
        "p50": round(statistics.median(values), digits),
        "p95": round(percentile(values, 0.95), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits),
    }


class Watch:
    """Records when an engine's decision flips, from the engine's own notification."""

    def __init__(self, engine: StateEngine) -> None:
        self._cond = threading.Condition()
        self._last: tuple[bool, float] | None = None
        engine.subscribe(self._on_change)

    def _on_change(self, state: FlagState) -> None:
        now = time.monotonic()  # the notification's moment, not the lock's
        with self._cond:
            self._last = (state.active, now)
            self._cond.notify_all()

    def wait(self, *, active: bool, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._last is None or self._last[0] is not active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._last[1]
