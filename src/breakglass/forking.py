"""What a forked child does with breakglass: it starts halted, with its own readers and fresh locks.

``os.fork()`` copies the process but only the thread that called it. After a
fork (gunicorn ``--preload``, ``multiprocessing`` with the fork start method,
a daemonising library) the child has none of the parent's reader threads, its
copies of their locks may be held by threads that no longer exist, and its
SDK clients share sockets with the parent. Left alone, the child would serve
the parent's last ``true`` until it aged out, ignore every halt meanwhile, stay
halted for ever after, and could deadlock on its first read.

Objects that hold such state register a method here; it runs in every child
right after the fork (:func:`os.register_at_fork`, after the interpreter's own
``threading`` reset, in registration order). The engine, the guard and the
audit recorder use it to start over: new locks, nothing remembered from the
parent, halted until the child's own readers confirm.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("breakglass")

_resets: list[weakref.WeakMethod[Callable[[], None]]] = []
_restarts: list[weakref.WeakMethod[Callable[[], None]]] = []
_lock = threading.Lock()


def in_child(reset: Callable[[], None], *, restart: Callable[[], None] | None = None) -> None:
    """Call the bound ``reset`` (then ``restart``) in every child forked from now on.

    Every object's ``reset`` runs before any ``restart``: a restart starts
    threads and calls listeners, which must find every lock already fresh (a
    guard's lock copied while a parent thread held it would never be released).
    Both are held weakly: a collected object is skipped.
    """
    with _lock:
        for methods, method in ((_resets, reset), (_restarts, restart)):
            if method is not None:
                methods[:] = [m for m in methods if m() is not None]
                methods.append(weakref.WeakMethod(method))


_HANDLER_WAIT = 1.0
"""Seconds fork() waits for a log handler another thread is writing with."""

_held: list[threading.RLock] = []


def _before() -> None:
    # Holding the registry's lock across fork() keeps a registration in another thread from
    # leaving the child's copy of the list half-written.
    _lock.acquire()
    # A thread in the middle of writing a log line holds its stream's buffer lock, which the
    # interpreter does not reset in the child: the child's first log line would hang for ever
    # (seen with 200 forks under load). So fork() waits until no handler is writing.
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        lock = getattr(handler, "lock", None)
        if lock is not None and lock.acquire(timeout=_HANDLER_WAIT):
            _held.append(lock)


def _after_in_parent() -> None:
    while _held:
        _held.pop().release()
    _lock.release()


def _after_in_child() -> None:
    global _lock  # noqa: PLW0603 -- the child's copy of the lock is reset, not shared
    _lock = threading.Lock()
    # logging gave every handler a fresh lock already (its own at-fork hook ran first).
    _held.clear()
    for ref in [*_resets, *_restarts]:
        method = ref()
        if method is None:
            continue
        try:
            method()
        except Exception:
            # The child must come up (halted) whatever one object's reset does.
            logger.exception("breakglass: resetting %r after fork failed", method)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
