"""Opening the embedded SQLite files, with errors that say which file and what to do."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from breakglass import forking
from breakglass.errors import StoreError, StoreMissingError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


_FORK_WAIT = 2.0
"""Seconds fork() waits for SQLite work in flight before it goes ahead anyway."""


class _ForkGate:
    """Keeps ``fork()`` out of the middle of an SQLite unit of work.

    SQLite keeps its file locks' bookkeeping per process. A child forked while a
    parent thread was inside a transaction inherits that bookkeeping but not the
    thread that would end it: every connection the child opens on that file then
    reads "database is locked" for ever (a halted child that never recovers). So
    ``fork()`` waits, bounded, until no unit of work is in flight, and holds new
    ones back until it returns.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._forking = False

    @contextmanager
    def unit(self) -> Iterator[None]:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                if self._busy == 0:
                    self._cond.notify_all()

    def before(self) -> None:
        self._cond.acquire()
        self._forking = True
        deadline = time.monotonic() + _FORK_WAIT
        while self._busy and (remaining := deadline - time.monotonic()) > 0:
            self._cond.wait(remaining)
        # Held across fork(): nothing can start a unit of work until the fork is done.

    def after_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_in_child(self) -> None:
        # The units of the parent's other threads do not exist here.
        self._cond = threading.Condition()
        self._busy = 0
        self._forking = False


FORK_GATE = _ForkGate()
"""Every unit of SQLite work in breakglass runs inside ``FORK_GATE.unit()``."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=FORK_GATE.before, after_in_parent=FORK_GATE.after_in_parent)
# In the child, the gate opens before any object restarts its readers (which read SQLite).
forking.in_child(FORK_GATE.after_in_child)


@contextmanager
def connect(
    path: Path,
    *,
    timeout: float = 1.0,
    create: bool = True,
    write: bool = True,
    read_only: bool = False,
) -> Iterator[sqlite3.Connection]:
    """Open ``path`` for one unit of work; commit on success, roll back on error.

    Every :class:`sqlite3.Error` (and an unusable directory) becomes a
    :class:`StoreError` naming the file, so callers handle one error type; a
    lock held too long by another process is marked ``transient``. With
    ``create=False`` a missing file raises :class:`StoreMissingError`.
    ``read_only=True`` opens the file in SQLite's read-only mode (it must exist,
    and nothing, not even a directory, is created or written).
    One connection per unit of work keeps the store safe to use from any
    thread and from many processes at once.
    """
    with (
        FORK_GATE.unit(),
        _connect(
            path,
            timeout=timeout,
            create=create and not read_only,
            write=write and not read_only,
            read_only=read_only,
        ) as conn,
    ):
        yield conn


@contextmanager
def _connect(
    path: Path, *, timeout: float, create: bool, write: bool, read_only: bool
) -> Iterator[sqlite3.Connection]:
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise StoreMissingError(f"{path} does not exist")
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)
        else:
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
