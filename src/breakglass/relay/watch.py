"""Waking a worker when the relay rings its channel: Linux inotify, else a short sleep.

Fifty workers polling a file every few milliseconds cost more CPU than the
vendor SDKs they replace (measured in docs/performance.md). With inotify each
worker sleeps in ``select`` until the relay's ringing ``pwrite`` lands (a change
of decision; heartbeats go through a memory map, which inotify does not see), so
a halt wakes every worker at once and an idle host stays idle. Where inotify cannot be used
(another OS, no ``libc``, the watch limit reached), :meth:`ChangeWatch.wait`
sleeps ``fallback`` seconds instead: slower, never wrong, because the worker
reads the file after every wake-up either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger("breakglass.relay")

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_IGNORED = 0x00008000
_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF
_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_EVENT = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    if not hasattr(select, "select") or os.uname().sysname != "Linux":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


class ChangeWatch:
    """Waits until ``path`` is written, or ``timeout`` passes.

    Args:
        path: The channel file (it may not exist yet, and may be replaced).
        fallback: Seconds to sleep per wait when inotify cannot be used.
    """

    def __init__(self, path: Path, *, fallback: float) -> None:
        self._path = path
        self._fallback = fallback
        self._fd = -1
        self._wd = -1
        self._ino: tuple[int, int] | None = None
        self._libc = _libc()
        if self._libc is not None:
            fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                self._fd = fd
            else:
                logger.info("relay: no inotify (%s); polling", os.strerror(ctypes.get_errno()))

    def __repr__(self) -> str:
        return f"ChangeWatch({str(self._path)!r}, inotify={self.pushed})"

    @property
    def pushed(self) -> bool:
        """Whether writes wake the waiter (inotify), rather than a sleep."""
        return self._fd >= 0

    def wait(self, timeout: float) -> bool:
        """Return after the relay rang, or after ``timeout`` (``fallback`` without inotify).

        Returns:
            ``True`` when a write woke the waiter, ``False`` when the time ran out.
        """
        if not self._watching():
            time.sleep(min(timeout, self._fallback))
            return False
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            self._drain()
        return bool(ready)

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._wd = -1

    def _watching(self) -> bool:
        if self._fd < 0 or self._libc is None:
            return False
        try:
            info = os.stat(self._path)
        except OSError:
            return False
        ino = (info.st_dev, info.st_ino)
        if self._wd >= 0 and ino == self._ino:
            return True
        if self._wd >= 0:
            self._libc.inotify_rm_watch(self._fd, self._wd)
        self._wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self._path), _MASK)
        self._ino = ino if self._wd >= 0 else None
        return self._wd >= 0

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 4096)
            except BlockingIOError:
                return
            at = 0
            while at + _EVENT.size <= len(chunk):
                _, mask, _, length = _EVENT.unpack_from(chunk, at)
                if mask & _GONE:
                    self._wd = -1  # the file was replaced or removed: watch the new one next time
                at += _EVENT.size + length
