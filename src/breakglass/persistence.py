"""Durable last-known state: a halt survives a process restart.

The state store keeps, per provider and flag, the last *confirmed* decision
(a fresh ``true`` or ``false`` from a real source) in SQLite under the state
directory. At start-up :class:`breakglass.engine.StateEngine` loads it:

* a remembered ``false`` keeps the process halted until a source confirms ``true``;
* a remembered ``true`` is served only while younger than ``max_staleness`` on
  both the wall clock and the monotonic clock of the same boot
  (:func:`breakglass.state.remembered_deadline`), so a wall clock stepped back
  cannot make it fresh again.

A halt a source *confirmed* as a problem (flag missing, wrong type, unreadable,
reader stopped) is stored as ``false`` too. A vendor merely away (stale,
unconfirmed) is not knowledge and is not stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass._sqlite import connect
from breakglass.clock import isoformat_ms, parse_iso
from breakglass.errors import StoreError, StoreMissingError
from breakglass.state import Remembered

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_known (
    provider     TEXT NOT NULL,
    flag_key     TEXT NOT NULL,
    active       INTEGER NOT NULL CHECK (active IN (0, 1)),
    confirmed_at TEXT NOT NULL,
    source       TEXT NOT NULL,
    PRIMARY KEY (provider, flag_key)
)
"""

_SELECT = (
    "SELECT active, confirmed_at, source, confirmed_mono, boot_id FROM last_known"
    " WHERE provider = ? AND flag_key = ?"
)

# Added later: rows written before have NULLs there, and a remembered true without them is not served.
_COLUMNS = {"confirmed_mono": "REAL", "boot_id": "TEXT"}


def _migrate(conn: Any) -> None:
    conn.execute(_SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(last_known)")}
    for name, kind in _COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE last_known ADD COLUMN {name} {kind}")


class StateStore:
    """The last confirmed decision per provider and flag, in one SQLite file.

    Safe to share between threads and between processes on one host. Every
    method raises :class:`StoreError` when the file is corrupt or unwritable.
    """

    def __init__(
        self, path: Path, provider: str, flag_key: str, *, read_only: bool = False
    ) -> None:
        self.path = path
        self._provider = provider
        self._flag_key = flag_key
        self.read_only = read_only
        """For a command that only looks (``status``, ``watch``): the remembered decision is
        loaded, nothing is saved, and the file and its directory are neither created nor changed."""

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r}, provider={self._provider!r}, flag_key={self._flag_key!r})"

    def load(self) -> Remembered | None:
        """The remembered decision, or ``None`` when there is none."""
        if self.read_only:
            row = self._peek()
        else:
            with connect(self.path) as conn:
                _migrate(conn)
                row = conn.execute(_SELECT, (self._provider, self._flag_key)).fetchone()
        if row is None:
            return None
        active, confirmed_at, source, mono, boot = row
        if active not in (0, 1) or not isinstance(confirmed_at, str):
            raise StoreError(f"{self.path}: unreadable last-known state row")
        try:
            moment = parse_iso(confirmed_at)
        except ValueError as exc:
            raise StoreError(f"{self.path}: unreadable confirmation time") from exc
        return Remembered(
            active=bool(active),
            confirmed_at=moment,
            source=str(source),
            confirmed_mono=float(mono) if isinstance(mono, (int, float)) else None,
            boot_id=boot if isinstance(boot, str) else None,
        )

    def save(
        self,
        *,
        active: bool,
        confirmed_at: datetime,
        source: str,
        confirmed_mono: float | None = None,
        boot_id: str | None = None,
    ) -> None:
        """Remember a confirmed decision, with the monotonic time and boot it was confirmed in.

        A read-only store keeps nothing: whoever looks is not the one that remembers.
        """
        if self.read_only:
            return
        with connect(self.path) as conn:
            _migrate(conn)
            conn.execute(
                "INSERT INTO last_known"
                " (provider, flag_key, active, confirmed_at, source, confirmed_mono, boot_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, flag_key) DO UPDATE SET"
                " active = excluded.active, confirmed_at = excluded.confirmed_at,"
                " source = excluded.source, confirmed_mono = excluded.confirmed_mono,"
                " boot_id = excluded.boot_id",
                (
                    self._provider,
                    self._flag_key,
                    int(active),
                    isoformat_ms(confirmed_at),
                    source,
                    confirmed_mono,
                    boot_id,
                ),
            )

    def _peek(self) -> Any:
        """The row without migrating: columns an older file lacks read as NULL."""
        try:
            with connect(self.path, read_only=True) as conn:
                have = {row[1] for row in conn.execute("PRAGMA table_info(last_known)")}
                if not have:
                    return None
                wanted = ("active", "confirmed_at", "source", *_COLUMNS)
                columns = ", ".join(c if c in have else "NULL" for c in wanted)
                return conn.execute(
                    f"SELECT {columns} FROM last_known WHERE provider = ? AND flag_key = ?",  # noqa: S608 -- fixed names
                    (self._provider, self._flag_key),
                ).fetchone()
        except StoreMissingError:
            return None  # nothing was ever remembered here
