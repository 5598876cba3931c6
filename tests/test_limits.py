"""Failed-credential limits: the in-memory window, the count shared through PostgreSQL, and the
fallback when that store is gone or hangs (serve's replicas: ``tests/test_serve_replicas.py``)."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from breakglass.limits import FailureWindow, client_key
from breakglass.serve.limits import PAUSE, SharedFailures, failure_limit
from breakglass.serve.store import PostgresServeStore, SqliteServeStore
from breakglass.testing import ManualClock

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["tests.audit_fixtures"]


def test_the_window_limits_failures_and_lifts_on_the_monotonic_clock() -> None:
    clock = ManualClock()
    window = FailureWindow(3, 60, clock=clock)
    assert [window.fail("a") for _ in range(3)] == [None] * 3
    assert window.fail("a") == 60
    assert window.fail("b") is None, "another client is counted apart"
    # A wall-clock step changes nothing; only time that really passed does.
    clock.jump_wall(3600)
    assert window.fail("a") == 60
    clock.jump_wall(-7200)
    assert window.fail("a") == 60
    clock.advance(59)
    assert window.fail("a") == 1
    # Failures past the limit were not counted: the wait is not extended by the flood.
    clock.advance(1)
    assert window.fail("a") is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_subscriber_is_counted_by_its_64(address: str, key: str) -> None:
    # Taking a fresh address of one's /64 for every attempt gains nothing.
    assert client_key(address) == key


def test_a_flood_of_clients_never_grows_the_window_without_bound() -> None:
    window = FailureWindow(1, 60)
    for i in range(20_000):
        window.fail(f"10.0.{i // 256}.{i % 256}")
    assert len(window._seen) <= 10_000


@pytest.fixture
def pg(postgres_url: str) -> PostgresServeStore:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS serve_login_failures")
    return PostgresServeStore(SecretStr(postgres_url))


def test_the_shared_count_is_one_for_every_replica(
    pg: PostgresServeStore, postgres_url: str
) -> None:
    other = PostgresServeStore(SecretStr(postgres_url))  # a second replica's store
    a = SharedFailures(pg, FailureWindow(4, 60))
    b = SharedFailures(other, FailureWindow(4, 60))
    try:
        assert [x.fail("198.51.100.7") for x in (a, b, a, b)] == [None] * 4
        wait = a.fail("198.51.100.7")
        assert wait is not None
        assert 50 < wait <= 60
        assert b.fail("198.51.100.7") is not None
        assert b.fail("198.51.100.8") is None
        assert a.problem is None
        assert b.problem is None
    finally:
        a.close()
        b.close()


def test_rows_from_a_database_clock_stepped_back_do_not_block_forever(
    pg: PostgresServeStore, postgres_url: str
) -> None:
    import psycopg

    assert pg.count_failure("203.0.113.5", 2, 60) is None
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # As if the database's clock had stepped back an hour since these were counted.
        for _ in range(2):
            conn.execute(
                "INSERT INTO serve_login_failures VALUES (%s, clock_timestamp() + interval '1 hour')",
                ("203.0.113.5",),
            )
    wait = pg.count_failure("203.0.113.5", 2, 60)
    assert wait is None, "rows from the future are dropped, not waited out"
    assert pg.count_failure("203.0.113.5", 2, 60) is not None


def test_a_store_that_is_gone_leaves_the_replica_counting_alone(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = PostgresServeStore(SecretStr(f"postgresql://postgres:s3cret@127.0.0.1:{port}/x"))
    limit = SharedFailures(store, FailureWindow(2, 60))
    try:
        assert [limit.fail("c") for _ in range(2)] == [None, None]
        assert limit.fail("c") is not None
        assert limit.problem
        assert "s3cret" not in limit.problem
    finally:
        limit.close()
    # SQLite is one replica: counted in memory, no store call at all.
    assert isinstance(failure_limit(SqliteServeStore(tmp_path / "s.db"), 3, 60), FailureWindow)


def test_a_hanging_store_is_met_once_not_once_per_request() -> None:
    # A listener that never answers: the connection opens, the PostgreSQL handshake hangs.
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(100)
    port = hang.getsockname()[1]
    clock = ManualClock()
    store = PostgresServeStore(
        SecretStr(f"postgresql://postgres@127.0.0.1:{port}/x"), connect_timeout=30
    )
    limit = SharedFailures(store, FailureWindow(3, 60, clock=clock), clock=clock)
    try:
        started = time.monotonic()
        assert limit.fail("d") is None
        first = time.monotonic() - started
        started = time.monotonic()
        assert [limit.fail("d") for _ in range(2)] == [None, None]
        assert limit.fail("d") is not None, "counted in memory meanwhile"
        rest = time.monotonic() - started
        assert 0.9 < first < 3, first
        assert rest < 0.2, f"the store was asked again while paused ({rest:.2f} s)"
        assert limit.problem
        clock.advance(PAUSE + 0.1)
        started = time.monotonic()
        limit.fail("e")
        assert time.monotonic() - started > 0.9, "after the pause the store is tried again"
    finally:
        limit.close()
        hang.close()
