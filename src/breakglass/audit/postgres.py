"""The audit store in PostgreSQL (``BREAKGLASS_AUDIT__DATABASE_URL``), through psycopg 3.

For several hosts that pull or export one history. Same tables as SQLite
(see :mod:`breakglass.audit.migrations`). Pages are written with ``COPY``
into a temporary table and moved over with ``ON CONFLICT DO NOTHING``, in one
transaction with their cursor. The URL is a secret: it may carry a password,
so only its host, port and database name ever appear in messages.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from breakglass.audit.codec import COLUMNS, StoredRecord
from breakglass.audit.migrations import (
    LATEST,
    VERSION_TABLE,
    VERSION_TABLE_POSTGRES,
    pending,
    refuse_newer,
)
from breakglass.audit.store import (
    AuditQuery,
    CursorUpdate,
    Problem,
    SaveResult,
    StoreStatus,
    conflict_problem,
    dedupe,
    disagreeing,
    summarise,
)
from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import AuditStoreError, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import psycopg
    from pydantic import SecretStr

logger = logging.getLogger("breakglass.audit")

SETTING = "BREAKGLASS_AUDIT__DATABASE_URL"
_STATEMENT_TIMEOUT_S = 60
_LOCK_SPACE = "breakglass.audit"


def _ms(column: str) -> str:
    # The same RFC 3339 text SQLite keeps, so both stores export identical bytes.
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


_SELECT_COLUMNS = ", ".join(_ms(c) if c in ("occurred_at", "pulled_at") else c for c in COLUMNS)
_ORDER = " ORDER BY occurred_at, id"


class PostgresAuditStore:
    """An :class:`breakglass.audit.store.AuditStore` in a PostgreSQL database.

    One connection per store object, opened on first use and reopened after a
    failure; calls from several threads take turns.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (or a libpq
            key=value string), held as a secret.
        connect_timeout: Seconds to wait for the server.
    """

    def __init__(self, url: SecretStr, *, connect_timeout: float = 5.0) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise ConfigurationError(
                f"{SETTING} is set, but psycopg is not installed: "
                "pip install 'breakglass[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._url = url
        try:
            info = conninfo_to_dict(url.get_secret_value())
        except psycopg.Error:
            # Never echo the value: it may hold a password.
            raise ConfigurationError(f"{SETTING} is not a valid PostgreSQL URL") from None
        host = str(info.get("host") or "localhost")
        port = str(info.get("port") or "5432")
        self._location = f"postgresql://{host}:{port}/{info.get('dbname') or ''}"
        self._secrets = [s for s in (url.get_secret_value(), str(info.get("password") or "")) if s]
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._staging = False
        self._ready = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"PostgresAuditStore({self._location!r})"

    @property
    def location(self) -> str:
        """``postgresql://host:port/dbname``, without user or password."""
        return self._location

    # ------------------------------------------------------------------ plumbing

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text

    def _fail(self, what: str, exc: BaseException) -> AuditStoreError:
        if isinstance(exc, self._psycopg.OperationalError | self._psycopg.InterfaceError):
            self._drop()
        transient = isinstance(exc, self._psycopg.errors.LockNotAvailable)
        return AuditStoreError(
            f"audit store {self._location}: {what}: {self._scrub(exc)}", transient=transient
        )

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._staging = False
        if conn is not None:
            try:
                conn.close()
            except self._psycopg.Error:
                logger.debug("closing a broken audit database connection failed", exc_info=True)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = self._psycopg.connect(
                self._url.get_secret_value(),
                autocommit=True,
                connect_timeout=max(1, math.ceil(self._connect_timeout)),
                application_name="breakglass-audit",
            )
            # Bound every wait: a hung server must not hang a pull or a bridge's recorder.
            conn.execute(f"SET statement_timeout = '{_STATEMENT_TIMEOUT_S}s'")
        except self._psycopg.Error as exc:
            # `from None`: the driver's own exception may carry connection details.
            raise AuditStoreError(
                f"cannot connect to the audit database {self._location} ({SETTING}): "
                f"{self._scrub(exc)}",
                transient=True,
            ) from None
        self._conn = conn
        self._staging = False
        return conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            if not self._ready:
                self.migrate()
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise self._fail("query failed", exc) from None

    def migrate(self) -> int:
        """Create or upgrade the schema under an advisory lock; return its version."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    # Several hosts may start at once: one migrates, the others wait for it.
                    cur.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext('migrate'))",
                        (_LOCK_SPACE,),
                    )
                    cur.execute(VERSION_TABLE_POSTGRES)
                    cur.execute(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")  # noqa: S608 -- a constant
                    row = cur.fetchone()
                    current = int(row[0]) if row else 0
                    refuse_newer(current, self._location)
                    for migration in pending(current):
                        for statement in migration.postgres:
                            cur.execute(statement)  # our own constants
                        cur.execute(
                            f"INSERT INTO {VERSION_TABLE} (version, description, applied_at)"  # noqa: S608 -- a constant
                            " VALUES (%s, %s, %s)",
                            (migration.version, migration.description, SYSTEM_CLOCK.now()),
                        )
            except AuditStoreError:
                self._drop()  # this store is unusable: do not keep a connection for it
                raise
            except self._psycopg.Error as exc:
                raise self._fail("migration failed", exc) from None
            self._ready = True
            return max(current, LATEST)

    # ------------------------------------------------------------------ writing

    def save(
        self,
        records: Sequence[StoredRecord],
        *,
        cursor: CursorUpdate | None = None,
        problems: Sequence[Problem] = (),
    ) -> SaveResult:
        """Store records, problems and the cursor in one transaction."""
        unique, conflicts = dedupe(records)
        with self._tx() as cur:
            inserted = 0
            if unique:
                if not self._staging:
                    cur.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS audit_staging"
                        " (LIKE audit_records) ON COMMIT DELETE ROWS"
                    )
                    self._staging = True
                with cur.copy(f"COPY audit_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for record in unique:
                        copy.write_row(record)
                cur.execute(
                    f"INSERT INTO audit_records ({', '.join(COLUMNS)})"  # noqa: S608 -- constants
                    f" SELECT {', '.join(COLUMNS)} FROM audit_staging"
                    " ON CONFLICT (id) DO NOTHING RETURNING id"
                )
                new = {row[0] for row in cur.fetchall()}
                inserted = len(new)
                old = [r for r in unique if r.id not in new]
                if old:
                    # Stored before (a re-run, another host a moment ago): same, or a conflict?
                    cur.execute(
                        "SELECT id, canonical FROM audit_records WHERE id = ANY(%s)",
                        ([r.id for r in old],),
                    )
                    conflicts += disagreeing(old, dict(cur.fetchall()))
            duplicates = len(records) - inserted - len(conflicts)
            rows = [(p.provider, p.flag_key, p.detail, p.detected_at) for p in problems]
            if conflicts:
                now = SYSTEM_CLOCK.now()
                flag_key = cursor.flag_key if cursor else records[0].flag_key
                rows += [
                    (records[0].provider, flag_key, conflict_problem(i), now) for i in conflicts
                ]
            if rows:
                cur.executemany(
                    "INSERT INTO audit_problems (provider, flag_key, detail, detected_at)"
                    " VALUES (%s, %s, %s, %s)",
                    rows,
                )
            if cursor is not None:
                cur.execute(
                    "INSERT INTO audit_cursors (provider, flag_key, cursor, updated_at)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (provider, flag_key) DO UPDATE SET"
                    " cursor = excluded.cursor, updated_at = excluded.updated_at",
                    (cursor.provider, cursor.flag_key, cursor.cursor, SYSTEM_CLOCK.now()),
                )
        return SaveResult(inserted=inserted, duplicates=duplicates, conflicts=conflicts)

    # ------------------------------------------------------------------ reading

    def get_cursor(self, provider: str, flag_key: str) -> str | None:
        """Where the next pull resumes."""
        with self._tx() as cur:
            cur.execute(
                "SELECT cursor FROM audit_cursors WHERE provider = %s AND flag_key = %s",
                (provider, flag_key),
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def _stream(self, sql: str, params: list[Any]) -> Iterator[Any]:
        # A server-side cursor: an export of millions of rows never sits in memory at once.
        with self._tx() as plain:
            conn = plain.connection
            try:
                with conn.cursor(name="breakglass_audit_export") as cur:
                    cur.itersize = 2000
                    cur.execute(sql, params)  # built from constants
                    yield from cur
            except self._psycopg.Error as exc:
                raise self._fail("export query failed", exc) from None

    def iter_canonical(self, query: AuditQuery) -> Iterator[bytes]:
        """Canonical JSON (UTF-8 bytes) of each matching record, in export order."""
        where, params = query.where("%s", "%s::timestamptz")
        # COPY in binary: rows stream as they are read, and the UTF-8 arrives as it is.
        sql = (
            f"COPY (SELECT convert_to(canonical, 'UTF8') FROM audit_records{where}{_ORDER})"  # noqa: S608 -- placeholders only
            " TO STDOUT (FORMAT BINARY)"
        )
        with self._lock:
            if not self._ready:
                self.migrate()
            try:
                with self._connection().cursor() as cur, cur.copy(sql, params) as copy:
                    copy.set_types(["bytea"])
                    for (data,) in copy.rows():
                        yield bytes(data)
            except self._psycopg.Error as exc:
                raise self._fail("export failed", exc) from None

    def iter_rows(self, query: AuditQuery) -> Iterator[StoredRecord]:
        """Each matching record's flat row, in export order."""
        where, params = query.where("%s", "%s::timestamptz")
        sql = f"SELECT {_SELECT_COLUMNS} FROM audit_records{where}{_ORDER}"  # noqa: S608 -- placeholders only
        for row in self._stream(sql, params):
            yield StoredRecord(*row)

    def count(self, query: AuditQuery) -> int:
        """How many records match."""
        where, params = query.where("%s", "%s::timestamptz")
        with self._tx() as cur:
            cur.execute(f"SELECT COUNT(*) FROM audit_records{where}", params)  # noqa: S608 -- placeholders only
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def status(self) -> StoreStatus:
        """Counts, times and cursors per provider and flag."""
        with self._tx() as cur:
            cur.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}")  # noqa: S608 -- a constant
            version_row = cur.fetchone()
            cur.execute(
                f"SELECT provider, flag_key, COUNT(*), {_ms('MIN(occurred_at)')},"  # noqa: S608 -- constants
                f" {_ms('MAX(occurred_at)')} FROM audit_records GROUP BY provider, flag_key"
            )
            groups = cur.fetchall()
            cur.execute("SELECT provider, flag_key, cursor FROM audit_cursors")
            cursors = {(p, f): c for p, f, c in cur.fetchall()}
            cur.execute("SELECT COUNT(*) FROM audit_problems")
            problems_row = cur.fetchone()
        version = int(version_row[0]) if version_row and version_row[0] is not None else 0
        problems = int(problems_row[0]) if problems_row else 0
        return summarise(self._location, version, groups, cursors, problems)

    def problems(self, provider: str | None = None) -> list[Problem]:
        """Recorded problems, oldest first."""
        sql = "SELECT provider, flag_key, detail, detected_at FROM audit_problems"
        params: tuple[str, ...] = ()
        if provider is not None:
            sql += " WHERE provider = %s"
            params = (provider,)
        with self._tx() as cur:
            cur.execute(sql + " ORDER BY seq", params)
            rows = cur.fetchall()
        return [Problem(p, f, d, t) for p, f, d, t in rows]

    @contextmanager
    def pull_lock(self, provider: str, flag_key: str) -> Iterator[None]:
        """A session advisory lock per provider and flag (a killed pull's lock dies with it)."""
        key = f"{provider}/{flag_key}"
        with self._lock:
            if not self._ready:
                self.migrate()
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))",
                        (_LOCK_SPACE, key),
                    )
                    .fetchone()
                )
            except self._psycopg.Error as exc:
                raise self._fail("cannot take the pull lock", exc) from None
            if not row or not row[0]:
                raise AuditStoreError(
                    f"another `breakglass audit pull` of {provider} ({flag_key}) is running "
                    f"against {self._location}"
                )
            try:
                yield
            finally:
                try:
                    self._connection().execute(
                        "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", (_LOCK_SPACE, key)
                    )
                except (self._psycopg.Error, AuditStoreError):
                    # A lost connection has released the lock already.
                    self._drop()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()
