"""serve's view of the fleet: the last report of every reader, and who went silent.

A reader is **silent** when no report arrived for three of its heartbeat
intervals (at least one second), measured on serve's monotonic clock: it may
be dead, frozen or cut off, so it is never counted as halted. A reader whose
last report says ``closed`` **stopped** cleanly and leaves the count. The line
people read::

    halted on 48 of 50 readers; 2 silent for 12 s

A reader **reads another source** when none of its providers reads what
serve's own providers read (:mod:`breakglass.source_id`): it will not stop
when this serve halts, however healthy it looks. A worker behind a host relay
reports the relay's channel; serve judges it by the relay on the same host
that reports that channel. A reader that sends no source identity (an older
one), or whose relay does not report, reads an ``unknown`` source. This is
visibility only: nothing anyone reads depends on it.

:meth:`FleetView.wait_halted` waits until every reader that still reports has
reported halted, and answers with the time until the last one refused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.reports.report import ReaderReport

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

SILENT_INTERVALS = 3
MIN_SILENCE = 1.0
FORGET_AFTER = 24 * 3600.0
"""Seconds after which a silent or stopped reader is dropped from the view."""
MAX_READERS = 100_000
NAMED_MAX = 20
"""Readers named in a summary's ``another_source_readers`` (the count says how many in all)."""

Match = Literal["same", "another", "unknown"]
_RELAY_PREFIX = "relay:"
"""How a worker's source id begins (:func:`breakglass.relay.source.channel_source_id`)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A reader's last report and when serve received it."""

    report: ReaderReport
    received_mono: float
    received_at: datetime

    def status(self, now_mono: float) -> str:
        """``active``, ``halted``, ``stopped`` or ``silent``."""
        if self.report.cause == "closed":
            return "stopped"
        if now_mono - self.received_mono > max(
            SILENT_INTERVALS * self.report.interval, MIN_SILENCE
        ):
            return "silent"
        return "active" if self.report.active else "halted"


