"""The audit store's schema, as numbered migrations for SQLite and PostgreSQL.

``audit_schema_version`` holds one row per applied migration. A store applies
the missing ones in order, in one transaction, when it is first used; a store
whose version is newer than this code knows is refused rather than guessed at.
Both dialects describe the same tables and columns; only the types differ
(PostgreSQL has ``BOOLEAN`` and ``TIMESTAMPTZ``; SQLite keeps ``0``/``1`` and
RFC 3339 text, which sorts as time).

Values are checked once, in code, before anything is written
(:func:`breakglass.audit.codec.prepare`); the tables carry no ``CHECK``
constraints, which cost SQLite about a quarter of its insert time.

Never edit a released migration: add a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from breakglass.errors import AuditStoreError

VERSION_TABLE = "audit_schema_version"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, in both dialects.

    ``chain``: after the first statements, link every stored record into the
    store's hash chain (records stored before the chain existed, in the order
    they were stored), then run the ``*_after`` statements.
    """

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]
    chain: bool = False
    sqlite_after: tuple[str, ...] = ()
    postgres_after: tuple[str, ...] = ()


_APPEND_ONLY_SQLITE = tuple(
    f"""CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
    BEGIN SELECT RAISE(ABORT, 'breakglass audit: {table} is append-only, {op} refused'); END"""
    for table in ("audit_records", "audit_exports")
    for op in ("UPDATE", "DELETE")
)

# SQLSTATE 42501 (insufficient_privilege): a refused change reads as the permission error it is.
_APPEND_ONLY_POSTGRES = (
    """CREATE OR REPLACE FUNCTION breakglass_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'breakglass audit: % is append-only, % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = '42501';
    END $$""",
    *(
        stmt
        for table in ("audit_records", "audit_exports")
        for stmt in (
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION breakglass_audit_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION breakglass_audit_append_only()""",
        )
    ),
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="audit records, pull cursors and problems",
        sqlite=(
            """CREATE TABLE audit_records (
                id                TEXT PRIMARY KEY,
                provider          TEXT NOT NULL,
                vendor_event_id   TEXT NOT NULL,
                vendor_event_type TEXT NOT NULL,
                flag_key          TEXT NOT NULL,
                project           TEXT,
                environment       TEXT,
                action            TEXT NOT NULL,
                value_before      INTEGER,
                value_after       INTEGER,
                actor_kind        TEXT NOT NULL,
                actor_id          TEXT,
                actor_email       TEXT,
                actor_name        TEXT,
                comment           TEXT,
                occurred_at       TEXT NOT NULL,
                pulled_at         TEXT NOT NULL,
                canonical         TEXT NOT NULL
            )""",
            "CREATE INDEX audit_records_order ON audit_records (occurred_at, id)",
            """CREATE TABLE audit_cursors (
                provider   TEXT NOT NULL,
                flag_key   TEXT NOT NULL,
                cursor     TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (provider, flag_key)
            )""",
            """CREATE TABLE audit_problems (
                seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                provider    TEXT NOT NULL,
                flag_key    TEXT NOT NULL,
                detail      TEXT NOT NULL,
                detected_at TEXT NOT NULL
            )""",
        ),
        postgres=(
            # COLLATE "C": ids sort by code point, exactly as in SQLite, whatever the database locale.
            """CREATE TABLE audit_records (
                id                TEXT COLLATE "C" PRIMARY KEY,
                provider          TEXT NOT NULL,
                vendor_event_id   TEXT NOT NULL,
                vendor_event_type TEXT NOT NULL,
                flag_key          TEXT NOT NULL,
                project           TEXT,
                environment       TEXT,
                action            TEXT NOT NULL,
                value_before      BOOLEAN,
                value_after       BOOLEAN,
                actor_kind        TEXT NOT NULL,
                actor_id          TEXT,
                actor_email       TEXT,
                actor_name        TEXT,
                comment           TEXT,
                occurred_at       TIMESTAMPTZ NOT NULL,
                pulled_at         TIMESTAMPTZ NOT NULL,
                canonical         TEXT NOT NULL
            )""",
            "CREATE INDEX audit_records_order ON audit_records (occurred_at, id)",
            """CREATE TABLE audit_cursors (
                provider   TEXT NOT NULL,
                flag_key   TEXT NOT NULL,
                cursor     TEXT NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (provider, flag_key)
            )""",
            """CREATE TABLE audit_problems (
                seq         BIGSERIAL PRIMARY KEY,
                provider    TEXT NOT NULL,
                flag_key    TEXT NOT NULL,
                detail      TEXT NOT NULL,
                detected_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
    Migration(
        version=2,
        description="the store's hash chain, the export log, append-only records",
        sqlite=(
            "ALTER TABLE audit_records ADD COLUMN seq INTEGER",
            "ALTER TABLE audit_records ADD COLUMN prev_hash TEXT",
            "ALTER TABLE audit_records ADD COLUMN hash TEXT",
            """CREATE TABLE audit_exports (
                seq         INTEGER PRIMARY KEY,
                export_hash TEXT NOT NULL UNIQUE,
                exported_at TEXT NOT NULL,
                manifest    TEXT NOT NULL,
                signature   TEXT
            )""",
        ),
        postgres=(
            "ALTER TABLE audit_records ADD COLUMN seq BIGINT, ADD COLUMN prev_hash TEXT,"
            " ADD COLUMN hash TEXT",
            """CREATE TABLE audit_exports (
                seq         BIGINT PRIMARY KEY,
                export_hash TEXT NOT NULL UNIQUE,
                exported_at TIMESTAMPTZ NOT NULL,
                manifest    TEXT NOT NULL,
                signature   TEXT
            )""",
        ),
        chain=True,
        sqlite_after=(
            "CREATE UNIQUE INDEX audit_records_seq ON audit_records (seq)",
            *_APPEND_ONLY_SQLITE,
        ),
        postgres_after=(
            "ALTER TABLE audit_records ALTER COLUMN seq SET NOT NULL,"
            " ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL",
            "CREATE UNIQUE INDEX audit_records_seq ON audit_records (seq)",
            *_APPEND_ONLY_POSTGRES,
        ),
    ),
)

LATEST = MIGRATIONS[-1].version
"""The schema version this code writes."""

VERSION_TABLE_SQLITE = f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""

VERSION_TABLE_POSTGRES = f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL
)"""


def refuse_newer(current: int, location: str) -> None:
    """Raise when a store's schema is newer than this code (an older breakglass must not guess)."""
    if current > LATEST:
        raise AuditStoreError(
            f"audit store {location} has schema version {current}, newer than this "
            f"breakglass knows ({LATEST}): upgrade breakglass"
        )


def pending(current: int) -> list[Migration]:
    """The migrations a store at version ``current`` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]
