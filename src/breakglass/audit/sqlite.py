"""The audit store in one SQLite file (``<state_dir>/audit.db`` by default).

The file runs in WAL mode, so an export reads a consistent snapshot while a
pull or a bridge process writes. Every write is one ``BEGIN IMMEDIATE``
transaction: a process killed mid-way leaves the file as it was before it.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from breakglass._sqlite import FORK_GATE
from breakglass.audit.codec import COLUMNS, StoredRecord, column_text
from breakglass.audit.migrations import (
    LATEST,
    VERSION_TABLE,
    VERSION_TABLE_SQLITE,
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
from breakglass.clock import SYSTEM_CLOCK, isoformat_ms, parse_iso
from breakglass.errors import AuditStoreError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

fcntl: Any
try:  # POSIX only; elsewhere two pulls at once merely waste requests.
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms we test
    fcntl = None

# No ON CONFLICT: which records are new is settled first, inside the same write lock,
# so a clash here is a bug to surface, never a chained row silently left out.
_INSERT = (
    f"INSERT INTO audit_records ({', '.join((*COLUMNS, *CHAIN_COLUMNS))})"  # noqa: S608 -- constants only
    f" VALUES ({', '.join('?' * (len(COLUMNS) + len(CHAIN_COLUMNS)))})"
)
_HEAD = "SELECT seq, hash FROM audit_records WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
_CHAIN = "SELECT seq, prev_hash, hash, canonical{} FROM audit_records ORDER BY seq"
_LAST_EXPORT = "SELECT export_hash FROM audit_exports ORDER BY seq DESC LIMIT 1"
_CHAIN_EXTRA = ", id, provider, flag_key, environment, occurred_at"
_SELECT_ROWS = f"SELECT {', '.join(COLUMNS)} FROM audit_records"  # noqa: S608 -- constants only
_ORDER = " ORDER BY occurred_at, id"
# Well below SQLite's limit on host parameters in one statement.
_ID_CHUNK = 500


class SqliteAuditStore:
    """An :class:`breakglass.audit.store.AuditStore` in a SQLite file.

    Safe to share between threads (each thread has its own connection) and
    between processes on one host. Call :meth:`close` when done.

    Args:
        path: The database file; created with its directory on first use.
        timeout: Seconds to wait for a lock another process holds.
    """

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self.path = path
        self._timeout = timeout
        self._ready = False
        # One connection per thread, kept open: closing the last connection of a WAL
        # file checkpoints it, which would otherwise cost a few milliseconds per page.
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteAuditStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The file's path."""
        return str(self.path)

    # ------------------------------------------------------------------ plumbing

    def _new_connection(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except (OSError, sqlite3.Error) as exc:
            raise AuditStoreError(f"cannot open audit store {self.path}: {exc}") from exc
        with self._open_lock:
            self._open.append(conn)
        return conn

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_connection()
            self._local.conn = conn
        return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._open_lock:
            if conn in self._open:
                self._open.remove(conn)
        with suppress(sqlite3.Error):
            conn.close()

    def _error(self, exc: sqlite3.Error) -> AuditStoreError:
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            # Another process held a lock past the timeout: the store is fine, just busy.
            return AuditStoreError(f"audit store {self.path}: {exc}", transient=True)
        return AuditStoreError(f"audit store {self.path}: {exc}")

    @contextmanager
    def _tx(
        self,
        *,
        write: bool = True,
        conn: sqlite3.Connection | None = None,
        refetchable: bool = False,
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back when it raises.

        ``refetchable``: the transaction stores a pulled page with its cursor. A
        power cut may then lose it (never corrupt the file), and it loses the
        cursor with it, so the next pull fetches the page again: no fsync needed.
        Everything else (the bridge's own records exist nowhere else) is synced.
        """
        with FORK_GATE.unit():
            yield from self._tx_body(write=write, conn=conn, refetchable=refetchable)

    def _tx_body(
        self, *, write: bool, conn: sqlite3.Connection | None, refetchable: bool
    ) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._migrate()
        conn = conn or self._connection()
        try:
            if write:
                conn.execute(f"PRAGMA synchronous = {'NORMAL' if refetchable else 'FULL'}")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            self._forget(conn)
            raise self._error(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._forget(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own for a long read, so the caller may write meanwhile."""
        conn = self._new_connection()
        try:
            with self._tx(write=False, conn=conn):
                yield conn
        finally:
            self._forget(conn)

    def migrate(self) -> int:
        """Create or upgrade the schema (and switch the file to WAL); return its version."""
        # A unit of SQLite work like any other: a fork() in the middle would leave the child
        # SQLite's locks held by a thread it does not have (its first read would hang).
        with FORK_GATE.unit():
            return self._migrate()

    def _migrate(self) -> int:
        conn = self._connection()
        try:
            # WAL lets an export read while a pull writes; it is a property of the file.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(VERSION_TABLE_SQLITE)
                (current,) = conn.execute(
                    f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}"  # noqa: S608 -- a constant
                ).fetchone()
                refuse_newer(current, str(self.path))
                for migration in pending(current):
                    for statement in migration.sqlite:
                        conn.execute(statement)
                    if migration.chain:
                        _chain_existing(conn)
                    for statement in migration.sqlite_after:
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {VERSION_TABLE} (version, description, applied_at)"  # noqa: S608 -- a constant
                        " VALUES (?, ?, ?)",
                        (migration.version, migration.description, _now()),
                    )
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            self._forget(conn)
            raise AuditStoreError(
                f"cannot open audit store {self.path}: {exc} (move the file aside to start afresh)"
            ) from exc
        self._ready = True
        return max(int(current), LATEST)

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
        with self._tx(refetchable=cursor is not None) as conn:
            # Stored before (a re-run, overlapping pages)? Then same, or a conflict.
            stored = _existing(conn, [r.id for r in unique])
            new = [r for r in unique if r.id not in stored]
            if len(new) < len(unique):
                conflicts += disagreeing([r for r in unique if r.id in stored], stored)
            if new:
                conn.executemany(_INSERT, linked_rows(new, _head(conn)))
            inserted = len(new)
            duplicates = len(records) - inserted - len(conflicts)
            rows = [
                (p.provider, p.flag_key, column_text(p.detail), isoformat_ms(p.detected_at))
                for p in problems
            ]
            if conflicts:
                now = _now()
                provider = records[0].provider
                flag_key = cursor.flag_key if cursor else records[0].flag_key
                rows += [(provider, flag_key, conflict_problem(i), now) for i in conflicts]
            if rows:
                conn.executemany(
                    "INSERT INTO audit_problems (provider, flag_key, detail, detected_at)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
            if cursor is not None:
                conn.execute(
                    "INSERT INTO audit_cursors (provider, flag_key, cursor, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (provider, flag_key) DO UPDATE SET"
                    " cursor = excluded.cursor, updated_at = excluded.updated_at",
                    (cursor.provider, cursor.flag_key, column_text(cursor.cursor), _now()),
                )
        return SaveResult(inserted=inserted, duplicates=duplicates, conflicts=conflicts)

    # ------------------------------------------------------------------ reading

    def get_cursor(self, provider: str, flag_key: str) -> str | None:
        """Where the next pull resumes."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT cursor FROM audit_cursors WHERE provider = ? AND flag_key = ?",
                (provider, flag_key),
            ).fetchone()
        return None if row is None else str(row[0])

    def iter_canonical(self, query: AuditQuery, *, through: int | None = None) -> Iterator[bytes]:
        """Canonical JSON (UTF-8 bytes) of each matching record, in export order."""
        where, params = query.where("?")
        if through is not None:
            where += f"{' AND' if where else ' WHERE'} seq <= ?"
            params.append(through)
        sql = f"SELECT canonical FROM audit_records{where}{_ORDER}"  # noqa: S608 -- placeholders only
        with self._reader() as conn:
            # The stored UTF-8 as it is: no decoding here and encoding again for the hash.
            conn.text_factory = bytes
            for (text,) in conn.execute(sql, params):
                yield text

    def iter_rows(self, query: AuditQuery) -> Iterator[StoredRecord]:
        """Each matching record's flat row, in export order."""
        where, params = query.where("?")
        with self._reader() as conn:
            for row in conn.execute(_SELECT_ROWS + where + _ORDER, params):
                yield _row(row)

    def iter_chain(self, *, with_columns: bool = False) -> Iterator[tuple[Any, ...]]:
        """Every record in insert order (see the protocol)."""
        sql = _CHAIN.format(_CHAIN_EXTRA if with_columns else "")
        with self._reader() as conn:
            conn.text_factory = bytes
            if not with_columns:
                yield from conn.execute(sql)
                return
            for row in conn.execute(sql):
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
        with self._tx() as conn:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_exports").fetchone()
            last = conn.execute(_LAST_EXPORT).fetchone()
            check_previous_export(previous, None if last is None else str(last[0]))
            conn.execute(
                "INSERT INTO audit_exports (seq, export_hash, exported_at, manifest, signature)"
                " VALUES (?, ?, ?, ?, ?)",
                (seq, export_hash, exported_at, manifest, signature),
            )
        return int(seq)

    def exports(self) -> list[ExportEntry]:
        """The export log, oldest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT seq, export_hash, exported_at, manifest, signature FROM audit_exports"
                " ORDER BY seq"
            ).fetchall()
        return [ExportEntry(*row) for row in rows]

    def count(self, query: AuditQuery) -> int:
        """How many records match."""
        where, params = query.where("?")
        with self._tx(write=False) as conn:
            (n,) = conn.execute(f"SELECT COUNT(*) FROM audit_records{where}", params).fetchone()  # noqa: S608 -- placeholders only
        return int(n)

    def status(self) -> StoreStatus:
        """Counts, times and cursors per provider and flag."""
        with self._tx(write=False) as conn:
            (version,) = conn.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608 -- a constant
            groups = conn.execute(
                "SELECT provider, flag_key, COUNT(*), MIN(occurred_at), MAX(occurred_at)"
                " FROM audit_records GROUP BY provider, flag_key"
            ).fetchall()
            cursors = {
                (p, f): c
                for p, f, c in conn.execute("SELECT provider, flag_key, cursor FROM audit_cursors")
            }
            (problems,) = conn.execute("SELECT COUNT(*) FROM audit_problems").fetchone()
        return summarise(self.location, int(version), groups, cursors, int(problems))

    def problems(self, provider: str | None = None) -> list[Problem]:
        """Recorded problems, oldest first."""
        sql = "SELECT provider, flag_key, detail, detected_at FROM audit_problems"
        params: tuple[str, ...] = ()
        if provider is not None:
            sql += " WHERE provider = ?"
            params = (provider,)
        with self._tx(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [Problem(p, f, d, parse_iso(t)) for p, f, d, t in rows]

    @contextmanager
    def pull_lock(self, provider: str, flag_key: str) -> Iterator[None]:
        """One pull at a time per file (a kernel lock: a killed pull releases it)."""
        del provider, flag_key  # pulls on one host are few; one lock per file is enough
        if fcntl is None:  # pragma: no cover
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".pull.lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a")
        except OSError as exc:
            raise AuditStoreError(f"cannot open {lock_path}: {exc}") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise AuditStoreError(
                    f"another `breakglass audit pull` is running on {self.path}"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close every connection this store opened (it reopens on next use)."""
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


def _now() -> str:
    return isoformat_ms(SYSTEM_CLOCK.now())


def _existing(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT id, canonical FROM audit_records WHERE id IN ({marks})"  # noqa: S608 -- placeholders only
        found.update(conn.execute(sql, chunk).fetchall())
    return found


def _head(conn: sqlite3.Connection) -> tuple[int, bytes] | None:
    row = conn.execute(_HEAD).fetchone()
    return None if row is None else (int(row[0]), str(row[1]).encode())


def _chain_existing(conn: sqlite3.Connection) -> None:
    """Link the records stored before the chain existed, in the order they were stored."""
    old = conn.execute("SELECT rowid, canonical FROM audit_records ORDER BY rowid").fetchall()
    links = link((c for _, c in old), None)
    conn.executemany(
        "UPDATE audit_records SET seq = ?, prev_hash = ?, hash = ? WHERE rowid = ?",
        [(*chain, rowid) for chain, (rowid, _) in zip(links, old, strict=True)],
    )


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _row(row: Any) -> StoredRecord:
    values = list(row)
    values[8] = _bool(values[8])
    values[9] = _bool(values[9])
    return StoredRecord(*values)
