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


@pytest.fixture(scope="session")
def writer_url(postgres_url: str) -> Iterator[str]:
    """The test database as a least-privilege writer: a login role of its own, no DDL rights.

    Stores under test connect as this role; the schema is made by the owner
    (``breakglass audit migrate --writer``), as in production.
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"breakglass_writer_{secrets.token_hex(6)}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    info = {k: str(v) for k, v in conninfo_to_dict(postgres_url).items() if v is not None}
    info["user"] = role
    info.pop("password", None)
    try:
        yield make_conninfo("", **info)
    finally:
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        with _admin_connect() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def writer_role(url: str) -> str:
    """The user name in ``url``."""
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(url)["user"])


def fresh_writer_store(owner_url: str, writer: str, **options: Any) -> PostgresAuditStore:
    """An empty schema made by the owner, and a store that connects as the writer (with ``options``)."""
    reset_postgres(owner_url)
    owner = PostgresAuditStore(SecretStr(owner_url))
    try:
        owner.migrate()
        owner.grant_writer(writer_role(writer))
    finally:
        owner.close()
    return PostgresAuditStore(SecretStr(writer), **options)


@pytest.fixture
def pg_store(postgres_url: str, writer_url: str) -> Iterator[PostgresAuditStore]:
    """An empty PostgreSQL audit store, used as the least-privilege writer."""
    store = fresh_writer_store(postgres_url, writer_url)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.live)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    """An empty audit store of each kind (PostgreSQL as the least-privilege writer)."""
    if request.param == "sqlite":
        yield SqliteAuditStore(tmp_path / "audit.db")
        return
    pg = fresh_writer_store(
        request.getfixturevalue("postgres_url"), request.getfixturevalue("writer_url")
    )
    yield pg
    pg.close()
