"""What serve's own reader sees: halts and resumes made outside serve.

serve reads the flag like every other reader. When the flag turns off and no
suspension is open (a halt in the vendor's dashboard, the CLI on another
host, the kill switch's own record), the watch opens one after a short grace,
so every halt episode has its record. When the flag turns back on while a
suspension is open and no resume passed the gate since its last halt, the
resume was **ungated**: the watch records it, pages on-call through the
notification chain, and, when ``[resume] enforce = true``, halts again at
once, as serve, recording how long the system ran.

The watch runs on a thread of its own: the engine's listener only queues
the state, so reading is never slowed by the store or the targets.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import BreakglassError
from breakglass.serve.auth import Identity, Role
from breakglass.serve.control import HaltRequest
from breakglass.serve.listeners import SuspensionEvent
from breakglass.serve.store import Entry, Suspension
from breakglass.state import Cause

if TYPE_CHECKING:
    from breakglass.resume.config import ResumePolicy
    from breakglass.serve.control import Control
    from breakglass.state import FlagState

logger = logging.getLogger("breakglass.resume")

GATE_IDENTITY = Identity(
    subject="system:resume-gate",
    name="breakglass serve (resumption gate)",
    role=Role.ADMIN,
    kind="system",
)
"""Who halts again when an ungated resume is undone."""
READER = {
    "subject": "system:reader",
    "name": "serve's reader (a change made outside serve)",
    "kind": "system",
}


class SuspensionWatch:
    """Opens suspensions for halts seen, catches ungated resumes, undoes them under ``enforce``."""

    def __init__(
        self,
        control: Control,
        policy: ResumePolicy | None,
        *,
        grace: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.control = control
        self.policy = policy
        self.grace = (
            grace if grace is not None else (policy.watch_grace.total_seconds() if policy else 2.0)
        )
        self._clock = clock
        self._queue: queue.Queue[FlagState | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None

    def __repr__(self) -> str:
        return f"SuspensionWatch(enforce={bool(self.policy and self.policy.enforce)})"

    def start(self) -> SuspensionWatch:
        """Subscribe to the engine and look at the current state once."""
        self._thread = threading.Thread(
            target=self._run, name="breakglass-resume-watch", daemon=True
        )
        self._thread.start()
        engine = self.control.bridge.engine
        self._unsubscribe = engine.subscribe(self._queue.put)
        self._queue.put(engine.state)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while (state := self._queue.get()) is not None:
            try:
                if state.active:
                    self._resumed(state)
                elif state.cause is Cause.OFF:
                    self._halted(state)
            except BreakglassError as exc:
                logger.error("the resumption watch could not record a change: %s", exc)  # noqa: TRY400 -- one line
            except Exception:
                logger.exception("the resumption watch failed on a state change")

    # ------------------------------------------------------------------ halts seen

    def _halted(self, state: FlagState) -> None:
        deadline = time.monotonic() + self.grace
        store = self.control.store
        # serve's own halts open their suspension right after the acknowledgement: give them time.
        while time.monotonic() < deadline:
            if _flag_halted(store.open_suspension()):
                return
            time.sleep(min(0.1, self.grace))
        current = store.open_suspension()
        if self.control.bridge.engine.active or _flag_halted(current):
            return
        now = self._clock.now()
        detail = (
            f"the flag was turned off outside serve ({state.source or 'provider'}: {state.detail})"
        )
        suspension = Suspension(
            id=uuid.uuid4().hex,
            opened_at=now,
            opened_by=READER["name"],
            reason=detail,
            incident=None,
            personal_data_affected=False,
            business_continuity=False,
            halts=[{"at": isoformat_ms(now), "actor": READER, "via": "reader", "reason": detail}],
            targets={},
        )
        sid = store.record_halt(suspension)
        if current is not None:
            return  # joined the kill switch's suspension, which was announced already
        logger.warning("halt seen outside serve: suspension %s opened", sid)
        self.control.listeners.emit(
            SuspensionEvent(kind="halt", suspension_id=sid, actor=READER, reason=detail, at=now)
        )

    # ------------------------------------------------------------------ resumes seen

    def _gated(self, suspension: Suspension) -> bool:
        last_halt = max(
            (parse_iso(h["at"]) for h in suspension.halts if h.get("at")),
            default=suspension.opened_at,
        )
        return any(
            e.kind == "resume" and e.at >= last_halt
            for e in self.control.store.entries(suspension.id)
        )

    def _resumed(self, state: FlagState) -> None:
        store = self.control.store
        suspension = store.open_suspension()
        if suspension is None or self._gated(suspension):
            return
        if not _flag_halted(suspension):
            return  # the flag was never turned off for this suspension: reading it on resumes nothing
        seen_at = self._clock.now()
        seen = time.monotonic()
        source = state.source or "provider"
        if self.policy is None:
            # No policy, no gate: record who resumed as far as serve knows, and close the episode.
            store.add_entry(
                Entry(suspension.id, "seen", uuid.uuid4().hex, "", seen_at, {"resumed_by": source})
            )
            store.close_suspension(
                by=READER["name"], reason=f"resumed outside serve ({source})", at=seen_at
            )
            return
        key = uuid.uuid4().hex
        enforce = self.policy.enforce
        data: dict[str, Any] = {
            "seen_at": isoformat_ms(seen_at),
            "source": source,
            "detail": state.detail,
            "enforce": enforce,
            "outcome": "halting again" if enforce else "left running (enforce = false)",
        }
        store.add_entry(Entry(suspension.id, "ungated", key, "", seen_at, data))
        reason = (
            f"UNGATED RESUME: the flag was turned back on outside the resumption gate "
            f"(seen through {source})" + ("; serve halts again (enforce)" if enforce else "")
        )
        logger.error("%s; suspension %s", reason, suspension.id)
        self.control.listeners.emit(
            SuspensionEvent(
                kind="ungated-resume",
                suspension_id=suspension.id,
                actor=READER,
                reason=reason,
                at=seen_at,
            )
        )
        self.control.hub.publish("ungated-resume", {"suspension_id": suspension.id, **data})
        if not enforce:
            return
        outcome = self.control.halt(
            GATE_IDENTITY, HaltRequest(reason="undoing an ungated resume (resume.enforce = true)")
        )
        undone_ms = round((time.monotonic() - seen) * 1000, 1)
        data["outcome"] = (
            "undone" if outcome.done else "NOT UNDONE: no target acknowledged the halt"
        )
        data["undone_after_ms"] = undone_ms
        data["halt_change_id"] = outcome.change_id
        store.add_entry(Entry(suspension.id, "ungated", key, "", seen_at, data), replace=True)
        self.control.after_halt(outcome)


def _flag_halted(suspension: Suspension | None) -> bool:
    """Whether the suspension includes a halt of the flag (not only the kill switch's)."""
    return suspension is not None and any(h.get("via") != "killswitch" for h in suspension.halts)
