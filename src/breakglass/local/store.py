"""The local provider's store: flag values and their change log, in one SQLite file."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass._sqlite import FORK_GATE, connect
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import StoreError, StoreMissingError
from breakglass.observation import NoValue

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

logger = logging.getLogger("breakglass")

_SCHEMA = (
    # A random id per store file: change numbers restart when a file is recreated, ids must not.
    """CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(4))))""",
    """CREATE TABLE IF NOT EXISTS flags (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS changes (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        flag_key     TEXT NOT NULL,
        action       TEXT NOT NULL,
        value_before TEXT,
        value_after  TEXT,
        actor        TEXT NOT NULL,
        reason       TEXT NOT NULL,
        occurred_at  TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL
    )""",
)


@dataclass(frozen=True, slots=True)
class LocalChange:
    """One row of the local change log."""

    store_id: str
    seq: int
    flag_key: str
    action: str
    value_before: object
    value_after: object
    actor: str
    reason: str
    occurred_at: datetime
    host: str
    pid: int

    @property
    def change_id(self) -> str:
        """``<store_id>-<seq>``: unique across recreated store files."""
        return f"{self.store_id}-{self.seq}"

    def as_raw(self) -> dict[str, Any]:
        """The row as JSON-ready data (kept verbatim in audit records)."""
        return {
            "store_id": self.store_id,
            "seq": self.seq,
            "flag_key": self.flag_key,
            "action": self.action,
            "value_before": self.value_before,
            "value_after": self.value_after,
            "actor": self.actor,
            "reason": self.reason,
            "occurred_at": isoformat_ms(self.occurred_at),
            "host": self.host,
            "pid": self.pid,
        }


class LocalStore:
    """Flag values (stored as JSON, so a wrong type can be expressed) and their change log.

    Every method opens its own short transaction, so any thread and any process
    on the host may use the same file. Errors are :class:`StoreError`.
    """

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self._clock = clock

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    def read(self, key: str) -> object:
        """The flag's raw value, or :data:`NoValue.FLAG_MISSING` (also when the file does not exist)."""
        try:
            with connect(self.path, create=False, write=False) as conn:
                row = conn.execute(_READ, (key,)).fetchone()
        except StoreMissingError:
            return NoValue.FLAG_MISSING
        except StoreError as exc:
            if _no_schema(exc):
                return NoValue.FLAG_MISSING
            raise
        return NoValue.FLAG_MISSING if row is None else _decode(row[0])

    def reader(self) -> LocalReader:
        """A reader for one polling thread: it keeps its connection between reads."""
        return LocalReader(self.path)

    def write(self, key: str, value: object, *, actor: str, reason: str) -> LocalChange:
        """Set the flag to ``value`` and log the change; returns the log entry.

        The file never stays writable by group or others (a umask of 002 would
        let the guarded service's group un-halt it): only its owner may change it.
        """
        now = self._clock.now()
        with connect(self.path) as conn:
            _migrate(conn)
            row = conn.execute("SELECT value, version FROM flags WHERE key = ?", (key,)).fetchone()
            before = _decode(row[0]) if row else None
            action = "created" if row is None else _action(value)
            conn.execute(
                "INSERT INTO flags (key, value, version, updated_at) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " version = flags.version + 1, updated_at = excluded.updated_at",
                (key, json.dumps(value), isoformat_ms(now)),
            )
            change = self._log(conn, key, action, before, value, actor, reason, now)
        _owner_only_writes(self.path)
        return change

    def delete(self, key: str, *, actor: str, reason: str) -> LocalChange:
        """Remove the flag (it then reads as missing) and log the change."""
        now = self._clock.now()
        with connect(self.path) as conn:
            _migrate(conn)
            row = conn.execute("SELECT value FROM flags WHERE key = ?", (key,)).fetchone()
            conn.execute("DELETE FROM flags WHERE key = ?", (key,))
            before = _decode(row[0]) if row else None
            return self._log(conn, key, "deleted", before, None, actor, reason, now)

    def changes(self, key: str, *, after: int = 0, limit: int = 500) -> ChangePage:
        """Log entries for ``key`` with ``seq > after``, oldest first.

        A row that cannot be read is reported in :attr:`ChangePage.problems`
        (and the page's ``last_seq`` still moves past it), never raised: one bad
        row must not block every later pull.
        """
        try:
            with connect(self.path, create=False, write=False) as conn:
                store_id = _store_id(conn)
                rows = conn.execute(
                    "SELECT seq, flag_key, action, value_before, value_after, actor, reason,"
                    " occurred_at, host, pid FROM changes WHERE flag_key = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (key, after, limit),
                ).fetchall()
        except StoreMissingError:
            return ChangePage(store_id=None, changes=[], problems=[], last_seq=after)
        page = ChangePage(store_id=store_id, changes=[], problems=[], last_seq=after)
        for row in rows:
            page.last_seq = max(page.last_seq, int(row[0]))
            try:
                page.changes.append(_change(store_id, row))
            except (TypeError, ValueError) as exc:
                page.problems.append(f"change {store_id}-{row[0]}: unreadable row ({exc})")
        return page

    def store_id(self) -> str | None:
        """This store file's random id, or ``None`` when the file does not exist yet."""
        try:
            with connect(self.path, create=False, write=False) as conn:
                return _store_id(conn)
        except StoreMissingError:
            return None

    def _log(  # noqa: PLR0913 -- one column each
        self,
        conn: Any,
        key: str,
        action: str,
        before: object,
        after: object,
        actor: str,
        reason: str,
        now: datetime,
    ) -> LocalChange:
        host, pid = socket.gethostname(), os.getpid()
        store_id = _store_id(conn)
        cursor = conn.execute(
            "INSERT INTO changes (flag_key, action, value_before, value_after, actor, reason,"
            " occurred_at, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                action,
                None if before is None else json.dumps(before),
                None if after is None else json.dumps(after),
                actor,
                reason,
                isoformat_ms(now),
                host,
                pid,
            ),
        )
        return LocalChange(
            store_id,
            int(cursor.lastrowid),
            key,
            action,
            before,
            after,
            actor,
            reason,
            now,
            host,
            pid,
        )


