"""The audit store in PostgreSQL (``BREAKGLASS_AUDIT__DATABASE_URL``), through psycopg 3.

For several hosts that pull or export one history. Same tables as SQLite
(see :mod:`breakglass.audit.migrations`). A page's records not stored yet
are written with ``COPY``, in one transaction with their cursor. The URL is a secret: it may carry a password,
so only its host, port and database name ever appear in messages.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any, cast

from breakglass.audit.codec import COLUMNS, StoredRecord, column_text
from breakglass.audit.migrations import (
    LATEST,
    VERSION_TABLE,
    VERSION_TABLE_POSTGRES,
    pending,
    refuse_newer,
)
from breakglass.audit.store import (
    CHAIN_COLUMNS,
    AuditQuery,
    CursorUpdate,
    ExportEntry,
    Problem,
    SaveResult,
    StoreStatus,
    check_previous_export,
    conflict_problem,
    dedupe,
    disagreeing,
    link,
    linked_rows,
    summarise,
)
from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import AuditStoreError, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Sequence

    import psycopg
    from pydantic import SecretStr

    from breakglass.database.grants import TableGrant

logger = logging.getLogger("breakglass.audit")

SETTING = "BREAKGLASS_AUDIT__DATABASE_URL"
_STATEMENT_TIMEOUT_S = 60
_LOCK_SPACE = "breakglass.audit"


def _ms(column: str) -> str:
    # The same RFC 3339 text SQLite keeps, so both stores export identical bytes.
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


_COPY_IN = f"COPY audit_records ({', '.join((*COLUMNS, *CHAIN_COLUMNS))}) FROM STDIN"
_HEAD = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
_HEAD_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM audit_records"
_SELECT_COLUMNS = ", ".join(_ms(c) if c in ("occurred_at", "pulled_at") else c for c in COLUMNS)
# Keyset batches in export order: the key's exact time as text (no rounding through Python).
# Ordered by the table's columns, qualified: a bare name would sort by an output column of that name.
_AFTER_KEY = (
    ", occurred_at::text AS key_time, id AS key_id FROM audit_records{} seq <= %s"
    " AND (occurred_at, id) > (%s::timestamptz, %s)"
    " ORDER BY audit_records.occurred_at, audit_records.id LIMIT %s"
)
_FIRST_KEY = ("-infinity", "")


class PostgresAuditStore:
    """An :class:`breakglass.audit.store.AuditStore` in a PostgreSQL database.

    One connection per store object, opened on first use and reopened after a
    failure; calls from several threads take turns.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (or a libpq
            key=value string), held as a secret.
        connect_timeout: Seconds to wait for the server.
        batch: Records per statement when reading many (an export, a check of
            the store): each batch must end well within the statement timeout.
    """

    def __init__(
        self, url: SecretStr, *, connect_timeout: float = 5.0, batch: int = 10_000
    ) -> None:
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
        self._ready = False
        self._lock = threading.RLock()
        # Streams come in chunks from libpq 17 on; an older libpq sends them a row at a time.
        self._chunk = 2000 if psycopg.capabilities.has_stream_chunked() else 1
        self._batch = batch

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
        detail = self._scrub(exc)
        if isinstance(exc, self._psycopg.errors.InsufficientPrivilege):
            detail = self._explain_denied(detail)
        return AuditStoreError(
            f"audit store {self._location}: {what}: {detail}", transient=transient
        )

    def _explain_denied(self, detail: str) -> str:
        """Name the table and privilege a missing grant is about (the server names only the table)."""
        from breakglass.database.grants import AUDIT_DB, explain, is_denied

        conn = self._conn
        if not is_denied(detail) or conn is None or conn.closed:
            return detail  # an append-only trigger's refusal says what it refused itself
        try:
            with conn.cursor() as cur:
                return explain(cur, detail, AUDIT_DB) or detail
        except self._psycopg.Error:
            return detail  # the connection is mid-transaction or gone: the server's words will do

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
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
            # Binary results carry text in the client encoding: UTF-8, so the bytes are the evidence's.
            conn.execute("SET client_encoding = 'UTF8'")
        except self._psycopg.Error as exc:
            # `from None`: the driver's own exception may carry connection details.
            raise AuditStoreError(
                f"cannot connect to the audit database {self._location} ({SETTING}): "
                f"{self._scrub(exc)}",
                transient=True,
            ) from None
        self._conn = conn
        return conn

    def _schema_version(self) -> int:
        conn = self._connection()
        try:
            row = conn.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608 -- a constant
        except self._psycopg.errors.UndefinedTable:
            return 0
        except self._psycopg.Error as exc:
            raise self._fail("cannot read the schema version", exc) from None
        current = int(row[0]) if row and row[0] is not None else 0
        refuse_newer(current, self._location)
        return current

    @contextmanager
    def _tx(self, what: str = "query failed") -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            if not self._ready:
                self.migrate()
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise self._fail(what, exc) from None

    def migrate(self) -> int:
        """Create or upgrade the schema under an advisory lock; return its version.

        A schema that is current is only read (SELECT), so a writer role without
        any right to create or alter tables can call this.
        """
        with self._lock:
            try:
                if self._schema_version() == LATEST:
                    self._ready = True
                    return LATEST
            except AuditStoreError:
                self._drop()
                raise
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
                        if migration.chain:
                            _chain_existing(cur)
                        for statement in migration.postgres_after:
                            cur.execute(statement)
                        cur.execute(
                            f"INSERT INTO {VERSION_TABLE} (version, description, applied_at)"  # noqa: S608 -- a constant
                            " VALUES (%s, %s, %s)",
                            (migration.version, migration.description, SYSTEM_CLOCK.now()),
                        )
            except AuditStoreError:
                self._drop()  # this store is unusable: do not keep a connection for it
                raise
            except self._psycopg.errors.InsufficientPrivilege as exc:
                raise self._fail(
                    "the schema is missing or old, and this role may not create it "
                    "(run `breakglass audit migrate` once as the database owner)",
                    exc,
                ) from None
            except self._psycopg.Error as exc:
                raise self._fail("migration failed", exc) from None
            self._ready = True
            return max(current, LATEST)

    def grant_writer(self, role: str) -> None:
        """Grant ``role`` what pulling, recording and exporting need: no UPDATE, DELETE or DDL.

        Records, problems and the export log: SELECT and INSERT; cursors also
        UPDATE of the cursor and its time (a cursor moves); the schema version:
        SELECT. Run by the owner, after :meth:`migrate`.
        """
        from breakglass.database.grants import tables_of

        self.grant(role, tables_of(["audit"]))

    def grant(
        self, role: str, tables: Sequence[TableGrant], *, revoke: Sequence[TableGrant] = ()
    ) -> None:
        """Give ``role`` exactly the grants of ``tables``, nothing on ``revoke``.

        See :mod:`breakglass.database.grants`. Run by the owner, after the tables exist.
        """
        from breakglass.database.grants import grant_statements

        with self._tx() as cur:
            for statement in grant_statements(role, tables, revoke=revoke):
                cur.execute(statement)

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
                # One writer at a time extends the chain (the lock ends with the transaction).
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext('chain'))",
                    (_LOCK_SPACE,),
                )
                # Stored before (a re-run, another host a moment ago)? Then same, or a conflict.
                cur.execute(
                    "SELECT id, canonical FROM audit_records WHERE id = ANY(%s)",
                    ([r.id for r in unique],),
                )
                stored = dict(cur.fetchall())
                new = [r for r in unique if r.id not in stored]
                if len(new) < len(unique):
                    conflicts += disagreeing([r for r in unique if r.id in stored], stored)
                if new:
                    cur.execute(_HEAD)
                    head = cur.fetchone()
                    rows = linked_rows(new, None if head is None else (head[0], head[1].encode()))
                    with cur.copy(_COPY_IN) as copy:
                        for row in rows:
                            copy.write_row(row)
                inserted = len(new)
            duplicates = len(records) - inserted - len(conflicts)
            rows = [
                (
                    column_text(p.provider),
                    column_text(p.flag_key),
                    column_text(p.detail),
                    p.detected_at,
                )
                for p in problems
            ]
            if conflicts:
                now = SYSTEM_CLOCK.now()
                flag_key = cursor.flag_key if cursor else records[0].flag_key
                rows += [
                    (records[0].provider, flag_key, column_text(conflict_problem(i)), now)
                    for i in conflicts
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
                    (
                        cursor.provider,
                        cursor.flag_key,
                        column_text(cursor.cursor),
                        SYSTEM_CLOCK.now(),
                    ),
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

    def _head_seq(self) -> int:
        with self._tx("reading the records failed") as cur:
            cur.execute(_HEAD_SEQ)
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def _batches(
        self,
        sql: str,
        params: Sequence[Any],
        key: Callable[[tuple[Any, ...]], tuple[Any, ...]],
        first: tuple[Any, ...],
        *,
        as_bytes: bool = True,
    ) -> Generator[tuple[Any, ...]]:
        """The rows of a keyset query, a batch per statement, each streamed a chunk at a time.

        One statement over millions of records outlasts the statement timeout
        and is cancelled; a batch of :attr:`_batch` rows ends well within it.
        Streaming (not ``COPY``: psycopg builds each chunk's rows in C) keeps
        memory to a chunk. Sorting is off, so each batch reads its ``ORDER BY``'s
        index from the key on (without statistics, on a fresh store, the planner
        would sort the whole table for every batch).

        Args:
            sql: One ``SELECT`` whose placeholders are ``params``, then the key's
                columns (rows after the key), then the ``LIMIT``.
            params: The parameters before the key.
            key: The key of a row: the next batch starts after the last row's.
            first: A key before every row.
            as_bytes: Load text as the stored UTF-8 bytes, without decoding.
        """
        from psycopg.types.string import ByteaBinaryLoader

        after = first
        while True:
            count, last = 0, None
            with self._tx("reading the records failed") as cur:
                # No JIT either: sorting off makes some estimates huge, and compiling
                # would cost each batch more than reading it.
                cur.execute(
                    "SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)"
                )
                if as_bytes:
                    # Binary text is the stored bytes in the client encoding (UTF-8): load
                    # it as bytea is loaded. Registered on this cursor only.
                    cur.adapters.register_loader("text", ByteaBinaryLoader)
                batch = [*params, *after, self._batch]
                # closing: a reader that stops early ends the statement before the transaction.
                rows = cur.stream(sql, batch, binary=True, size=self._chunk)
                with closing(cast("Generator[tuple[Any, ...]]", rows)):
                    for last in rows:
                        count += 1
                        yield last
            if count < self._batch or last is None:
                return
            after = key(last)

    def _by_time(
        self, select: str, query: AuditQuery, through: int | None, *, as_bytes: bool
    ) -> Generator[tuple[Any, ...]]:
        """The matching records (``select``'s columns, then the key's two), in export order.

        Only records up to ``through`` (the head now when ``None``): what is
        appended meanwhile is for the next reader, never half included.
        """
        if through is None:
            through = self._head_seq()
        where, params = query.where("%s", "%s::timestamptz")
        sql = f"SELECT {select}{_AFTER_KEY.format(where + ' AND' if where else ' WHERE')}"

        def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(v.decode() if isinstance(v, bytes) else v for v in row[-2:])

        return self._batches(sql, [*params, through], key, _FIRST_KEY, as_bytes=as_bytes)

    def iter_canonical(self, query: AuditQuery, *, through: int | None = None) -> Iterator[bytes]:
        """Canonical JSON (UTF-8 bytes) of each matching record, in export order."""
        with closing(self._by_time("canonical", query, through, as_bytes=True)) as rows:
            for row in rows:
                yield row[0]

    def iter_rows(self, query: AuditQuery) -> Iterator[StoredRecord]:
        """Each matching record's flat row, in export order."""
        with closing(self._by_time(_SELECT_COLUMNS, query, None, as_bytes=False)) as rows:
            for row in rows:
                yield StoredRecord(*row[:-2])

    def iter_chain(self, *, with_columns: bool = False) -> Iterator[tuple[Any, ...]]:
        """Every record in insert order (see the protocol), up to the head when reading starts.

        Consistent by a high-water mark rather than one REPEATABLE READ
        transaction: each batch is a short transaction of its own, so no snapshot
        is held (keeping vacuum back) and no connection taken from the recorder
        for the length of an export. It is exact because the chain is append-only
        and a record's ``seq`` is given under the chain lock and committed before
        the lock is released: every record up to the head read first is already
        committed, and later records all lie above it. Changes that go around the
        append-only triggers are what walking the chain finds.
        """
        extra = (
            f", id, provider, flag_key, environment, {_ms('occurred_at')}" if with_columns else ""
        )
        sql = (
            f"SELECT seq, prev_hash, hash, canonical{extra} FROM audit_records"  # noqa: S608 -- constants only
            " WHERE seq <= %s AND seq > %s ORDER BY seq LIMIT %s"
        )
        rows = self._batches(sql, [self._head_seq()], lambda row: (row[0],), (0,))
        if not with_columns:
            yield from rows
            return
        with closing(rows):
            for row in rows:
                yield (*row[:4], *(None if v is None else v.decode() for v in row[4:]))

    def record_export(
        self,
        export_hash: str,
        exported_at: str,
        manifest: str,
        signature: str | None,
        *,
        previous: str | None,
    ) -> int:
        """Add an export to the export log; return its number."""
        with self._tx() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext('exports'))", (_LOCK_SPACE,)
            )
            cur.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_exports")
            row = cur.fetchone()
            seq = int(row[0]) if row else 1
            cur.execute("SELECT export_hash FROM audit_exports ORDER BY seq DESC LIMIT 1")
            last = cur.fetchone()
            check_previous_export(previous, None if last is None else str(last[0]))
            cur.execute(
                "INSERT INTO audit_exports (seq, export_hash, exported_at, manifest, signature)"
                " VALUES (%s, %s, %s::timestamptz, %s, %s)",
                (seq, export_hash, exported_at, manifest, signature),
            )
        return seq

    def exports(self) -> list[ExportEntry]:
        """The export log, oldest first."""
        with self._tx() as cur:
            cur.execute(
                f"SELECT seq, export_hash, {_ms('exported_at')}, manifest, signature"  # noqa: S608 -- constants
                " FROM audit_exports ORDER BY seq"
            )
            rows = cur.fetchall()
        return [ExportEntry(int(q), h, t, m, sig) for q, h, t, m, sig in rows]

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


def _chain_existing(cur: psycopg.Cursor[Any]) -> None:
    """Link the records stored before the chain existed (their insert order is unknown: time order)."""
    cur.execute("SELECT id, canonical FROM audit_records ORDER BY occurred_at, id")
    old = cur.fetchall()
    links = link((c for _, c in old), None)
    cur.executemany(
        "UPDATE audit_records SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s",
        [(*chain, record_id) for chain, (record_id, _) in zip(links, old, strict=True)],
    )
