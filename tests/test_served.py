"""served_once_shown: wait for readers' data to show a change, then say what it serves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from breakglass.seams import Served
from breakglass.served import served_once_shown

# A read of the data: a dict with the flag's ``value`` and whether it ``shows`` the change,
# or an error text when the data could not be read.
Read = dict[str, object] | str


def _fetcher(
    reads: list[Read],
) -> tuple[Callable[[], tuple[dict[str, object] | None, str]], list[int]]:
    """Returns the reads in turn (the last one from then on), and counts them."""
    calls = [0]
    source: Iterator[Read] = iter(reads)
    last: list[Read] = [reads[0]]

    def fetch() -> tuple[dict[str, object] | None, str]:
        calls[0] += 1
        last[0] = next(source, last[0])
        read = last[0]
        return (None, read) if isinstance(read, str) else (read, "")

    return fetch, calls


def _shown(data: dict[str, object]) -> str:
    return "" if data.get("shows") else f"the data still holds {data.get('value')}"


def _evaluate(data: dict[str, object]) -> Served | None:
    value = data.get("value")
    if value is None:
        return None  # nothing to evaluate: no such flag in the data
    return Served(bool(value), f"evaluated {value}")


def test_data_that_shows_the_change_is_evaluated_at_once() -> None:
    fetch, calls = _fetcher([{"value": False, "shows": True}])
    started = time.monotonic()
    served = served_once_shown(fetch, _shown, _evaluate, timeout=5)
    assert served == Served(False, "evaluated False")
    assert calls[0] == 1
    assert time.monotonic() - started < 1


def test_it_reads_again_until_the_change_shows() -> None:
    fetch, calls = _fetcher(["HTTP 503", {"value": True}, {"value": False, "shows": True}])
    served = served_once_shown(fetch, _shown, _evaluate, timeout=5)
    assert served == Served(False, "evaluated False")
    assert calls[0] == 3


def test_data_that_never_shows_the_change_is_what_readers_get_marked_late() -> None:
    fetch, calls = _fetcher([{"value": True}])
    started = time.monotonic()
    served = served_once_shown(fetch, _shown, _evaluate, timeout=0.5)
    assert served == Served(True, "evaluated True (after 0.5 s the data still holds True)")
    assert calls[0] >= 2
    assert time.monotonic() - started < 2


def test_no_data_at_all_is_unknown_never_served() -> None:
    fetch, _ = _fetcher(["connection refused"])
    served = served_once_shown(fetch, _shown, _evaluate, timeout=0.3)
    assert served == Served(None, "not confirmed: after 0.3 s connection refused")


def test_a_failed_last_read_keeps_the_data_read_before_with_the_failure() -> None:
    fetch, _ = _fetcher([{"value": True}, "HTTP 500"])
    served = served_once_shown(fetch, _shown, _evaluate, timeout=0.3)
    assert served == Served(True, "evaluated True (after 0.3 s HTTP 500)")


def test_the_newest_data_counts_even_when_it_holds_nothing_to_evaluate() -> None:
    # Older data had the flag; the newest has none: readers get no value from it.
    fetch, _ = _fetcher([{"value": True}, {"value": None}])
    served = served_once_shown(fetch, _shown, _evaluate, timeout=0.3)
    assert served == Served(None, "not confirmed: after 0.3 s the data still holds None")


def test_the_pause_between_reads_is_the_given_sleep() -> None:
    pauses: list[float] = []
    fetch, calls = _fetcher(["HTTP 503", {"value": True, "shows": True}])
    served = served_once_shown(fetch, _shown, _evaluate, timeout=5, sleep=pauses.append)
    assert served.value is True
    assert pauses == [0.2]
    assert calls[0] == 2