_READ = "SELECT value FROM flags WHERE key = ?"


def _owner_only_writes(path: Path) -> None:
    """Drop the group and other write bits of ``path`` (never adds a permission)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o022:
            path.chmod(mode & ~0o022)
    except OSError as exc:
        # The value is written already: say so loudly, but do not turn a done halt into a failure.
        logger.warning("cannot drop group/other write permission of %s: %s", path, exc)


class LocalReader:
    """Reads one flag again and again over one kept connection (for a single polling thread).

    Opening a connection per read costs more than the read itself; a poll every
    20 ms in many processes adds up. The connection is reopened when the file
    is replaced (another inode) and after any error, so a corrupt, moved or
    recreated file is seen on the next read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    def read(self, key: str) -> object:
        """Like :meth:`LocalStore.read`."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            return NoValue.FLAG_MISSING
        except OSError as exc:
            self.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        identity = (stat.st_dev, stat.st_ino)
        with FORK_GATE.unit():
            return self._read(key, identity)

    def _read(self, key: str, identity: tuple[int, int]) -> object:
        try:
            if self._conn is None or identity != self._identity:
                self.close()
                # mode=rw: never create the file, but allow rolling back a crashed writer's journal
                # (SQLite opens a file this process may not write read-only: the separated layout).
                self._conn = sqlite3.connect(
                    f"file:{self.path}?mode=rw",
                    uri=True,
                    timeout=1.0,
                    isolation_level=None,
                    check_same_thread=False,  # one thread at a time; closing may come from another
                )
                self._identity = identity
            row = self._conn.execute(_READ, (key,)).fetchone()
        except sqlite3.Error as exc:
            self.close()
            if "no such table" in str(exc):
                return NoValue.FLAG_MISSING  # a first write is creating the schema right now
            transient = isinstance(exc, sqlite3.OperationalError) and (
                "locked" in str(exc) or "busy" in str(exc)
            )
            hint = "" if transient else " (move the file aside to start afresh)"
            raise StoreError(f"{self.path}: {exc}{hint}", transient=transient) from exc
        return NoValue.FLAG_MISSING if row is None else _decode(row[0])

    def close(self) -> None:
        """Drop the kept connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._identity = None


def _no_schema(exc: StoreError) -> bool:
    return "no such table" in str(exc)


@dataclass(slots=True)
class ChangePage:
    """What :meth:`LocalStore.changes` read: the changes, the unreadable rows, and how far it got."""

    store_id: str | None
    changes: list[LocalChange]
    problems: list[str]
    last_seq: int


def _store_id(conn: Any) -> str:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    except sqlite3.OperationalError:
        row = None  # a store written before the meta table existed
    return str(row[0]) if row else "0"


def _change(store_id: str, row: tuple[Any, ...]) -> LocalChange:
    return LocalChange(
        store_id=store_id,
        seq=int(row[0]),
        flag_key=str(row[1]),
        action=str(row[2]),
        value_before=_decode(row[3]) if row[3] is not None else None,
        value_after=_decode(row[4]) if row[4] is not None else None,
        actor=str(row[5]),
        reason=str(row[6]),
        occurred_at=parse_iso(row[7]),
        host=str(row[8]),
        pid=int(row[9]),
    )


def _migrate(conn: Any) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


def _decode(text: str) -> object:
    # A value that is not JSON is a wrong type, never a crash: it reads as halted.
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _action(value: object) -> str:
    if value is True:
        return "enabled"
    if value is False:
        return "disabled"
    return "updated"
