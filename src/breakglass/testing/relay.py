"""Test helpers for the relay: its process, and waiting for a fleet of workers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from breakglass.relay.process import RelayProcess, RelayStartError

if TYPE_CHECKING:
    from breakglass.probe.fleet import Fleet

__all__ = ["RelayProcess", "RelayStartError", "wait_for"]


def wait_for(fleet: Fleet, *, active: bool, timeout: float, cause: str | None = None) -> list[int]:
    """Poll ``fleet`` until every reader reports ``active`` (and ``cause``, if given).

    Returns the indexes of the readers still not there at ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        fleet.raise_on_problem()
        behind = [
            r.index
            for r in fleet.readers
            if r.active is not active or (cause is not None and r.cause != cause)
        ]
        if not behind or time.monotonic() >= deadline:
            return behind
        fleet.poll(min(0.05, max(0.0, deadline - time.monotonic())))
