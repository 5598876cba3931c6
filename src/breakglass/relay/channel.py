"""The relay's channel: one small file the relay writes and every worker on the host reads.

The file has a fixed size and layout (little-endian)::

    0    magic        8 bytes  b"BGRELAY1"
    8    seq          u64      even when complete; odd while the relay writes
    16   instance     8 bytes  random per relay process (a restarted relay is a new one)
    24   body         fixed struct (see _BODY), then the flag key, source and detail texts
    1020 crc32        u32      over bytes 8..1020

The relay writes it as a sequence lock: ``seq`` odd, the body, ``seq`` even.
A reader takes one ``pread`` of the whole file, and accepts it only when
``seq`` is even and the CRC matches; anything else is retried a few times and
then reported as a :class:`ChannelError`. Readers never ``mmap`` the file, so a
truncated or replaced file is a short read and an error, never a ``SIGBUS``.

The relay writes through a shared memory map, which Linux's inotify does not
report, and *rings* (the last store, ``seq`` even, through ``pwrite``: one
``IN_MODIFY``) only when the decision changed. A worker therefore wakes once per
change, after the write is complete, never in the middle of one; heartbeats
reach it on its own periodic read. Every relay write used to wake every worker,
three times (one per ``pwrite``), the first time mid-write: a halt that met a
heartbeat met fifty processes competing with the relay for the CPU.

The decision travels as a *duration*: ``remaining`` is how many seconds the
relay's decision stays active after the relay wrote it. A worker never
compares the relay's clock with its own (they may differ: another time
namespace, another boot); it measures ``remaining`` from the last moment it saw
the *previous* write, on its own monotonic clock (see
:mod:`breakglass.relay.source`).
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import stat
import struct
import threading
import time
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from breakglass.errors import BreakglassError, ConfigurationError
from breakglass.state import Cause

if TYPE_CHECKING:
    from pathlib import Path

MAGIC = b"BGRELAY1"
SIZE = 1024
VERSION = 1

_SEQ = struct.Struct("<Q")
_INSTANCE_AT = 16
# version, active, cause, pid, written_wall, remaining, confirmed_wall, max_staleness,
# heartbeat interval, and the lengths of the three texts.
_BODY = struct.Struct("<HBBIdddddHHH")
_BODY_AT = 24
_KEY_MAX = 128
_SOURCE_MAX = 64
_DETAIL_MAX = SIZE - 4 - _BODY_AT - _BODY.size - _KEY_MAX - _SOURCE_MAX
_CRC_AT = SIZE - 4
# Fixed codes, never list(Cause): a relay and its workers may run different versions.
_CAUSES = [
    Cause.ACTIVE,
    Cause.OFF,
    Cause.STALE,
    Cause.UNCONFIRMED,
    Cause.ERROR,
    Cause.FLAG_MISSING,
    Cause.WRONG_TYPE,
    Cause.STORE_UNAVAILABLE,
    Cause.CLOSED,
    Cause.READER_STOPPED,
]
_READ_ATTEMPTS = 4
_ACTIVE_AT = _BODY_AT + 2
"""The active byte (then the cause's): after the version, at a fixed place in every version 1 write."""
_HEAD = _ACTIVE_AT + 2


class ChannelError(BreakglassError):
    """The channel file cannot be read as a relay's decision.

    Attributes:
        missing: ``True`` when there is no file (no relay has started there).
        torn: ``True`` when the read met a write in progress (or bytes that look like one:
            an odd sequence number, a checksum mismatch); the next read may well succeed.
    """

    def __init__(self, message: str, *, missing: bool = False, torn: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.torn = torn


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One complete write of the relay.

    Attributes:
        instance: The writing relay's random id (hex).
        seq: The write's sequence number (even; grows with every write).
        pid: The relay's process id.
        active: The relay's decision.
        cause: Why.
        remaining: Seconds the active decision holds after the write (0 when halted).
        written_wall: When the relay wrote it (UNIX seconds, for people only).
        confirmed_wall: When the vendor last confirmed the deciding value (UNIX seconds), if known.
        max_staleness: The relay's own ``max_staleness``.
        interval: Seconds between the relay's heartbeat writes.
        flag_key: The flag the relay serves.
        source: The relay's deciding source, if any.
        detail: The relay's sentence for people.
    """

    instance: str
    seq: int
    pid: int
    active: bool
    cause: Cause
    remaining: float
    written_wall: float
    confirmed_wall: float | None
    max_staleness: float
    interval: float
    flag_key: str
    source: str | None
    detail: str


def _clip(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", "ignore").encode("utf-8")


def encode_body(snapshot: Snapshot) -> bytes:
    """The bytes from the instance id to the CRC (exclusive) for ``snapshot``."""
    key = _clip(snapshot.flag_key, _KEY_MAX)
    source = _clip(snapshot.source or "", _SOURCE_MAX)
    detail = _clip(snapshot.detail, _DETAIL_MAX)
    body = _BODY.pack(
        VERSION,
        int(snapshot.active),
        _CAUSES.index(snapshot.cause) if snapshot.cause in _CAUSES else _CAUSES.index(Cause.ERROR),
        snapshot.pid,
        snapshot.written_wall,
        snapshot.remaining,
        math.nan if snapshot.confirmed_wall is None else snapshot.confirmed_wall,
        snapshot.max_staleness,
        snapshot.interval,
        len(key),
        len(source),
        len(detail),
    )
    texts = key.ljust(_KEY_MAX, b"\0") + source.ljust(_SOURCE_MAX, b"\0") + detail
    return (
        bytes.fromhex(snapshot.instance)
        + body
        + texts.ljust(_CRC_AT - _BODY_AT - _BODY.size, b"\0")
    )


def decode(raw: bytes) -> Snapshot:
    """Parse and check one whole-file read.

    Raises:
        ChannelError: The bytes are not one complete, sane relay write.
    """
    if len(raw) != SIZE:
        raise ChannelError(f"the channel file is {len(raw)} bytes, not {SIZE} (truncated?)")
    if raw[:8] != MAGIC:
        raise ChannelError("not a breakglass relay channel (bad magic)")
    (seq,) = _SEQ.unpack_from(raw, 8)
    if seq % 2:
        raise ChannelError("the relay was writing (torn read)", torn=True)
    (crc,) = struct.unpack_from("<I", raw, _CRC_AT)
    if zlib.crc32(raw[8:_CRC_AT]) != crc:
        raise ChannelError("checksum mismatch (torn or corrupt write)", torn=True)
    fields = _BODY.unpack_from(raw, _BODY_AT)
    version, active, cause_index, pid, written, remaining, confirmed, staleness, interval = fields[
        :9
    ]
    if version != VERSION:
        raise ChannelError(f"channel version {version}, this reader understands {VERSION}")
    if active not in (0, 1) or cause_index >= len(_CAUSES):
        raise ChannelError("the decision fields hold impossible values")
    cause = _CAUSES[cause_index]
    if bool(active) != (cause is Cause.ACTIVE):
        raise ChannelError(f"active={bool(active)} contradicts cause {cause.value}")
    _check_times(written, remaining, staleness, interval)
    key, source, detail = _texts(raw, *fields[9:])
    return Snapshot(
        instance=raw[_INSTANCE_AT:_BODY_AT].hex(),
        seq=seq,
        pid=pid,
        active=bool(active),
        cause=cause,
        remaining=remaining,
        written_wall=written,
        confirmed_wall=None if math.isnan(confirmed) else confirmed,
        max_staleness=staleness,
        interval=interval,
        flag_key=key,
        source=source or None,
        detail=detail,
    )


def _check_times(written: float, remaining: float, staleness: float, interval: float) -> None:
    for name, value in (("max_staleness", staleness), ("interval", interval)):
        if not (math.isfinite(value) and value > 0):
            raise ChannelError(f"{name} is {value!r}, not a positive number")
    if not (math.isfinite(remaining) and 0 <= remaining <= staleness):
        raise ChannelError(f"remaining {remaining!r} s is outside 0..max_staleness")
    if not math.isfinite(written):
        raise ChannelError("written_at is not a number")


def _texts(raw: bytes, key_len: int, source_len: int, detail_len: int) -> tuple[str, str, str]:
    if key_len > _KEY_MAX or source_len > _SOURCE_MAX or detail_len > _DETAIL_MAX:
        raise ChannelError("a text length runs past its field")
    at = _BODY_AT + _BODY.size
    start = at + _KEY_MAX + _SOURCE_MAX
    try:
        return (
            raw[at : at + key_len].decode("utf-8"),
            raw[at + _KEY_MAX : at + _KEY_MAX + source_len].decode("utf-8"),
            raw[start : start + detail_len].decode("utf-8"),
        )
    except UnicodeDecodeError:
        raise ChannelError("a text field is not UTF-8") from None


class ChannelWriter:
    """The relay's end: owns the file (an exclusive lock) and writes each decision.

    Args:
        path: The channel file; its directory is created if missing.

    Raises:
        ConfigurationError: Another relay holds the file, or it cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.instance = os.urandom(8).hex()
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigurationError(
                f"relay channel {path}: cannot be created: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigurationError(
                f"relay channel {path}: another relay is running on it"
            ) from None
        # Readers refuse a file others may write; a umask cannot loosen this.
        os.fchmod(fd, 0o644)
        self._fd = fd
        old = os.pread(fd, SIZE, 0)
        seq = _SEQ.unpack_from(old, 8)[0] if len(old) == SIZE and old[:8] == MAGIC else 0
        # Keep counting past what the last relay wrote, so no reader sees the same number twice.
        self._seq = seq + 2 - seq % 2
        self._repair()
        self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def _repair(self) -> None:
        # A store into a map past the end of a shortened file is SIGBUS: restore the size first.
        # Only the relay's own user (or root) can shorten it, and a shortened file already
        # halts every worker ("truncated"); this write puts the channel back.
        os.ftruncate(self._fd, SIZE)
        os.pwrite(self._fd, MAGIC, 0)

    def __repr__(self) -> str:
        return f"ChannelWriter({str(self.path)!r})"

    def write(self, snapshot: Snapshot, *, ring: bool = True) -> int:
        """Write ``snapshot`` (its ``seq`` and ``instance`` are replaced); returns the seq written.

        Args:
            snapshot: The decision to write.
            ring: Wake the workers that wait for a change (inotify); a heartbeat does not.
        """
        with self._lock:
            if self._fd < 0:
                return self._seq
            seq = self._seq + 2
            body = _SEQ.pack(seq) + encode_body(replace(snapshot, instance=self.instance, seq=seq))
            crc = struct.pack("<I", zlib.crc32(body))
            if os.fstat(self._fd).st_size != SIZE:
                self._repair()
            view = self._map
            view[8:16] = _SEQ.pack(seq - 1)
            view[16:SIZE] = body[8:] + crc
            if ring:
                os.pwrite(self._fd, _SEQ.pack(seq), 8)
            else:
                view[8:16] = _SEQ.pack(seq)
            self._seq = seq
            return seq

    def close(self) -> None:
        """Release the file (and the lock); the last write stays for readers to see."""
        with self._lock:
            if self._fd >= 0:
                self._map.close()
                os.close(self._fd)
                self._fd = -1


class ChannelReader:
    """A worker's end: reads the file, re-opening it when the relay replaced it.

    Refuses a file that is not a regular file (a symbolic link included), that
    anyone but its owner may write, or that is owned by someone other than
    ``owner`` (default: the owner of the file's directory) or root: a halted
    service, or another user who can write the directory, must not be able to
    forge "active".
    """

    def __init__(self, path: Path, *, owner: int | None = None) -> None:
        self.path = path
        self._owner = owner
        self._expected = -1
        self._fd = -1
        self._ino: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"ChannelReader({str(self.path)!r})"

    def read(self) -> Snapshot:
        """One consistent snapshot.

        Raises:
            ChannelError: No file, a file that is not a sane relay channel, or
                a write still torn after a few attempts.
        """
        self._reopen_if_replaced()
        torn: ChannelError | None = None
        for attempt in range(_READ_ATTEMPTS):
            try:
                raw = os.pread(self._fd, SIZE + 1, 0)
            except OSError as exc:
                raise ChannelError(f"{self.path}: {exc.strerror or exc}") from None
            try:
                return decode(raw)
            except ChannelError as exc:
                if not exc.torn:
                    raise
                torn = exc
            time.sleep(0.0002 * (attempt + 1))
        assert torn is not None  # noqa: S101 -- the loop ran and every attempt was torn
        raise torn

    def halted_cause(self) -> Cause | None:
        """The cause a complete write says "not active" for, read from the open file; else ``None``.

        One ``pread`` of the header and none of :meth:`read`'s checks: it may only ever halt
        early (a forged or corrupt file can halt a worker anyway), and :meth:`read` decides.
        ``None`` also when nothing is open yet, a write is under way, or the bytes are odd.
        """
        if self._fd < 0:
            return None
        try:
            head = os.pread(self._fd, _HEAD, 0)
        except OSError:
            return None
        if len(head) < _HEAD or head[8] & 1 or head[_ACTIVE_AT] != 0:
            return None
        index = head[_ACTIVE_AT + 1]
        return _CAUSES[index] if index < len(_CAUSES) else None

    def _reopen_if_replaced(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            self.close()
            raise ChannelError(f"no relay channel at {self.path}", missing=True) from None
        except OSError as exc:
            self.close()
            raise ChannelError(f"{self.path}: {exc.strerror or exc}") from None
        ino = (info.st_dev, info.st_ino)
        same = ino == self._ino and self._fd >= 0
        if not same:
            self._expected = self._expected_owner()
        self._check(info)
        if same:
            return
        self.close()
        try:
            # No link followed, no blocking on a FIFO swapped in since the lstat.
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise ChannelError(f"{self.path}: {exc.strerror or exc}") from None
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != ino:
            os.close(fd)
            raise ChannelError(f"{self.path} was replaced while it was opened")
        self._fd = fd
        self._ino = ino

    def _check(self, info: os.stat_result) -> None:
        if stat.S_ISLNK(info.st_mode):
            raise ChannelError(f"{self.path} is a symbolic link, not the relay's file")
        if not stat.S_ISREG(info.st_mode):
            raise ChannelError(f"{self.path} is not a regular file")
        if info.st_mode & 0o022:
            raise ChannelError(
                f"{self.path} is writable by group or others (mode {info.st_mode & 0o777:o}); "
                "only the relay may write it"
            )
        if info.st_uid not in (self._expected, 0):
            said = (
                "BREAKGLASS_RELAY__OWNER"
                if self._owner is not None
                else "its directory's owner; set BREAKGLASS_RELAY__OWNER if the relay runs as another"
            )
            raise ChannelError(
                f"{self.path} is owned by uid {info.st_uid}, not by the relay's user "
                f"(uid {self._expected}, {said})"
            )

    def _expected_owner(self) -> int:
        if self._owner is not None:
            return self._owner
        try:
            return os.stat(self.path.parent).st_uid
        except OSError as exc:
            raise ChannelError(f"{self.path.parent}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the file (the next read opens it again)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._ino = None
