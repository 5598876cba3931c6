"""A little traffic on a guarded endpoint during the drill: refusals seen, nothing dropped.

A few client threads keep requests going from before the halt until after the
resume. From their times alone the drill tells whether work in flight at the
halt was answered (drained) rather than cut off, whether anything got through
while every reader reported halted, and when the first refusal (the guard's
503) was seen from outside.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from breakglass.safe_text import safe


@dataclass(frozen=True, slots=True)
class Call:
    """One request: monotonic start and end, the status (``None``: no answer)."""

    started: float
    ended: float
    status: int | None
    error: str | None = None


@dataclass
class Traffic:
    """Client threads posting to ``url`` until :meth:`stop`."""

    url: str
    clients: int = 4
    pause: float = 0.02
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        """Start the clients."""
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"drill-traffic-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def wait_served(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests were served (the clients are warm); whether they were."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                served = sum(1 for c in self.calls if c.status == 200)
            if served >= count:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the clients (each finishes its request)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35.0)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=30.0) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status: int | None = http.post(self.url, json={"drill": True}).status_code
                    error = None
                except httpx.HTTPError as exc:
                    status, error = None, safe(f"{type(exc).__name__}: {exc}", limit=200)
                with self._lock:
                    self.calls.append(Call(started, time.monotonic(), status, error))
                time.sleep(self.pause)

    def judge(
        self, *, halt_sent: float, all_halted: float | None, resume_sent: float
    ) -> dict[str, Any]:
        """What the calls show, times in seconds after ``halt_sent`` (monotonic marks)."""
        with self._lock:
            calls = list(self.calls)
        refusals = [c.ended for c in calls if c.status == 503 and c.ended > halt_sent]
        # The guard flipped somewhere between the halt request and the first refusal seen:
        # a request sent in that window and still running after the halt request was in
        # flight at the halt, whichever side of the flip it reached the guard.
        cut = min(refusals) if refusals else halt_sent
        in_flight = [c for c in calls if c.started < cut and c.ended > halt_sent]
        dropped = [c for c in calls if c.status not in (200, 503)]
        # Sent after every reader reported halted and answered before the resume was asked:
        # a 200 there got through a halted system.
        leaked = (
            [
                c
                for c in calls
                if c.status == 200 and c.started > all_halted and c.ended < resume_sent
            ]
            if all_halted is not None
            else []
        )
        # Sent before the halt but reaching the guard after it flipped: refused, rightly. Only the
        # requests the guard had admitted (answered 200) are the work that drained.
        drained_after = max((c.ended for c in in_flight if c.status == 200), default=None)
        return {
            "url": self.url,
            "requests": len(calls),
            "served": sum(1 for c in calls if c.status == 200),
            "refused": sum(1 for c in calls if c.status == 503),
            "in_flight_at_halt": len(in_flight),
            "drained": sum(1 for c in in_flight if c.status == 200),
            "refused_on_arrival": sum(1 for c in in_flight if c.status == 503),
            "drained_after_s": None
            if drained_after is None
            else round(drained_after - halt_sent, 3),
            "first_refusal_s": round(min(refusals) - halt_sent, 3) if refusals else None,
            "dropped": len(dropped),
            "dropped_examples": [c.error or f"status {c.status}" for c in dropped[:3]],
            "leaked": len(leaked),
            "served_after_resume": sum(
                1 for c in calls if c.status == 200 and c.started > resume_sent
            ),
        }
