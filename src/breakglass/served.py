"""Waiting for readers' data to show a change, then saying what it serves.

A vendor answers a change at once, but readers get the change only once the
data they receive (a polling endpoint, a client API) carries it. An admin
adapter reads that data until it shows the change, and evaluates it as the
readers' SDK does. When the time is up first, the data last read is still
what readers are served: it is evaluated all the same, with the delay and its
reason appended. Without any data the value is unknown (``None``): a check
that could not read never reads as served.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

from breakglass.seams import Served

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

RETRY_PAUSE = 0.2
"""Seconds between two reads of the data."""


def served_once_shown(
    fetch: Callable[[], tuple[T | None, str]],
    shown: Callable[[T], str],
    evaluate: Callable[[T], Served | None],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Served:
    """What readers are served, once their data shows the change (or ``timeout`` passed).

    Args:
        fetch: Reads the data readers receive: it, or ``None`` and why not.
        shown: Why the data does not show the change yet; ``""`` once it does.
        evaluate: The data as the readers' SDK evaluates it; ``None`` when it
            holds nothing to evaluate (then the value is unknown).
        timeout: Seconds to wait for the change to show.
        sleep: Waits between reads.
    """
    deadline = time.monotonic() + timeout
    latest: T | None = None
    while True:
        data, problem = fetch()
        if data is not None:
            latest = data
            problem = shown(data)
            if not problem:
                break
        if time.monotonic() + RETRY_PAUSE > deadline:
            break
        sleep(RETRY_PAUSE)
    served = None if latest is None else evaluate(latest)
    if not problem and served is not None:
        return served
    late = f"after {timeout:g} s {problem}"
    if served is None:
        return Served(None, f"not confirmed: {late}")
    return Served(served.value, f"{served.detail} ({late})")
