"""A local, durable waiting room for the bridge's own records while the audit store is down.

The bridge's own records (halts, resumes, observed flips) exist nowhere else:
a vendor's log can be pulled again, these cannot. When the store cannot take
them (PostgreSQL away, ``audit.db`` corrupt or read-only), they are appended
here, one canonical JSON record a line, and synced to disk before the writer
moves on; when the store works again they are written to it and the file is
emptied. Several processes share one spool: every access holds an exclusive
``flock`` on it.

Writing a spooled record twice is harmless (records are unique by id, the
second copy is a duplicate), so a crash between storing the records and
emptying the file loses and duplicates nothing. A line that cannot be read
back, or a record the store refuses while it takes the others, goes to
``<spool>.rejected`` with the reason: one bad record never holds up the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from breakglass.audit.codec import StoredRecord, prepare, record_from_dict
from breakglass.audit.store import save_each
from breakglass.clock import SYSTEM_CLOCK, isoformat_ms
from breakglass.errors import AuditRecordError, AuditStoreError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from breakglass.audit.store import AuditStore

fcntl: object
try:  # POSIX only; elsewhere one process per spool is assumed.
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms we test
    fcntl = None

_BATCH = 500


class Spool:
    """The spool file at ``path`` (created on first use, with its directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    @property
    def rejected_path(self) -> Path:
        """Where lines that cannot be stored are kept, with the reason."""
        return self.path.with_name(self.path.name + ".rejected")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # type: ignore[attr-defined]
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Add ``records`` and sync them to disk.

        Raises:
            OSError: The file cannot be written (the caller keeps the records).
        """
        if not records:
            return
        data = "".join(r.canonical + "\n" for r in records).encode("utf-8")
        with self._locked() as fd:
            os.write(fd, data)
            os.fsync(fd)

    def pending(self) -> int:
        """Records waiting (0 when the file is absent)."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0

    def drain(self, store: AuditStore) -> int:
        """Write every spooled record to ``store``, then empty the spool; return how many.

        Raises:
            AuditStoreError: The store still cannot take them (the spool is kept).
            OSError: The spool cannot be read or emptied.
        """
        if not self.path.exists():
            return 0
        with self._locked() as fd:
            with os.fdopen(os.dup(fd), "rb") as handle:
                handle.seek(0)
                lines = [line for line in handle.read().split(b"\n") if line.strip()]
            if not lines:
                return 0
            records, rejected = _read(lines)
            for start in range(0, len(records), _BATCH):
                rejected += _save(store, records[start : start + _BATCH])
            if rejected:
                self._reject(rejected)
            os.ftruncate(fd, 0)
            os.fsync(fd)
        return len(records) - sum(1 for _, _, parsed in rejected if parsed)

    def _reject(self, rejected: list[tuple[bytes, str, bool]]) -> None:
        now = isoformat_ms(SYSTEM_CLOCK.now())
        text = b"".join(
            json.dumps({"rejected_at": now, "reason": why}).encode() + b"\n" + line + b"\n"
            for line, why, _ in rejected
        )
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)


def _read(lines: list[bytes]) -> tuple[list[StoredRecord], list[tuple[bytes, str, bool]]]:
    records: list[StoredRecord] = []
    rejected: list[tuple[bytes, str, bool]] = []
    for line in lines:
        try:
            records.append(prepare(record_from_dict(json.loads(line))))
        except (ValueError, RecursionError, AttributeError, AuditRecordError) as exc:
            rejected.append((line, f"cannot be read back: {type(exc).__name__}", False))
    return records, rejected


def _save(store: AuditStore, batch: list[StoredRecord]) -> list[tuple[bytes, str, bool]]:
    """Save ``batch``; if the store refuses it, find the records it refuses one by one."""
    try:
        store.save(batch)
    except AuditStoreError as exc:
        if exc.transient or len(batch) == 1:
            raise
        _, refused = save_each(store, batch)
        return [(r.canonical.encode(), str(why), True) for r, why in refused]
    return []
