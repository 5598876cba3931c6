"""Audit store fixtures (a pytest plugin: ``pytest_plugins = ["tests.audit_fixtures"]``).

PostgreSQL: ``BREAKGLASS_TEST_POSTGRES_URL`` (default the local server,
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth). Each test
session creates its own temporary database and drops it at the end. A
server that cannot be reached FAILS the tests that need it, with the reason:
they never skip.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.sqlite import SqliteAuditStore
from tests.audit_support import reset_postgres

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from breakglass.audit.store import AuditStore

ADMIN_URL = os.environ.get(
    "BREAKGLASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin_connect() -> Any:
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is needed for this test and is not reachable at {ADMIN_URL} "
            f"(set BREAKGLASS_TEST_POSTGRES_URL): {exc}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A temporary database for this test session, dropped at the end."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"breakglass_test_{secrets.token_hex(6)}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = {k: str(v) for k, v in conninfo_to_dict(ADMIN_URL).items() if v is not None}
    info["dbname"] = name
    try:
        yield make_conninfo("", **info)
    finally:
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresAuditStore]:
    """An empty PostgreSQL audit store."""
    reset_postgres(postgres_url)
    store = PostgresAuditStore(SecretStr(postgres_url))
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.live)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    """An empty audit store of each kind."""
    if request.param == "sqlite":
        yield SqliteAuditStore(tmp_path / "audit.db")
        return
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    pg = PostgresAuditStore(SecretStr(url))
    yield pg
    pg.close()
