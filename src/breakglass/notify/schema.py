"""The notification tables, kept in the audit store's database (SQLite or PostgreSQL).

Their own version table (``notify_schema_version``) and migrations, so the
notification chain and the audit history evolve independently in one file or
database. Times that are compared (schedules, leases, deadlines) are epoch
seconds (``DOUBLE PRECISION``), the same in both dialects.

Never edit a released migration: add a new one.
"""

from __future__ import annotations

VERSION_TABLE = "notify_schema_version"

_TABLES = (
    """CREATE TABLE notify_outbox (
        id               TEXT PRIMARY KEY,
        suspension_id    TEXT NOT NULL,
        event            TEXT NOT NULL,
        group_name       TEXT NOT NULL,
        channel_id       TEXT NOT NULL,
        channel_type     TEXT NOT NULL,
        deployer         TEXT,
        context          TEXT NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        created_at       DOUBLE PRECISION NOT NULL,
        next_attempt_at  DOUBLE PRECISION NOT NULL,
        lease_until      DOUBLE PRECISION,
        leased_by        TEXT,
        first_attempt_at DOUBLE PRECISION,
        done_at          DOUBLE PRECISION,
        last_status      INTEGER,
        last_detail      TEXT,
        response_id      TEXT
    )""",
    "CREATE INDEX notify_outbox_due ON notify_outbox (state, next_attempt_at)",
    "CREATE INDEX notify_outbox_suspension ON notify_outbox (suspension_id)",
    """CREATE TABLE notify_deadlines (
        suspension_id TEXT NOT NULL,
        group_name    TEXT NOT NULL,
        due_at        DOUBLE PRECISION NOT NULL,
        state         TEXT NOT NULL,
        escalated_at  DOUBLE PRECISION,
        PRIMARY KEY (suspension_id, group_name)
    )""",
    "CREATE INDEX notify_deadlines_due ON notify_deadlines (state, due_at)",
    """CREATE TABLE notify_acks (
        suspension_id TEXT NOT NULL,
        group_name    TEXT NOT NULL,
        via           TEXT NOT NULL,
        actor         TEXT NOT NULL,
        acked_at      DOUBLE PRECISION NOT NULL,
        detail        TEXT,
        PRIMARY KEY (suspension_id, group_name, via, actor)
    )""",
    """CREATE TABLE notify_events (
        suspension_id TEXT NOT NULL,
        event         TEXT NOT NULL,
        at            DOUBLE PRECISION NOT NULL,
        context       TEXT NOT NULL,
        PRIMARY KEY (suspension_id, event)
    )""",
)

_ATTEMPTS_SQLITE = """CREATE TABLE notify_attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id     TEXT NOT NULL,
    suspension_id TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    DOUBLE PRECISION NOT NULL,
    latency_ms    DOUBLE PRECISION NOT NULL,
    status        INTEGER,
    outcome       TEXT NOT NULL,
    response_id   TEXT,
    detail        TEXT,
    worker        TEXT NOT NULL
)"""

_ATTEMPTS_POSTGRES = _ATTEMPTS_SQLITE.replace(
    "seq           INTEGER PRIMARY KEY AUTOINCREMENT", "seq           BIGSERIAL PRIMARY KEY"
)

_ATTEMPTS_INDEX = "CREATE INDEX notify_attempts_suspension ON notify_attempts (suspension_id, seq)"

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        1,
        "notification outbox, attempts, deadlines, acknowledgements, events",
        (*_TABLES, _ATTEMPTS_SQLITE, _ATTEMPTS_INDEX),
        (*_TABLES, _ATTEMPTS_POSTGRES, _ATTEMPTS_INDEX),
    ),
)
"""``(version, description, sqlite statements, postgres statements)``."""

LATEST = MIGRATIONS[-1][0]

VERSION_DDL = f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)"""
