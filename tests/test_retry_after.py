"""parse_retry_after: the one reading of ``Retry-After`` the adapters' retries share."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest

from breakglass.retry import parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("1.5", 1.5), ("0", 0.0), ("-4", 0.0), (" 7 ", 7.0)],
)
def test_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo 2026 25:61:00 GMT"])
def test_no_wait_it_can_read(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_an_http_date_is_the_time_until_it() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    wait = parse_retry_after(email.utils.format_datetime(when, usegmt=True))
    assert wait is not None
    assert 25 <= wait <= 30


def test_a_date_without_zone_is_utc_and_a_past_date_is_no_wait() -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=60)
    naive = email.utils.format_datetime(ahead.replace(tzinfo=None))  # "-0000": no zone
    wait = parse_retry_after(naive)
    assert wait is not None
    assert 55 <= wait <= 60
    past = datetime.now(UTC) - timedelta(hours=1)
    assert parse_retry_after(email.utils.format_datetime(past, usegmt=True)) == 0.0
