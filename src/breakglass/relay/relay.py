"""The host relay: reads the vendor once, writes the decision for every worker on the host.

It is a :class:`breakglass.bridge.Bridge` on the upstream providers, with a
:class:`ChannelWriter` behind it. Every change of decision is written at once
(from the engine's listener) and rings the workers awake; between changes a
heartbeat thread rewrites the current decision every ``heartbeat`` seconds,
which both extends an active decision and proves to the workers that the relay
is alive. A heartbeat rings only when it carries a new decision (the relay's
own confirmation aged out): the workers read heartbeats on their own time, so
a halt never meets every worker on the host busy with one.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from breakglass.relay.channel import ChannelWriter, Snapshot
from breakglass.relay.source import channel_source_id
from breakglass.state import Cause, FlagState

if TYPE_CHECKING:
    from breakglass.bridge import Bridge

logger = logging.getLogger("breakglass.relay")


def _same_decision(last: Snapshot | None, snap: Snapshot) -> bool:
    if last is None:
        return False
    return (last.active, last.cause, last.source) == (snap.active, snap.cause, snap.source)


class Relay:
    """Publishes one bridge's decision on a channel file.

    Args:
        bridge: The bridge on the upstream providers (not started yet).
        writer: The channel's writer (it holds the file's lock).
        heartbeat: Seconds between writes when nothing changes.
    """

    def __init__(self, bridge: Bridge, writer: ChannelWriter, *, heartbeat: float) -> None:
        self.bridge = bridge
        bridge.role = "relay"
        # Workers on this channel report this id: serve finds their relay by it and by host.
        bridge.report_channel = channel_source_id(writer.path)
        self.writer = writer
        self.heartbeat = heartbeat
        self._clock = bridge.engine.clock
        # Re-entrant: reading engine.state may recompute and notify _on_change on this very thread.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = bridge.engine.subscribe(self._on_change)
        self._closed = False
        self.last: Snapshot | None = None
        """The last snapshot written."""

    def __repr__(self) -> str:
        return f"Relay({self.bridge!r}, {self.writer!r})"

    @property
    def state(self) -> FlagState:
        """The relay's current decision."""
        return self.bridge.engine.state

    def start(self) -> None:
        """Write "unconfirmed" at once, start reading upstream and the heartbeat."""
        self.publish()
        self.bridge.start()
        self._thread = threading.Thread(
            target=self._run, name="breakglass-relay-heartbeat", daemon=True
        )
        self._thread.start()

    def publish(self, state: FlagState | None = None) -> Snapshot:
        """Write the current decision (``state`` overrides it: used for the closing write)."""
        with self._lock:
            if self._closed and state is None:
                assert self.last is not None  # noqa: S101 -- the closing write happened
                return self.last
            # Read under the lock: a listener's older state can never overwrite a newer one.
            current = state if state is not None else self.bridge.engine.state
            snap = self._snapshot(current)
            self.writer.write(snap, ring=not _same_decision(self.last, snap))
            self.last = snap
            return snap

    def close(self) -> None:
        """Tell the workers the relay is closing (they halt), then stop reading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._unsubscribe()
        self.publish(FlagState(active=False, cause=Cause.CLOSED, detail="the relay was stopped"))
        with self._lock:
            self._closed = True
        self.writer.close()
        self.bridge.close()

    def _snapshot(self, state: FlagState) -> Snapshot:
        staleness = self.bridge.engine.max_staleness
        remaining = 0.0
        if state.active:
            remaining = min(staleness, max(0.0, state.deadline - self._clock.monotonic()))
        if state.active and remaining <= 0:
            state = FlagState(active=False, cause=Cause.STALE, source=state.source)
        return Snapshot(
            instance=self.writer.instance,
            seq=0,
            pid=os.getpid(),
            active=state.active,
            cause=state.cause,
            remaining=remaining,
            written_wall=self._clock.now().timestamp(),
            confirmed_wall=None if state.confirmed_at is None else state.confirmed_at.timestamp(),
            max_staleness=staleness,
            interval=self.heartbeat,
            flag_key=self.bridge.settings.flag_key,
            source=state.source,
            detail=state.detail or "",
        )

    def _on_change(self, state: FlagState) -> None:
        del state  # publish() reads the newest one itself
        self.publish()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.publish()
            except Exception:
                # Without writes the workers halt on their own after silent_after; say why here.
                logger.exception("relay: cannot write the channel")
