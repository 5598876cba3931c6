"""Reading a large PostgreSQL audit store in batches: each a statement well within the timeout.

An export or a check of the store reads every record. In one statement, a store
of millions outlasts the connection's statement timeout and is cancelled; in
keyset batches it does not, and what is appended meanwhile is left for the next
export, never half included.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit import postgres
from breakglass.audit.export import export_csv, export_jsonl
from breakglass.audit.integrity import check_store
from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.audit.verify import verify_lines
from breakglass.errors import AuditChainError, AuditStoreError
from tests.audit_support import T0, make_record, rows

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from breakglass.audit.export import Manifest
    from breakglass.audit.store import AuditStore

pytest_plugins = ["tests.audit_fixtures"]

pytestmark = pytest.mark.live


def _writer_store(owner_url: str, writer_url: str, **options: Any) -> PostgresAuditStore:
    # Imported here: the fixtures module is a pytest plugin, loaded (and rewritten) by pytest.
    from tests.audit_fixtures import fresh_writer_store

    return fresh_writer_store(owner_url, writer_url, **options)


def _fill(store: AuditStore, first: int, last: int, **kw: Any) -> None:
    """Store records ``first`` to ``last``, ten thousand a transaction."""
    for start in range(first, last + 1, 10_000):
        store.save(
            rows(*(make_record(n, **kw) for n in range(start, min(start + 10_000, last + 1))))
        )


def _export(store: AuditStore, query: AuditQuery, **kw: Any) -> tuple[Manifest, bytes]:
    out = io.BytesIO()
    manifest = export_jsonl(store, query, out, **kw)
    return manifest, out.getvalue()


def _verified(export: bytes, records: int) -> None:
    result = verify_lines(export.splitlines(keepends=True))
    assert result.ok, result.summary()
    assert result.records == records


def _slow_reader(count: int) -> None:
    """Read as a busy host does: a statement sending more than the socket buffers hold lasts
    as long as its reader takes."""
    time.sleep(0.03)


def test_a_store_too_big_for_one_statement_is_exported_and_checked_in_batches(
    postgres_url: str, writer_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = _writer_store(postgres_url, writer_url)
    try:
        # 4 kB a record: 80 MB, far more than socket buffers hold (compressed in the table).
        _fill(filler, 1, 20_000, raw={"note": "x" * 4000})
    finally:
        filler.close()
    # A timeout far below the time of reading 20,000 records, far above that of 500.
    monkeypatch.setattr(postgres, "_STATEMENT_TIMEOUT_S", 0.2)

    whole = PostgresAuditStore(SecretStr(writer_url), batch=100_000)
    try:
        with pytest.raises(AuditStoreError, match="statement timeout"):
            _export(whole, AuditQuery(), on_record=_slow_reader, record=False)
    finally:
        whole.close()

    store = PostgresAuditStore(SecretStr(writer_url), batch=500)
    try:
        manifest, export = _export(store, AuditQuery(), on_record=_slow_reader)
        assert manifest.count == 20_000
        assert (manifest.data["first_seq"], manifest.data["last_seq"]) == (1, 20_000)
        _verified(export, 20_000)
        filtered, export = _export(
            store, AuditQuery(providers=("local",)), on_record=_slow_reader, record=False
        )
        assert filtered.count == 20_000
        _verified(export, 20_000)
        assert check_store(store).records == 20_000
    finally:
        store.close()


@pytest.fixture
def batched(postgres_url: str, writer_url: str) -> Iterator[PostgresAuditStore]:
    """A PostgreSQL store of 3,000 records, read 500 at a time."""
    store = _writer_store(postgres_url, writer_url, batch=500)
    _fill(store, 1, 3000)
    yield store
    store.close()


def _late_records(store: AuditStore, first: int) -> None:
    """What another host appends: some records sorting among the stored ones by time, some after."""
    store.save(
        rows(
            *(
                make_record(n, at=T0 + timedelta(seconds=n - first))
                for n in range(first, first + 20)
            ),
            *(make_record(n) for n in range(first + 20, first + 40)),
        )
    )


def test_records_appended_during_an_export_are_left_for_the_next(
    batched: PostgresAuditStore, writer_url: str
) -> None:
    other = PostgresAuditStore(SecretStr(writer_url))
    appended: list[int] = []

    def another_host_appends(count: int) -> None:
        if count in (1000, 2000):  # mid-export: 40 records each time
            _late_records(other, 10_000 + 100 * len(appended))
            appended.append(count)

    try:
        manifest, export = _export(batched, AuditQuery(), on_record=another_host_appends)
        assert appended == [1000, 2000]
        assert manifest.count == 3000
        assert manifest.data["last_seq"] == 3000
        assert manifest.data["store_head"]["seq"] == 3000
        _verified(export, 3000)

        # Filtered: the chain walked first (to 3080), then the matching records of it.
        filtered, export = _export(
            batched, AuditQuery(since=T0), on_record=another_host_appends, record=False
        )
        assert appended == [1000, 2000, 1000, 2000]
        assert filtered.data["store_head"]["seq"] == 3080
        assert filtered.count == 3080
        _verified(export, 3080)

        # The next export continues exactly where the first ended.
        following, export = _export(batched, AuditQuery(), new_only=True)
        assert following.count == 160
        assert (following.data["first_seq"], following.data["last_seq"]) == (3001, 3160)
        assert following.data["genesis"] == manifest.final_hash
        _verified(export, 160)
        assert check_store(batched).records == 3160
        assert export_csv(batched, AuditQuery(), io.StringIO()) == 3160
    finally:
        other.close()


class _AppendsOnceWalked:
    """A real store; another host appends records just after an export has walked the chain."""

    def __init__(self, real: AuditStore, other: AuditStore) -> None:
        self.real = real
        self.other = other

    def iter_canonical(self, query: AuditQuery, **kw: Any) -> Iterator[bytes]:
        _late_records(self.other, 20_000)
        return self.real.iter_canonical(query, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_filtered_export_holds_the_records_of_the_chain_it_walked(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        store: AuditStore = SqliteAuditStore(tmp_path / "audit.db")
        _fill(store, 1, 3000)
        other: AuditStore = SqliteAuditStore(tmp_path / "audit.db")
    else:
        store = request.getfixturevalue("batched")
        other = PostgresAuditStore(SecretStr(request.getfixturevalue("writer_url")))
    try:
        racing: Any = _AppendsOnceWalked(store, other)
        manifest, export = _export(racing, AuditQuery(since=T0 - timedelta(days=1)))
        assert manifest.data["store_head"]["seq"] == 3000
        assert manifest.count == 3000
        _verified(export, 3000)
        assert store.count(AuditQuery()) == 3040
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("DELETE FROM audit_records WHERE seq = 501", "record 501 missing: deleted"),
        ("UPDATE audit_records SET hash = 'abc' WHERE seq = 500", r"record 500 .*changed after"),
        (
            "UPDATE audit_records SET prev_hash = 'abc' WHERE seq = 501",
            "does not follow record 500",
        ),
    ],
)
def test_a_break_at_a_batch_boundary_is_found(
    batched: PostgresAuditStore, postgres_url: str, statement: str, message: str
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only")
        conn.execute(statement)
    with pytest.raises(AuditChainError, match=message):
        check_store(batched)
    with pytest.raises(AuditChainError, match=message):
        _export(batched, AuditQuery())
