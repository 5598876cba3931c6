"""Live events for ``GET /v1/events`` and the console: published from any thread, read by SSE clients.

Each event has an increasing id; the last few hundred are kept so a client
that reconnects with ``Last-Event-ID`` misses nothing recent. A slow client's
queue is bounded: when it overflows the client is dropped (it reconnects and
replays), never the publisher slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_KEEP = 500
_QUEUE = 1000


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event."""

    id: int
    type: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event in the ``text/event-stream`` format."""
        body = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.type}\ndata: {body}\n\n".encode()


class EventHub:
    """Fan-out of events to every connected client."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._recent: deque[Event] = deque(maxlen=_KEEP)
        self._clients: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event | None]]] = set()
        self._closed = False

    @property
    def clients(self) -> int:
        """Connected clients."""
        return len(self._clients)

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        """Send an event to every client (thread-safe, never blocks)."""
        with self._lock:
            event = Event(next(self._ids), kind, data)
            self._recent.append(event)
            clients = list(self._clients)
        for loop, q in clients:
            try:
                loop.call_soon_threadsafe(_offer, q, event)
            except RuntimeError:  # that client's loop has closed
                self._clients.discard((loop, q))
        return event

    async def stream(self, last_id: int | None, heartbeat: float = 15.0) -> AsyncIterator[bytes]:
        """The events after ``last_id`` (kept ones first), then live ones, with heartbeats."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=_QUEUE)
        with self._lock:
            backlog = [e for e in self._recent if last_id is not None and e.id > last_id]
            if self._closed:
                q.put_nowait(None)
            self._clients.add((loop, q))
        try:
            yield b"retry: 1000\n\n"
            for event in backlog:
                yield event.encode()
            while True:
                try:
                    live = await asyncio.wait_for(q.get(), heartbeat)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if live is None:
                    return
                yield live.encode()
        finally:
            self._clients.discard((loop, q))

    def close(self) -> None:
        """End every stream (and every one opened later)."""
        with self._lock:
            self._closed = True
        for loop, q in list(self._clients):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, q, None)


def _offer(q: asyncio.Queue[Event | None], event: Event | None) -> None:
    try:
        q.put_nowait(event)
    except asyncio.QueueFull:
        # A client this far behind is dropped; it reconnects with Last-Event-ID.
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)
