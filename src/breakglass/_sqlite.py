"""Opening the embedded SQLite files, with errors that say which file and what to do."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING

from breakglass.errors import StoreError, StoreMissingError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextmanager
def connect(
    path: Path, *, timeout: float = 1.0, create: bool = True, write: bool = True
) -> Iterator[sqlite3.Connection]:
    """Open ``path`` for one unit of work; commit on success, roll back on error.

    Every :class:`sqlite3.Error` (and an unusable directory) becomes a
    :class:`StoreError` naming the file, so callers handle one error type; a
    lock held too long by another process is marked ``transient``. With
    ``create=False`` a missing file raises :class:`StoreMissingError`.
    One connection per unit of work keeps the store safe to use from any
    thread and from many processes at once.
    """
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise StoreMissingError(f"{path} does not exist")
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _is_busy(exc):
            raise StoreError(f"{path}: {exc}", transient=True) from exc
        raise StoreError(f"{path}: {exc} (move the file aside to start afresh)") from exc
    finally:
        conn.close()


def _is_busy(exc: sqlite3.Error) -> bool:
    # Another process holds a lock for longer than busy_timeout: the store is fine, just slow.
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )
