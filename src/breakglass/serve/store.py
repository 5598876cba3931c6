"""What serve keeps: API tokens (hashed), idempotency keys, suspensions, and its session key.

SQLite (``<state_dir>/serve.db``) for one replica; PostgreSQL
(``BREAKGLASS_SERVE__DATABASE_URL``) shared by several. Every statement is
written once with ``?`` marks and run on either database. Every failure is a
:class:`breakglass.errors.ServeStoreError` naming the file or ``host/database``,
never a password.

Nothing on the halt path waits for this store to work: a halt whose
idempotency key or suspension cannot be written still halts, and says so.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from breakglass import _sqlite
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import ConfigurationError, ServeStoreError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime
    from pathlib import Path

    from pydantic import SecretStr

    from breakglass.database.grants import TableGrant

KEY_LIFETIME = timedelta(hours=24)
"""How long an ``Idempotency-Key`` replays its first answer."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS serve_tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        secret_hash TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        revoked_at TEXT, revoked_by TEXT)""",
    """CREATE TABLE IF NOT EXISTS serve_idempotency (
        actor TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
        status INTEGER, body TEXT, created_at TEXT NOT NULL, PRIMARY KEY (actor, key))""",
    """CREATE TABLE IF NOT EXISTS serve_suspensions (
        id TEXT PRIMARY KEY, opened_at TEXT NOT NULL, opened_by TEXT NOT NULL,
        reason TEXT NOT NULL, incident TEXT, personal_data_affected INTEGER NOT NULL,
        business_continuity INTEGER NOT NULL, halts TEXT NOT NULL, targets TEXT NOT NULL,
        closed_at TEXT, closed_by TEXT, close_reason TEXT, open_marker INTEGER UNIQUE)""",
    """CREATE TABLE IF NOT EXISTS serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    # Console sessions ended by an admin: a session made before the person's latest generation is refused.
    """CREATE TABLE IF NOT EXISTS serve_session_revocations (
        person TEXT PRIMARY KEY, generation INTEGER NOT NULL, revoked_at TEXT NOT NULL,
        revoked_by TEXT NOT NULL, reason TEXT NOT NULL)""",
    # What happens to a suspension after it opened: checklist ticks, approvals, ungated resumes...
    """CREATE TABLE IF NOT EXISTS serve_suspension_entries (
        suspension_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, actor TEXT NOT NULL,
        at TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (suspension_id, kind, key, actor))""",
    # Decisions made while halted, waiting for review (breakglass.hold): written by the
    # inference service, reviewed through serve, so both open this same database.
    """CREATE TABLE IF NOT EXISTS held_decisions (
        ticket TEXT PRIMARY KEY, kind TEXT NOT NULL, key TEXT UNIQUE, payload TEXT NOT NULL,
        held_at TEXT NOT NULL, held_because TEXT NOT NULL, state TEXT NOT NULL,
        reviewed_by TEXT, reviewed_at TEXT, review_reason TEXT, delivered_at TEXT)""",
)


# Failed logins shared by replicas (PostgreSQL only: SQLite is one replica, counted in memory).
# Times are the database's own clock, so replicas whose clocks differ count alike.
_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS serve_login_failures (client TEXT NOT NULL, at TIMESTAMPTZ NOT NULL)",
    "CREATE INDEX IF NOT EXISTS serve_login_failures_client ON serve_login_failures (client, at)",
    "CREATE INDEX IF NOT EXISTS serve_login_failures_at ON serve_login_failures (at)",
)


def table_names(schema: tuple[str, ...]) -> tuple[str, ...]:
    """The tables a schema creates (``CREATE TABLE IF NOT EXISTS <name> (``), indexes left out."""
    return tuple(s.split()[5] for s in schema if s.startswith("CREATE TABLE"))


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An API token as stored: its secret only as a hash."""

    id: str
    name: str
    role: str
    secret_hash: str
    created_at: str
    created_by: str
    revoked_at: str | None = None
    revoked_by: str | None = None

    def public(self) -> dict[str, Any]:
        """JSON-ready data, without the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True, slots=True)
class SessionRevocation:
    """An admin ended a person's console sessions; ``generation`` counts how often."""

    person: str
    generation: int
    revoked_at: str
    revoked_by: str
    reason: str

    def public(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "person": self.person,
            "generation": self.generation,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming an idempotency key found.

    ``status`` and ``body`` are set when an earlier request with the key has
    answered (replay them); ``fingerprint`` is that request's; ``fresh`` is
    ``True`` when this request owns the key now.
    """

    fresh: bool
    fingerprint: str
    status: int | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class Suspension:
    """One halt episode: opened by the first halt, joined by later ones, closed by a resume."""

    id: str
    opened_at: datetime
    opened_by: str
    reason: str
    incident: str | None
    personal_data_affected: bool
    business_continuity: bool
    halts: list[dict[str, Any]]
    targets: dict[str, dict[str, Any]]
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "open": self.closed_at is None,
            "opened_at": isoformat_ms(self.opened_at),
            "opened_by": self.opened_by,
            "reason": self.reason,
            "incident": self.incident,
            "personal_data_affected": self.personal_data_affected,
            "business_continuity": self.business_continuity,
            "halts": self.halts,
            "targets": self.targets,
            "closed_at": isoformat_ms(self.closed_at) if self.closed_at else None,
            "closed_by": self.closed_by,
            "close_reason": self.close_reason,
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """One fact added to a suspension after it opened.

    ``(suspension_id, kind, key, actor)`` is unique: one approval per person,
    one tick per checklist item (``actor`` empty, the person in ``data``).
    """

    suspension_id: str
    kind: str
    key: str
    actor: str
    at: datetime
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "kind": self.kind,
            "key": self.key,
            "actor": self.actor,
            "at": isoformat_ms(self.at),
            "data": self.data,
        }


class ServeStore(Protocol):
    """**Protocol**: serve's shared state (SQLite or PostgreSQL)."""

    @property
    def location(self) -> str:
        """The file or ``host/database`` (never a password)."""
        ...

    def ping(self) -> None:
        """Raise :class:`ServeStoreError` unless the store answers."""
        ...

    def migrate(self) -> None:
        """Create the missing tables (done on first use; ``breakglass db migrate`` as the owner)."""
        ...

    def grants_missing(self, components: Sequence[str]) -> str | None:
        """One line naming what this store's role lacks of the components' grants, else ``None``."""
        ...

    def session_key(self) -> str:
        """The key that signs console sessions: made once, shared by every replica."""
        ...

    def add_token(self, token: StoredToken) -> None:
        """Store a new token; raise ``ServeStoreError`` when its name is taken."""
        ...

    def tokens(self) -> list[StoredToken]:
        """Every token, revoked ones included, oldest first."""
        ...

    def revoke_token(self, name: str, *, by: str, at: datetime) -> bool:
        """Revoke the token called ``name``; ``False`` when there is no such live token."""
        ...

    def revoke_sessions(
        self, person: str, *, by: str, reason: str, at: datetime
    ) -> SessionRevocation:
        """End every console session of ``person`` made so far (its generation goes up by one)."""
        ...

    def session_revocations(self, *, since: datetime | None = None) -> list[SessionRevocation]:
        """Every person whose sessions were ever ended, with the latest generation.

        ``since``: single logged-out sessions (``session:<sid>``) only if ended since then.
        """
        ...

    def claim_key(self, actor: str, key: str, fingerprint: str, at: datetime) -> Claim:
        """Own ``key`` for ``actor``, or learn what the request that owns it did (within a day)."""
        ...

    def complete_key(self, actor: str, key: str, status: int, body: str) -> None:
        """Keep the answer given to the request that owns ``key``."""
        ...

    def release_key(self, actor: str, key: str) -> None:
        """Give up a key whose request ended without an answer worth replaying."""
        ...

    def record_halt(self, suspension: Suspension) -> str:
        """Open ``suspension``, or add its halt to the one already open; the open one's id."""
        ...

    def update_targets(self, suspension_id: str, targets: dict[str, dict[str, Any]]) -> None:
        """Merge per-target results into a suspension."""
        ...

    def close_suspension(self, *, by: str, reason: str, at: datetime) -> str | None:
        """Close the open suspension; its id, or ``None`` when none was open."""
        ...

    def open_suspension(self) -> Suspension | None:
        """The open suspension, if any."""
        ...

    def suspensions(self, limit: int) -> list[Suspension]:
        """The latest suspensions, newest first."""
        ...

    def suspension(self, suspension_id: str) -> Suspension | None:
        """The suspension ``suspension_id``, open or closed."""
        ...

    def add_entry(self, entry: Entry, *, replace: bool = False) -> bool:
        """Add ``entry``; ``False`` when its key exists (replaced instead when ``replace``)."""
        ...

    def entries(self, suspension_id: str) -> list[Entry]:
        """Every entry of a suspension, oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class _SqlStore:
    """The statements, shared by both databases; subclasses provide :meth:`_tx`."""

    _mark = "?"
    _schema: tuple[str, ...] = _SCHEMA
    _for_update = ""
    """Locks the rows a read-modify-write reads (SQLite's BEGIN IMMEDIATE already serialises writers)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @property
    def location(self) -> str:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _run(self, cur: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return cur.execute(sql.replace("?", self._mark), params)

    def run(self, cur: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement written with ``?`` marks, on either database."""
        return self._run(cur, sql, params)

    def transaction(self) -> AbstractContextManager[Any]:
        """One unit of work (a cursor; committed on success), the schema made first."""
        return self._work()

    @contextmanager
    def _work(self) -> Iterator[Any]:
        if not self._migrated:
            with self._migrate_lock:
                if not self._migrated:
                    self.migrate()
        with self._tx() as cur:
            yield cur

    def migrate(self) -> None:
        """Create the tables that are missing.

        Tables that exist are only looked up, so a role without the right to
        create tables (``breakglass db migrate`` made them) gets past this.
        """
        with self._tx() as cur:
            absent = self._absent(cur)
            if absent:
                if not self._may_create(cur):
                    raise ServeStoreError(
                        f"serve store {self.location}: {', '.join(absent)} missing, and this "
                        "role may not create tables: run `breakglass db migrate` once as the "
                        "database owner"
                    )
                for statement in self._schema:
                    self._run(cur, statement)
        self._migrated = True

    def _absent(self, cur: Any) -> list[str]:
        have = {r[0] for r in self._run(cur, "SELECT name FROM sqlite_master").fetchall()}
        return [t for t in table_names(self._schema) if t not in have]

    def _may_create(self, cur: Any) -> bool:
        del cur
        return True  # SQLite: whoever may write the file may create its tables

    def grants_missing(self, components: Sequence[str]) -> str | None:
        del components
        return None  # SQLite has no grants: the file's permissions are checked on opening

    def ping(self) -> None:
        with self._work() as cur:
            self._run(cur, "SELECT 1")

    def session_key(self) -> str:
        with self._work() as cur:
            self._insert_ignore(cur, "serve_meta", ("session_key", secrets.token_urlsafe(48)))
            row = self._run(cur, "SELECT value FROM serve_meta WHERE key = ?", ("session_key",))
            return str(row.fetchone()[0])

    def _insert_ignore(self, cur: Any, table: str, values: tuple[Any, ...]) -> int:
        marks = ", ".join("?" * len(values))
        sql = f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608 -- fixed table names
        done = self._run(cur, sql, values)
        return int(done.rowcount)

    def add_token(self, token: StoredToken) -> None:
        with self._work() as cur:
            row = (token.id, token.name, token.role, token.secret_hash, token.created_at)
            if not self._insert_ignore(cur, "serve_tokens", (*row, token.created_by, None, None)):
                raise ServeStoreError(f"a token called {token.name!r} exists already")

    def tokens(self) -> list[StoredToken]:
        with self._work() as cur:
            rows = self._run(cur, "SELECT * FROM serve_tokens ORDER BY created_at, id").fetchall()
        return [StoredToken(*row) for row in rows]

    def revoke_token(self, name: str, *, by: str, at: datetime) -> bool:
        with self._work() as cur:
            done = self._run(
                cur,
                "UPDATE serve_tokens SET revoked_at = ?, revoked_by = ? "
                "WHERE name = ? AND revoked_at IS NULL",
                (isoformat_ms(at), by, name),
            )
            return bool(done.rowcount)

    def revoke_sessions(
        self, person: str, *, by: str, reason: str, at: datetime
    ) -> SessionRevocation:
        with self._work() as cur:
            self._run(
                cur,
                "INSERT INTO serve_session_revocations VALUES (?, 1, ?, ?, ?) "
                "ON CONFLICT (person) DO UPDATE SET "
                "generation = serve_session_revocations.generation + 1, "
                "revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by, "
                "reason = excluded.reason",
                (person, isoformat_ms(at), by, reason),
            )
            row = self._run(
                cur, "SELECT * FROM serve_session_revocations WHERE person = ?", (person,)
            ).fetchone()
        return SessionRevocation(*row)

    def session_revocations(self, *, since: datetime | None = None) -> list[SessionRevocation]:
        # A logout is one row for good (the runtime role may not delete); only recent ones are read.
        cutoff = isoformat_ms(since) if since is not None else ""
        with self._work() as cur:
            rows = self._run(
                cur,
                "SELECT * FROM serve_session_revocations "
                "WHERE person NOT LIKE ? OR revoked_at >= ? ORDER BY revoked_at, person",
                ("session:%", cutoff),
            ).fetchall()
        return [SessionRevocation(*row) for row in rows]

    def claim_key(self, actor: str, key: str, fingerprint: str, at: datetime) -> Claim:
        with self._work() as cur:
            # Keys are kept for a day (retries of one incident), then forgotten: the table stays small.
            self._run(
                cur,
                "DELETE FROM serve_idempotency WHERE created_at < ?",
                (isoformat_ms(at - KEY_LIFETIME),),
            )
            values = (actor, key, fingerprint, None, None, isoformat_ms(at))
            if self._insert_ignore(cur, "serve_idempotency", values):
                return Claim(fresh=True, fingerprint=fingerprint)
            row = self._run(
                cur,
                "SELECT fingerprint, status, body FROM serve_idempotency WHERE actor = ? AND key = ?",
                (actor, key),
            ).fetchone()
        if row is None:  # released between the two statements: try once more
            return self.claim_key(actor, key, fingerprint, at)
        return Claim(fresh=False, fingerprint=row[0], status=row[1], body=row[2])

    def complete_key(self, actor: str, key: str, status: int, body: str) -> None:
        with self._work() as cur:
            self._run(
                cur,
                "UPDATE serve_idempotency SET status = ?, body = ? WHERE actor = ? AND key = ?",
                (status, body, actor, key),
            )

    def release_key(self, actor: str, key: str) -> None:
        with self._work() as cur:
            self._run(
                cur,
                "DELETE FROM serve_idempotency WHERE actor = ? AND key = ? AND status IS NULL",
                (actor, key),
            )

    def record_halt(self, suspension: Suspension) -> str:
        s = suspension
        with self._work() as cur:
            # open_marker is 1 only while open and UNIQUE: two replicas cannot open two at once.
            inserted = self._insert_ignore(
                cur,
                "serve_suspensions",
                (
                    s.id,
                    isoformat_ms(s.opened_at),
                    s.opened_by,
                    s.reason,
                    s.incident,
                    int(s.personal_data_affected),
                    int(s.business_continuity),
                    json.dumps(s.halts),
                    json.dumps(s.targets),
                    None,
                    None,
                    None,
                    1,
                ),
            )
            if inserted:
                return s.id
            row = self._run(
                cur,
                "SELECT id, halts FROM serve_suspensions WHERE open_marker = 1" + self._for_update,  # noqa: S608 -- a fixed clause
            ).fetchone()
            if row is None:
                raise ServeStoreError("no open suspension, yet a new one could not be opened")
            halts = [*json.loads(row[1]), *s.halts]
            self._run(
                cur,
                "UPDATE serve_suspensions SET halts = ? WHERE id = ?",
                (json.dumps(halts), row[0]),
            )
            return str(row[0])

    def update_targets(self, suspension_id: str, targets: dict[str, dict[str, Any]]) -> None:
        with self._work() as cur:
            row = self._run(
                cur,
                "SELECT targets FROM serve_suspensions WHERE id = ?" + self._for_update,  # noqa: S608 -- a fixed clause
                (suspension_id,),
            ).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **targets}
            self._run(
                cur,
                "UPDATE serve_suspensions SET targets = ? WHERE id = ?",
                (json.dumps(merged), suspension_id),
            )

    def close_suspension(self, *, by: str, reason: str, at: datetime) -> str | None:
        with self._work() as cur:
            row = self._run(
                cur, "SELECT id FROM serve_suspensions WHERE open_marker = 1"
            ).fetchone()
            if row is None:
                return None
            self._run(
                cur,
                "UPDATE serve_suspensions SET closed_at = ?, closed_by = ?, close_reason = ?, "
                "open_marker = NULL WHERE id = ?",
                (isoformat_ms(at), by, reason, row[0]),
            )
            return str(row[0])

    _COLUMNS = (
        "id, opened_at, opened_by, reason, incident, personal_data_affected, "
        "business_continuity, halts, targets, closed_at, closed_by, close_reason"
    )

    def open_suspension(self) -> Suspension | None:
        with self._work() as cur:
            row = self._run(
                cur,
                f"SELECT {self._COLUMNS} FROM serve_suspensions WHERE open_marker = 1",  # noqa: S608 -- fixed columns
            ).fetchone()
        return None if row is None else _suspension(row)

    def suspensions(self, limit: int) -> list[Suspension]:
        with self._work() as cur:
            rows = self._run(
                cur,
                f"SELECT {self._COLUMNS} FROM serve_suspensions ORDER BY opened_at DESC LIMIT ?",  # noqa: S608 -- fixed columns
                (limit,),
            ).fetchall()
        return [_suspension(row) for row in rows]

    def suspension(self, suspension_id: str) -> Suspension | None:
        with self._work() as cur:
            row = self._run(
                cur,
                f"SELECT {self._COLUMNS} FROM serve_suspensions WHERE id = ?",  # noqa: S608 -- fixed columns
                (suspension_id,),
            ).fetchone()
        return None if row is None else _suspension(row)

    def add_entry(self, entry: Entry, *, replace: bool = False) -> bool:
        values = (
            entry.suspension_id,
            entry.kind,
            entry.key,
            entry.actor,
            isoformat_ms(entry.at),
            json.dumps(entry.data),
        )
        with self._work() as cur:
            if not replace:
                return bool(self._insert_ignore(cur, "serve_suspension_entries", values))
            self._run(
                cur,
                "INSERT INTO serve_suspension_entries VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (suspension_id, kind, key, actor) "
                "DO UPDATE SET at = excluded.at, data = excluded.data",
                values,
            )
            return True

    def entries(self, suspension_id: str) -> list[Entry]:
        with self._work() as cur:
            rows = self._run(
                cur,
                "SELECT suspension_id, kind, key, actor, at, data FROM serve_suspension_entries "
                "WHERE suspension_id = ? ORDER BY at, kind, key",
                (suspension_id,),
            ).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], parse_iso(r[4]), json.loads(r[5])) for r in rows]

    def close(self) -> None:
        """Nothing to release by default."""


def _suspension(row: Any) -> Suspension:
    return Suspension(
        id=row[0],
        opened_at=parse_iso(row[1]),
        opened_by=row[2],
        reason=row[3],
        incident=row[4],
        personal_data_affected=bool(row[5]),
        business_continuity=bool(row[6]),
        halts=json.loads(row[7]),
        targets=json.loads(row[8]),
        closed_at=parse_iso(row[9]) if row[9] else None,
        closed_by=row[10],
        close_reason=row[11],
    )


class SqliteServeStore(_SqlStore):
    """The store in one SQLite file: one connection per unit of work, safe across processes."""

    def __init__(self, path: Path, *, timeout: float = 2.0, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(clock)
        self._path = path
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"SqliteServeStore({str(self._path)!r})"

    @property
    def location(self) -> str:
        """The file."""
        return str(self._path)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        try:
            with _sqlite.connect(self._path, timeout=self._timeout) as conn:
                yield conn.cursor()
        except StoreError as exc:
            raise ServeStoreError(f"serve store {exc}", transient=exc.transient) from None


class PostgresServeStore(_SqlStore):
    """The store in a PostgreSQL database shared by several replicas (a connection per unit of work)."""

    _mark = "%s"
    _schema = (*_SCHEMA, *_PG_SCHEMA)
    _for_update = " FOR UPDATE"

    def __init__(
        self, url: SecretStr, *, connect_timeout: float = 5.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(clock)
        try:
            from psycopg import Error as PsycopgError
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise ConfigurationError(
                "BREAKGLASS_SERVE__DATABASE_URL is set, but psycopg is not installed: "
                "install breakglass[postgres]"
            ) from None
        self._url = url
        try:
            info = conninfo_to_dict(url.get_secret_value())
        except PsycopgError:
            raise ConfigurationError(
                "BREAKGLASS_SERVE__DATABASE_URL is not a PostgreSQL URL"
            ) from None
        self._where = (
            f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        )
        self._timeout = connect_timeout

    def __repr__(self) -> str:
        return f"PostgresServeStore({self._where!r})"

    @property
    def location(self) -> str:
        """``host:port/database``."""
        return self._where

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self._url.get_secret_value(), connect_timeout=max(1, round(self._timeout))
        )

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        import psycopg

        try:
            with self._connect() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            # psycopg's message can quote the connection string: keep only its class and first line.
            first = str(exc).splitlines()[0] if str(exc) else ""
            first = first.replace(self._url.get_secret_value(), "***")[:200]
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                first = self._explain_denied(first)
            raise ServeStoreError(
                f"serve store {self._where}: {type(exc).__name__}: {first}"
            ) from None

    def count_failure(self, client: str, limit: int, window: float) -> float | None:
        """Count a failed login by ``client`` for every replica (see :class:`FailureLimit`).

        One transaction holding a lock on ``client``: two replicas counting at once
        cannot both let the last failure below the limit through.
        """
        with self._work() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("serve-login:" + client,))
            # Expired rows go, and rows from the future too (a step back of the database's clock).
            cur.execute(
                "DELETE FROM serve_login_failures WHERE at < clock_timestamp() - make_interval(secs => %s) "
                "OR at > clock_timestamp() + interval '1 second'",
                (window,),
            )
            count, left = cur.execute(
                "SELECT count(*), EXTRACT(EPOCH FROM min(at) + make_interval(secs => %s) "
                "- clock_timestamp()) FROM serve_login_failures WHERE client = %s",
                (window, client),
            ).fetchone()
            if count >= limit:
                return max(1.0, min(float(window), float(left)))
            cur.execute(
                "INSERT INTO serve_login_failures VALUES (%s, clock_timestamp())", (client,)
            )
            return None

    def _explain_denied(self, first: str) -> str:
        """Name the table and privilege a missing grant is about (the server names only the table)."""
        import psycopg

        from breakglass.database.grants import SERVE_DB, explain, is_denied

        if not is_denied(first):
            return first
        try:
            with self._connect() as conn, conn.cursor() as cur:
                return explain(cur, first, SERVE_DB) or first
        except psycopg.Error:
            return first  # the server's own words will do

    def _absent(self, cur: Any) -> list[str]:
        rows = self._run(
            cur,
            "SELECT t FROM unnest(?::text[]) AS t WHERE to_regclass(t) IS NULL",
            (list(table_names(self._schema)),),
        ).fetchall()
        return [r[0] for r in rows]

    def _may_create(self, cur: Any) -> bool:
        row = self._run(cur, "SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()
        return bool(row[0])

    def grants_missing(self, components: Sequence[str]) -> str | None:
        """One line naming what the connected role lacks (see :mod:`breakglass.database.grants`)."""
        from breakglass.database.grants import SERVE_DB, missing, sentence, tables_of

        with self._work() as cur:
            return sentence(missing(cur, tables_of(components, SERVE_DB)))

    def grant(
        self, role: str, tables: Sequence[TableGrant], *, revoke: Sequence[TableGrant] = ()
    ) -> None:
        """Give ``role`` exactly the grants of ``tables``, nothing on ``revoke``.

        See :mod:`breakglass.database.grants`. Run by the owner, after the tables exist.
        """
        from breakglass.database.grants import grant_statements

        self.migrate()
        with self._tx() as cur:
            for statement in grant_statements(role, tables, revoke=revoke):
                cur.execute(statement)


def open_serve_store(
    path: Path, url: SecretStr | None, *, timeout: float = 5.0, clock: Clock = SYSTEM_CLOCK
) -> ServeStore:
    """PostgreSQL when ``url`` is set, else the SQLite file ``path``; nothing is opened yet."""
    if url is not None:
        return PostgresServeStore(url, connect_timeout=timeout, clock=clock)
    return SqliteServeStore(path, timeout=min(timeout, 2.0), clock=clock)
