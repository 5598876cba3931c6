"""The audit store on SQLite and on a real PostgreSQL: schema, uniqueness, transactions, queries."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit.codec import canonical_json, prepare, record_from_dict
from breakglass.audit.migrations import LATEST, MIGRATIONS, VERSION_TABLE
from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.settings import AuditSettings, load_audit_settings
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery, CursorUpdate, Problem, open_audit_store
from breakglass.audit_record import Action, Actor, AuditRecord
from breakglass.errors import AuditRecordError, AuditStoreError, ConfigurationError
from breakglass.settings import Settings
from tests.audit_support import T0, make_record, reset_postgres, rows

# The store fixtures (SQLite, and a real PostgreSQL) live there.
pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.audit.store import AuditStore


def test_migrations_are_numbered_and_cover_both_dialects() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == LATEST
    for migration in MIGRATIONS:
        assert migration.sqlite
        assert migration.postgres
        assert bool(migration.sqlite_after) == bool(migration.postgres_after)


def test_migrate_is_idempotent_and_versioned(store: AuditStore) -> None:
    assert store.migrate() == LATEST
    assert store.migrate() == LATEST
    assert store.status().schema_version == LATEST


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    SqliteAuditStore(path).migrate()
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} VALUES (?, 'from the future', '2030-01-01T00:00:00.000Z')",
            (LATEST + 1,),
        )
    with pytest.raises(AuditStoreError, match="newer than this breakglass knows"):
        SqliteAuditStore(path).migrate()


@pytest.mark.live
def test_a_newer_schema_is_refused_on_postgres(
    pg_store: PostgresAuditStore, postgres_url: str
) -> None:
    pg_store.migrate()
    pg_store.save(rows(make_record(1)))
    import psycopg

    url = pg_store._url.get_secret_value()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} VALUES (%s, 'from the future', now())",
            (LATEST + 1,),
        )
    with pytest.raises(AuditStoreError, match="newer than this breakglass knows"):
        PostgresAuditStore(SecretStr(url)).migrate()


def test_records_are_unique_by_id(store: AuditStore) -> None:
    first = store.save(rows(make_record(1), make_record(2), make_record(2)))
    assert (first.inserted, first.duplicates, first.conflicts) == (2, 1, [])
    again = store.save(rows(make_record(1), make_record(3)))
    assert (again.inserted, again.duplicates) == (1, 1)
    assert store.count(AuditQuery()) == 3


def test_a_pulled_at_difference_is_a_duplicate_not_a_conflict(store: AuditStore) -> None:
    store.save(rows(make_record(1)))
    later = make_record(1)
    later = dataclasses.replace(later, pulled_at=later.pulled_at + timedelta(hours=1))
    result = store.save(rows(later))
    assert (result.inserted, result.duplicates, result.conflicts) == (0, 1, [])


def test_a_reused_id_with_other_content_is_a_conflict_kept_as_problem(store: AuditStore) -> None:
    store.save(rows(make_record(1, comment="the original")))
    result = store.save(rows(make_record(1, comment="something else")))
    assert result.conflicts == ["local:1"]
    assert result.inserted == 0
    [kept] = [json_of(text) for text in store.iter_canonical(AuditQuery())]
    assert kept["comment"] == "the original"  # evidence is never overwritten
    [problem] = store.problems()
    assert "local:1" in problem.detail
    assert "different content" in problem.detail


def test_cursor_is_stored_with_its_records(store: AuditStore) -> None:
    assert store.get_cursor("local", "system-active") is None
    store.save(rows(make_record(1)), cursor=CursorUpdate("local", "system-active", "1"))
    assert store.get_cursor("local", "system-active") == "1"
    assert store.get_cursor("local", "other-flag") is None
    store.save([], cursor=CursorUpdate("local", "system-active", "9"))
    assert store.get_cursor("local", "system-active") == "9"


def test_a_failing_save_stores_neither_records_nor_cursor(store: AuditStore) -> None:
    store.save(rows(make_record(1)), cursor=CursorUpdate("local", "system-active", "1"))
    good = prepare(make_record(2))
    bad = good._replace(id="local:3", provider=None)  # type: ignore[arg-type]  # violates NOT NULL
    with pytest.raises(AuditStoreError):
        store.save([good, bad], cursor=CursorUpdate("local", "system-active", "3"))
    assert store.get_cursor("local", "system-active") == "1"
    assert store.count(AuditQuery()) == 1
    # The store is usable again after the failure.
    store.save([good], cursor=CursorUpdate("local", "system-active", "2"))
    assert store.count(AuditQuery()) == 2


def test_problems_are_kept(store: AuditStore) -> None:
    store.save(
        [],
        problems=[Problem("unleash", "system-active", "entry 7: no createdAt", T0)],
        cursor=CursorUpdate("unleash", "system-active", "7"),
    )
    [problem] = store.problems("unleash")
    assert problem.detail == "entry 7: no createdAt"
    assert problem.detected_at == T0
    assert store.problems("local") == []
    assert store.status().problems == 1


def test_order_is_occurred_at_then_id(store: AuditStore) -> None:
    same = T0 + timedelta(seconds=5)
    records = [
        make_record(10, at=same),
        make_record(9, at=same),  # "local:10" < "local:9" as text
        make_record(1, at=T0 + timedelta(seconds=7)),
        make_record(2, at=T0),
        make_record(3, provider="unleash", at=same),
    ]
    store.save(rows(*records))
    ids = [json_of(text)["id"] for text in store.iter_canonical(AuditQuery())]
    assert ids == ["local:2", "local:10", "local:9", "unleash:3", "local:1"]
    assert [r.id for r in store.iter_rows(AuditQuery())] == ids


def test_filters_combine(store: AuditStore) -> None:
    store.save(
        rows(
            make_record(1, provider="local", environment="production"),
            make_record(2, provider="local", environment="staging"),
            make_record(3, provider="unleash", environment="production"),
            make_record(4, provider="unleash", environment="production", flag_key="other"),
            make_record(5, provider="local", environment=None),
        )
    )

    def ids(query: AuditQuery) -> list[str]:
        return [r.id for r in store.iter_rows(query)]

    assert ids(AuditQuery(providers=("unleash",))) == ["unleash:3", "unleash:4"]
    assert ids(AuditQuery(environments=("production",))) == ["local:1", "unleash:3", "unleash:4"]
    assert ids(AuditQuery(flags=("other",))) == ["unleash:4"]
    assert ids(AuditQuery(providers=("local", "unleash"), flags=("system-active",))) == [
        "local:1",
        "local:2",
        "unleash:3",
        "local:5",
    ]
    window = AuditQuery(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4))
    assert ids(window) == ["local:2", "unleash:3"]  # since inclusive, until exclusive
    assert store.count(window) == 2


def test_rows_round_trip_to_records(store: AuditStore) -> None:
    original = make_record(1, raw={"nested": {"b": 1, "a": [1, 2.5, None, True]}, "ü": "✓"})
    store.save(rows(original))
    [text] = list(store.iter_canonical(AuditQuery()))
    assert text == canonical_json(original.to_dict()).encode()
    assert record_from_dict(json_of(text)) == original
    [row] = list(store.iter_rows(AuditQuery()))
    assert row == prepare(original)


def test_status_summarises_per_provider_and_flag(store: AuditStore) -> None:
    store.save(
        rows(make_record(1), make_record(2), make_record(3, provider="unleash")),
        cursor=CursorUpdate("local", "system-active", "2"),
    )
    store.save([], cursor=CursorUpdate("flagsmith", "system-active", "0"))
    info = store.status()
    assert info.records == 3
    summary = {(p.provider, p.flag_key): p for p in info.providers}
    assert summary["local", "system-active"].records == 2
    assert summary["local", "system-active"].cursor == "2"
    assert summary["local", "system-active"].first_occurred_at == "2026-08-21T10:00:01.000Z"
    assert summary["unleash", "system-active"].cursor is None
    assert summary["flagsmith", "system-active"].records == 0
    assert info.as_dict()["providers"][0]["provider"] == "flagsmith"


def test_pull_lock_is_exclusive(store: AuditStore, tmp_path: Path) -> None:
    other: AuditStore
    if isinstance(store, SqliteAuditStore):
        other = SqliteAuditStore(store.path)
    else:
        assert isinstance(store, PostgresAuditStore)
        other = PostgresAuditStore(store._url)
    try:
        with (
            store.pull_lock("local", "system-active"),
            pytest.raises(AuditStoreError, match="another `breakglass audit pull`"),
            other.pull_lock("local", "system-active"),
        ):
            pass
        with other.pull_lock("local", "system-active"):
            pass  # released
    finally:
        other.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vendor_event_id": ""}, "vendor_event_id is missing"),
        ({"provider": "a:b"}, "provider must be"),
        ({"occurred_at": T0.replace(tzinfo=None)}, "no time zone"),
        ({"value_before": 1}, "value_before must be"),
        ({"raw": {"x": float("nan")}}, "canonical JSON"),
        ({"raw": {"x": "\ud800"}}, "canonical JSON"),
        ({"raw": {"x": object()}}, "canonical JSON"),
        ({"comment": 42}, "comment must be text"),
        ({"actor": "alice"}, "actor must be an Actor"),
        ({"action": "flipped"}, "unknown action"),
    ],
)
def test_records_that_cannot_be_evidence_are_refused(
    change: dict[str, object], message: str
) -> None:
    record = AuditRecord(**{**_fields(make_record(1)), **change})
    with pytest.raises(AuditRecordError, match=message):
        prepare(record)


def test_record_from_dict_refuses_other_schemas() -> None:
    data = make_record(1).to_dict()
    with pytest.raises(AuditRecordError):
        record_from_dict({**data, "schema": "something/v2"})
    with pytest.raises(AuditRecordError, match="does not match"):
        record_from_dict({**data, "id": "local:2"})
    assert record_from_dict(data).actor == Actor(**_actor(data))


def test_open_audit_store_picks_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    chosen = open_audit_store(settings, AuditSettings())
    assert isinstance(chosen, SqliteAuditStore)
    assert chosen.path == tmp_path / "state" / "audit.db"
    custom = open_audit_store(settings, AuditSettings(path=tmp_path / "elsewhere.db"))
    assert isinstance(custom, SqliteAuditStore)
    assert custom.path == tmp_path / "elsewhere.db"


def test_database_url_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "postgresql://auditor:hunter2-secret@127.0.0.1:1/evidence"
    monkeypatch.setenv("BREAKGLASS_AUDIT__DATABASE_URL", url)
    audit = load_audit_settings()
    assert "hunter2" not in repr(audit)
    assert "hunter2" not in str(audit.model_dump())
    chosen = open_audit_store(Settings(state_dir=tmp_path), audit)
    assert isinstance(chosen, PostgresAuditStore)
    assert "hunter2" not in repr(chosen)
    assert chosen.location == "postgresql://127.0.0.1:1/evidence"
    with pytest.raises(AuditStoreError) as caught:
        chosen.count(AuditQuery())
    assert "hunter2" not in str(caught.value)
    assert "auditor" not in str(caught.value)
    assert "127.0.0.1:1/evidence" in str(caught.value)
    assert caught.value.__cause__ is None  # the driver's exception is not chained


def test_a_malformed_database_url_is_named_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresAuditStore(SecretStr("postgresql://x:pw-in-url@[broken"))
    assert "BREAKGLASS_AUDIT__DATABASE_URL" in str(caught.value)
    assert "pw-in-url" not in str(caught.value)


def test_an_unusable_sqlite_path_is_an_audit_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(AuditStoreError, match="cannot open audit store"):
        SqliteAuditStore(blocker / "audit.db").count(AuditQuery())


def _fields(record: AuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in AuditRecord.__dataclass_fields__}


def _actor(data: dict[str, Any]) -> dict[str, Any]:
    actor = data["actor"]
    assert isinstance(actor, dict)
    return {
        "kind": actor["kind"],
        "id": actor["id"],
        "email": actor["email"],
        "name": actor["name"],
    }


def json_of(text: bytes) -> dict[str, object]:
    import json

    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def test_stored_records_keep_actions_and_booleans(store: AuditStore) -> None:
    store.save(rows(make_record(1, action=Action.ENABLED), make_record(2, action=Action.OTHER)))
    first, second = store.iter_rows(AuditQuery())
    assert (first.action, first.value_before, first.value_after) == ("enabled", False, True)
    assert (second.action, second.value_before, second.value_after) == ("other", False, False)


def test_a_cyclic_raw_entry_is_refused() -> None:
    raw: dict[str, Any] = {}
    raw["self"] = raw
    with pytest.raises(AuditRecordError, match="canonical JSON"):
        prepare(make_record(1, raw=raw))


@pytest.mark.live
def test_a_version_1_store_is_chained_when_upgraded(tmp_path: Path, postgres_url: str) -> None:
    """Records stored before the chain existed are linked once, and then verify like any."""
    import psycopg

    from breakglass.audit.codec import COLUMNS
    from breakglass.audit.integrity import check_store
    from breakglass.audit.migrations import VERSION_TABLE_POSTGRES, VERSION_TABLE_SQLITE

    old = rows(make_record(3), make_record(1), make_record(2))
    v1 = MIGRATIONS[0]
    columns = ", ".join(COLUMNS)
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (VERSION_TABLE_SQLITE, *v1.sqlite):
        conn.execute(statement)
    conn.execute("INSERT INTO audit_schema_version VALUES (1, 'v1', '2026-01-01T00:00:00.000Z')")
    conn.executemany(f"INSERT INTO audit_records ({columns}) VALUES ({', '.join('?' * 18)})", old)
    conn.close()
    reset_postgres(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        for statement in (VERSION_TABLE_POSTGRES, *v1.postgres):
            pg.execute(statement)
        pg.execute("INSERT INTO audit_schema_version VALUES (1, 'v1', now())")
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO audit_records ({columns}) VALUES ({', '.join(['%s'] * 18)})", old
            )
    for store in (SqliteAuditStore(path), PostgresAuditStore(SecretStr(postgres_url))):
        try:
            assert store.migrate() == LATEST
            assert check_store(store).records == 3
            store.save(rows(make_record(4)))
            assert check_store(store).records == 4
        finally:
            store.close()


def test_an_export_raced_by_another_is_not_logged(store: AuditStore) -> None:
    """Two exports made at once would both name the same predecessor: the second is refused."""
    import io

    from breakglass.audit.export import export_jsonl
    from breakglass.audit.integrity import check_store

    store.save(rows(make_record(1)))
    export_jsonl(store, AuditQuery(), io.BytesIO())
    [first] = store.exports()
    with pytest.raises(AuditStoreError, match="another export was logged while this one was made"):
        store.record_export("f" * 64, "2026-08-21T10:00:00.000Z", "{}", None, previous=None)
    assert [e.export_hash for e in store.exports()] == [first.export_hash]
    export_jsonl(store, AuditQuery(), io.BytesIO())
    assert check_store(store).exports == 2