class FleetView:
    """Every reader's last report. Thread-safe; :meth:`receive` never blocks on anything slow.

    Args:
        clock: serve's clock.
        source_ids: What serve's own providers read; a reader reading none of it is flagged.
    """

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, *, source_ids: Sequence[str | None] = ()
    ) -> None:
        self._clock = clock
        self.source_ids = tuple(i for i in source_ids if i is not None)
        """serve's own source ids (empty: it cannot name them, and every reader's source is unknown)."""
        self._entries: dict[str, Entry] = {}
        self._changed = threading.Condition()

    def __repr__(self) -> str:
        return f"FleetView(readers={len(self._entries)})"

    def receive(self, data: object) -> ReaderReport:
        """Accept one report (raises :class:`breakglass.reports.report.ReportError` when malformed)."""
        report = ReaderReport.from_dict(data)
        now = self._clock.monotonic()
        with self._changed:
            old = self._entries.get(report.reader_id)
            if old is not None and report.seq <= old.report.seq:
                return old.report  # a late or replayed report never overwrites a newer one
            if old is None and len(self._entries) >= MAX_READERS:
                self._forget(now)
            self._entries[report.reader_id] = Entry(report, now, self._clock.now())
            self._changed.notify_all()
        return report

    def readers(self) -> list[dict[str, Any]]:
        """Every known reader with its status, most recently heard from first."""
        now = self._clock.monotonic()
        with self._changed:
            self._forget(now)
            entries = sorted(self._entries.values(), key=lambda e: -e.received_mono)
        matches = self._matches(entries)
        return [
            {
                **e.report.to_dict(),
                "status": e.status(now),
                "source_match": matches[e.report.reader_id],
                "received_at": isoformat_ms(e.received_at),
                "silent_s": round(now - e.received_mono, 1),
            }
            for e in entries
        ]

    def summary(self) -> dict[str, Any]:
        """Counts by status, the longest silence, and the line for people."""
        now = self._clock.monotonic()
        with self._changed:
            entries = list(self._entries.values())
        matches = self._matches(entries)
        counts = {"active": 0, "halted": 0, "silent": 0, "stopped": 0}
        longest = 0.0
        sources: dict[Match, list[str]] = {"another": [], "unknown": []}
        for entry in sorted(entries, key=lambda e: -e.received_mono):
            status = entry.status(now)
            counts[status] += 1
            if status == "silent":
                longest = max(longest, now - entry.received_mono)
            match = matches[entry.report.reader_id]
            if status != "stopped" and match != "same":
                sources[match].append(entry.report.reader_id)
        line = _line(counts, longest)
        if sources["another"]:
            n = len(sources["another"])
            line += f"; {n} {'reads' if n == 1 else 'read'} another source"
        return {
            **counts,
            "readers": counts["active"] + counts["halted"] + counts["silent"],
            "silent_for_s": round(longest, 1),
            "another_source": len(sources["another"]),
            "another_source_readers": sources["another"][:NAMED_MAX],
            "unknown_source": len(sources["unknown"]),
            "line": line,
        }

    def wait_halted(self, since: datetime, timeout: float) -> dict[str, Any]:
        """Wait until every reader that still reports is halted; at most ``timeout`` seconds.

        Args:
            since: When the halt was asked for (serve's wall clock).
            timeout: The bound on the wait.

        Returns:
            ``done`` (every reporting reader halted), ``waited_s`` (serve's clock),
            ``last_refused_after_s`` (the latest reader flip after ``since``, on the
            readers' clocks; ``None`` when none flipped after it), the summary line
            and the ids of the readers still active or silent.
        """
        started = self._clock.monotonic()
        deadline = started + max(0.0, timeout)
        with self._changed:
            while True:
                now = self._clock.monotonic()
                active = [rid for rid, e in self._entries.items() if e.status(now) == "active"]
                if not active or now >= deadline:
                    break
                self._changed.wait(min(0.25, deadline - now))
            entries = list(self._entries.values())
        now = self._clock.monotonic()
        flips = [
            (e.report.flipped_at - since).total_seconds()
            for e in entries
            if e.status(now) == "halted"
            and e.report.flipped_at is not None
            and e.report.flipped_at >= since
        ]
        summary = self.summary()
        return {
            "done": not active,
            "waited_s": round(now - started, 3),
            "last_refused_after_s": round(max(flips), 3) if flips else None,
            "still_active": active,
            "silent": [rid for rid, e in self._entries.items() if e.status(now) == "silent"],
            **{
                k: v
                for k, v in summary.items()
                if k in ("line", "readers", "halted", "another_source", "another_source_readers")
            },
        }

    def _matches(self, entries: Sequence[Entry]) -> dict[str, Match]:
        """Each reader's source against serve's: ``same``, ``another`` or ``unknown``."""
        relays: dict[tuple[str, str], Entry] = {}
        for e in entries:
            if e.report.channel is not None:
                key = (e.report.host, e.report.channel)
                if key not in relays or relays[key].received_mono < e.received_mono:
                    relays[key] = e  # a restarted relay: its newest report speaks for the channel

        def match(report: ReaderReport, depth: int) -> Match:
            if report.source_ids is None or not self.source_ids:
                return "unknown"
            found: set[Match] = set()
            for sid in report.source_ids:
                relay = None if sid is None else relays.get((report.host, sid))
                if sid in self.source_ids:
                    found.add("same")
                elif (
                    relay is not None and depth < 2
                ):  # a relay behind a relay at most; never a loop
                    found.add(match(relay.report, depth + 1))
                elif sid is None or sid.startswith(_RELAY_PREFIX):
                    found.add("unknown")  # a relay that does not report: cannot tell
                else:
                    found.add("another")
            # Stop wins in a reader: one source serve halts is enough to stop it.
            return "same" if "same" in found else "unknown" if "unknown" in found else "another"

        return {e.report.reader_id: match(e.report, 0) for e in entries}

    def _forget(self, now: float) -> None:
        stale = [
            rid
            for rid, e in self._entries.items()
            if e.status(now) in ("silent", "stopped") and now - e.received_mono > FORGET_AFTER
        ]
        for rid in stale:
            del self._entries[rid]


def _line(counts: dict[str, int], longest: float) -> str:
    total = counts["active"] + counts["halted"] + counts["silent"]
    if total == 0:
        return "no reader reports"
    if not counts["active"] and not counts["halted"]:
        who = "the only reader" if total == 1 else f"all {total} readers"
        return f"{who} silent for {longest:.0f} s"
    if counts["active"] and not counts["halted"]:
        line = f"active on {counts['active']} of {total} readers"
    else:
        line = f"halted on {counts['halted']} of {total} readers"
        if counts["active"]:
            line += f"; {counts['active']} still active"
    if counts["silent"]:
        line += f"; {counts['silent']} silent for {longest:.0f} s"
    return line
