"""Halt, resume and status, independent of HTTP: what the API and the console call.

A halt goes to every target at once and is answered as soon as one target
acknowledged (stop wins), or as soon as every one failed (``NOT HALTED``).
Nothing else comes first: the idempotency key is claimed with a short
timeout and skipped when the store does not answer, the suspension record
is written after the acknowledgement, and listeners (notifications) are told
after the caller has the answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, Field, field_validator

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import BreakglassError, ServeStoreError
from breakglass.serve.auth import Identity, Role
from breakglass.serve.listeners import ListenerRunner, SuspensionEvent, target_dicts
from breakglass.serve.store import Suspension
from breakglass.targets import Fanout, Target, TargetResult, approving

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.bridge import Bridge
    from breakglass.seams import Acknowledgement, FlagAdmin
    from breakglass.serve.events import EventHub
    from breakglass.serve.settings import ServeSettings
    from breakglass.serve.store import ServeStore
    from breakglass.serve.telemetry import Metrics, Tracing
    from breakglass.state import FlagState

logger = logging.getLogger("breakglass.serve")

T = TypeVar("T")

FALLBACK = (
    "Halt another way now: turn the flag off in the vendor's dashboard, or use the "
    "infrastructure kill switch (scale the inference service to zero)."
)
"""What to do when serve could not halt anything."""

_SUSPENSION_WAIT = 0.5
_RECORD_BUDGET = 60.0
"""Seconds a suspension write keeps retrying (a busy or restarting store) before it is given up, logged."""


def _with_retries(what: str, write: Callable[[], T]) -> T | None:
    """``write()``, retried with backoff while the store fails, for up to ``_RECORD_BUDGET`` seconds."""
    deadline = time.monotonic() + _RECORD_BUDGET
    delay = 0.05
    while True:
        try:
            return write()
        except ServeStoreError as exc:
            if time.monotonic() + delay > deadline:
                logger.error("gave up %s after %.0f s: %s", what, _RECORD_BUDGET, exc)  # noqa: TRY400 -- one line
                return None
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 -- jitter, not crypto
            delay = min(1.0, delay * 2)


def _clean(text: str, limit: int) -> str:
    text = text.strip()
    if any(not (ch.isprintable() or ch in "\n\t") for ch in text):
        msg = "must not contain control characters"
        raise ValueError(msg)
    if len(text) > limit:
        msg = f"must be at most {limit} characters"
        raise ValueError(msg)
    return text


def _reason_text(value: str) -> str:
    value = _clean(value, 2000)
    if not value:
        msg = "must not be blank"
        raise ValueError(msg)
    return value


# A reason, as halts and resumes both take it: trimmed, printable, bounded, never blank.
Reason = Annotated[str, AfterValidator(_reason_text)]


class HaltRequest(BaseModel):
    """The body of ``POST /v1/halt``. The actor is the authenticated identity, never a field."""

    model_config = {"extra": "forbid"}

    reason: Reason = Field(
        min_length=1, description="Why, in your words (kept in the audit trail)."
    )
    incident: str | None = Field(default=None, description="An incident reference, if any.")
    personal_data_affected: bool = Field(
        default=False, description="Personal data processing is affected (alerts the DPO liaison)."
    )
    business_continuity: bool = Field(
        default=False, description="The halt has business-continuity implications."
    )
    severity: Literal["critical", "high", "medium", "low"] | None = Field(
        default=None,
        description="How grave, as you judge it (routes notifications; the policy's default when absent).",
    )

    @field_validator("incident")
    @classmethod
    def _incident(cls, value: str | None) -> str | None:
        return None if value is None else (_clean(value, 200) or None)


class ResumeRequest(BaseModel):
    """The body of ``POST /v1/resume``."""

    model_config = {"extra": "forbid"}

    reason: Reason = Field(min_length=1, description="Why it is safe to run again.")
    classification: Literal["confirmed-harm", "precautionary", "drill"] | None = Field(
        default=None,
        description="How the suspension closes (the resumption gate asks for it); "
        "`precautionary` is never a fault of the person who halted.",
    )


class ResumeGate(Protocol):
    """**Protocol**: what must hold before a resume runs (the resumption gate plugs in here).

    Returns what is missing, one line each; an empty list lets the resume run.
    """

    def missing(self, identity: Identity, request: ResumeRequest) -> list[str]:
        """What is still missing before ``identity`` may resume."""
        ...


class ApproverGate:
    """Until a resumption policy exists: an approver may resume."""

    def missing(self, identity: Identity, request: ResumeRequest) -> list[str]:
        """Nothing beyond the role, which the caller already checked."""
        del identity, request
        return []


@dataclass(slots=True)
class Outcome:
    """What a halt or resume did, as far as known when answering."""

    change_id: str
    active: bool
    done: bool
    actor: Identity
    reason: str
    requested_at: float
    results: list[TargetResult]
    pending: list[str]
    suspension_id: str | None = None
    problems: list[str] = field(default_factory=list)
    halt: HaltRequest | None = None
    fanout: Fanout | None = None
    recording: threading.Thread | None = None
    recorded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer."""
        word = (
            ("resumed" if self.done else "not_resumed")
            if self.active
            else ("halted" if self.done else "not_halted")
        )
        return {
            "id": self.change_id,
            "outcome": word,
            "active": self.active,
            "actor": self.actor.to_dict(),
            "reason": self.reason,
            "suspension_id": self.suspension_id,
            "targets": target_dicts(self.results),
            "pending": self.pending,
            "problems": self.problems,
        }


class _TracedAdmin:
    """Runs a target's change inside a span that is a child of the request's."""

    def __init__(self, name: str, admin: FlagAdmin, tracing: Tracing, ctx: Any) -> None:
        self._name = name
        self._admin = admin
        self._tracing = tracing
        self._ctx = ctx

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the protocol's signature
        detach = self._tracing.attach(self._ctx)
        try:
            with self._tracing.span(
                "breakglass.target", breakglass_target=self._name, breakglass_active=active
            ):
                return self._admin.set_active(active, actor=actor, reason=reason)
        finally:
            detach()

    def get_active(self) -> bool | None:
        return self._admin.get_active()


class Control:
    """The control plane: one bridge (every configured provider), the store, events, listeners."""

    def __init__(  # noqa: PLR0913 -- the parts it joins
        self,
        bridge: Bridge,
        store: ServeStore,
        hub: EventHub,
        metrics: Metrics,
        tracing: Tracing,
        settings: ServeSettings,
        *,
        listeners: ListenerRunner | None = None,
        gate: ResumeGate | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.bridge = bridge
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.tracing = tracing
        self.settings = settings
        self.listeners = listeners or ListenerRunner([])
        self.gate: ResumeGate = gate or ApproverGate()
        self.on_close: list[Callable[[str], None]] = []
        """Called with the suspension id after a resume closed it (the record's export)."""
        self.closers: list[Callable[[], None]] = []
        """Called by :meth:`close`, newest first (the parts started along with serve)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, TargetResult] = {}
        # Halts and resumes get threads of their own, so they never queue behind store reads,
        # status pages or a store that hangs; store calls get another pool (io_pool).
        self._changes = ThreadPoolExecutor(max_workers=64, thread_name_prefix="breakglass-change")
        self.io_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="breakglass-store")
        self._unsubscribe = bridge.engine.subscribe(self._on_state)

    # ------------------------------------------------------------------ reading

    def state_dict(self, state: FlagState | None = None) -> dict[str, Any]:
        """The decision, its cause and age, and each provider's latest observation."""
        engine = self.bridge.engine
        state = state or engine.state
        now = self._clock.monotonic()
        age = state.age_ms(now)
        providers = []
        for obs in engine.observations():
            value = obs.value if isinstance(obs.value, bool) else None
            providers.append(
                {
                    "name": obs.source,
                    "value": value,
                    "confirmed_at": isoformat_ms(obs.confirmed_wall)
                    if obs.confirmed_wall
                    else None,
                    "age_ms": None
                    if obs.confirmed_at is None
                    else round(max(0.0, now - obs.confirmed_at) * 1000, 1),
                    "error": obs.error,
                }
            )
        return {
            "flag": engine.flag_key,
            "active": state.active,
            "decision": "active" if state.active else "halted",
            "cause": state.cause.value,
            "detail": state.detail,
            "source": state.source,
            "confirmed_at": isoformat_ms(state.confirmed_at) if state.confirmed_at else None,
            "age_ms": None if age is None else round(age, 1),
            "max_staleness_s": engine.max_staleness,
            "providers": providers,
        }

    def status(self) -> dict[str, Any]:
        """Everything ``GET /v1/status`` shows."""
        info = self.state_dict()
        with self._lock:
            last = {name: r.to_dict() for name, r in self._last.items()}
        info["targets"] = [
            {"name": t.name, "configured": t.admin is not None, "last": last.get(t.name)}
            for t in self.bridge.targets()
        ]
        try:
            suspension = self.store.open_suspension()
            info["suspension"] = suspension.to_dict() if suspension else None
        except ServeStoreError as exc:
            info["suspension"] = None
            info["store_problem"] = str(exc)
        return info

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest suspensions, newest first (empty when the store is away)."""
        try:
            return [s.to_dict() for s in self.store.suspensions(limit)]
        except ServeStoreError:
            logger.warning("cannot read the suspension history", exc_info=True)
            return []

    def _on_state(self, state: FlagState) -> None:
        self.hub.publish("state", self.state_dict(state))

    # ------------------------------------------------------------------ changing

    def _targets(self) -> list[Target]:
        ctx = self.tracing.context()
        if ctx is None:
            return self.bridge.targets()
        return [
            replace(
                t,
                admin=None if t.admin is None else _TracedAdmin(t.name, t.admin, self.tracing, ctx),
            )
            for t in self.bridge.targets()
        ]

    def _on_result(self, change_id: str, result: TargetResult) -> None:
        with self._lock:
            self._last[result.target] = result
        self.metrics.target(result)
        self.hub.publish("target", {"change_id": change_id, **result.to_dict()})

    def _fan_out(self, change_id: str, actor: str, reason: str, *, active: bool) -> Fanout:
        """Start setting every target to ``active``; each result is kept and published as it comes.

        Called inside the change's tracing span: the targets carry its context.
        """
        return Fanout(
            self._targets(),
            active=active,
            actor=actor,
            reason=reason,
            on_result=lambda r: self._on_result(change_id, r),
            clock=self._clock,
        ).start()

    def halt(self, identity: Identity, request: HaltRequest) -> Outcome:
        """Halt every target; return once one acknowledged or all failed (blocking)."""
        identity.require(Role.HALTER, "halting")
        started = time.monotonic()
        change_id = uuid.uuid4().hex
        with self.tracing.span(
            "breakglass.halt", breakglass_actor=identity.actor, breakglass_change_id=change_id
        ):
            fan = self._fan_out(change_id, identity.actor, request.reason, active=False)
            self.hub.publish(
                "halt-requested",
                {"change_id": change_id, "actor": identity.to_dict(), "reason": request.reason},
            )
            first = fan.wait_first_ack(self.settings.halt_timeout)
        outcome = Outcome(
            change_id=change_id,
            active=False,
            done=first is not None,
            actor=identity,
            reason=request.reason,
            requested_at=started,
            results=fan.results,
            pending=[t.name for t in fan.targets if t.name not in {r.target for r in fan.results}],
            halt=request,
            fanout=fan,
        )
        if first is None:
            self.metrics.halts.labels("not_halted").inc()
            outcome.problems.append("NOT HALTED: no target acknowledged the halt")
            self.hub.publish("halt-failed", outcome.to_dict())
            return outcome
        self.metrics.halts.labels("halted").inc()
        self.metrics.first_ack.observe(time.monotonic() - started)
        outcome.suspension_id = self._open_suspension(outcome)
        self.hub.publish("halt", outcome.to_dict())
        return outcome

    def _open_suspension(self, outcome: Outcome) -> str | None:
        """Record the halt in the suspension; wait briefly so the answer can name it."""
        request = outcome.halt
        assert request is not None  # noqa: S101 -- halts only
        now = self._clock.now()
        halt = {
            "change_id": outcome.change_id,
            "at": isoformat_ms(now),
            "actor": outcome.actor.to_dict(),
            "reason": request.reason,
        }
        suspension = Suspension(
            id=uuid.uuid4().hex,
            opened_at=now,
            opened_by=outcome.actor.actor,
            reason=request.reason,
            incident=request.incident,
            personal_data_affected=request.personal_data_affected,
            business_continuity=request.business_continuity,
            halts=[halt],
            targets={r.target: r.to_dict() for r in outcome.results},
        )
        found = outcome.recorded

        def write() -> None:
            # A busy SQLite file (a flood of halts) or a restarting database: retried, not lost.
            kept = _with_retries(
                "writing a halt to its suspension record",
                lambda: self.store.record_halt(suspension),
            )
            if kept is not None:
                found.append(kept)

        writer = threading.Thread(target=write, name="breakglass-suspension", daemon=True)
        outcome.recording = writer
        writer.start()
        writer.join(_SUSPENSION_WAIT)
        if found:
            return found[0]
        outcome.problems.append(
            "the halt stands, but its suspension record is not written yet (store slow or away)"
        )
        return None

    def after_halt(self, outcome: Outcome) -> None:
        """Once answered: tell listeners, wait for the other targets, record and announce them."""
        request = outcome.halt
        assert request is not None  # noqa: S101 -- halts only
        kind = "halt" if outcome.done else "halt-failed"
        self.listeners.emit(self._event(kind, outcome))
        fan = outcome.fanout
        if fan is None or fan.done:
            final = outcome.results
        else:
            final = fan.wait_all(max(self.settings.halt_timeout, 60.0))
        outcome.results = final
        outcome.pending = (
            [t.name for t in fan.targets if t.name not in {r.target for r in final}] if fan else []
        )
        if not outcome.done and any(r.ok for r in final):
            # Answered NOT HALTED (no acknowledgement within halt_timeout), yet a target did halt
            # later: the system is halted after all, and everyone who heard "failed" must hear it.
            outcome.done = True
            outcome.problems.append("a target acknowledged after the answer; the system is halted")
            self.metrics.halts.labels("halted_late").inc()
            outcome.suspension_id = self._open_suspension(outcome)
            self.hub.publish("halt", outcome.to_dict())
            self.listeners.emit(self._event("halt", outcome))
        if outcome.suspension_id is None and outcome.recording is not None:
            outcome.recording.join(_RECORD_BUDGET + 5)
            outcome.suspension_id = next(iter(outcome.recorded), None)
        suspension_id = outcome.suspension_id
        if suspension_id is not None:
            results = {r.target: r.to_dict() for r in final}
            _with_retries(
                "adding the target results to the suspension",
                lambda: self.store.update_targets(suspension_id, results),
            )
        self.hub.publish("halt-complete", outcome.to_dict())
        self.listeners.emit(self._event("halt-complete", outcome))

    def _event(self, kind: str, outcome: Outcome) -> SuspensionEvent:
        request = outcome.halt
        return SuspensionEvent(
            kind=kind,
            suspension_id=outcome.suspension_id,
            actor=outcome.actor.to_dict(),
            reason=outcome.reason,
            at=self._clock.now(),
            incident=request.incident if request else None,
            personal_data_affected=request.personal_data_affected if request else False,
            business_continuity=request.business_continuity if request else False,
            severity=request.severity if request else None,
            targets=target_dicts(outcome.results),
        )

    def resume(self, identity: Identity, request: ResumeRequest) -> Outcome:
        """Resume every target (approver, gate permitting); done only when every one acknowledged."""
        identity.require(Role.APPROVER, "resuming")
        missing = self.gate.missing(identity, request)
        if missing:
            raise ResumeRefusedError(missing)
        started = time.monotonic()
        change_id = uuid.uuid4().hex
        approvers = self._authorise(identity, request, change_id)
        with (
            self.tracing.span(
                "breakglass.resume", breakglass_actor=identity.actor, breakglass_change_id=change_id
            ),
            approving(approvers),
        ):
            fan = self._fan_out(change_id, identity.actor, request.reason, active=True)
            results = fan.wait_all(self.settings.resume_timeout)
        done = len(results) == len(fan.targets) and all(r.ok for r in results)
        outcome = Outcome(
            change_id=change_id,
            active=True,
            done=done,
            actor=identity,
            reason=request.reason,
            requested_at=started,
            results=results,
            pending=[t.name for t in fan.targets if t.name not in {r.target for r in results}],
        )
        self.metrics.resumes.labels("resumed" if done else "not_resumed").inc()
        if not done:
            outcome.problems.append(
                "NOT RESUMED everywhere: a target did not acknowledge, so the system stays "
                "halted (stop wins); retry the resume"
            )
            self.hub.publish("resume-failed", outcome.to_dict())
            return outcome
        try:
            outcome.suspension_id = self.store.close_suspension(
                by=identity.actor, reason=request.reason, at=self._clock.now()
            )
        except ServeStoreError as exc:
            outcome.problems.append(f"resumed, but the suspension was not closed: {exc}")
        self.hub.publish("resume", outcome.to_dict())
        return outcome

    def _authorise(
        self, identity: Identity, request: ResumeRequest, change_id: str
    ) -> tuple[str, ...]:
        """Record that this resume passed the gate before any target is turned on; its approvers.

        A store that cannot record it refuses the resume: a resume is never
        urgent, a halt always is.
        """
        from breakglass.resume.gate import approvers_of, record_resume

        try:
            # A grant missing would show only after the targets were on (the suspension left
            # open): find it first, and stay halted.
            lacking = self.store.grants_missing(("serve",))
            if not lacking:
                sid = record_resume(
                    self.store,
                    subject=identity.subject,
                    actor=identity.actor,
                    reason=request.reason,
                    classification=request.classification,
                    change_id=change_id,
                    at=self._clock.now(),
                )
                return approvers_of(self.store, sid) if sid else ()
        except ServeStoreError as exc:
            raise ResumeRefusedError([f"the resume cannot be recorded: {exc}"]) from None
        raise ResumeRefusedError(
            [f"the resume cannot be recorded: serve store {self.store.location}: {lacking}"]
        )

    def after_resume(self, outcome: Outcome) -> None:
        """Once answered: tell listeners, then export the closed suspension's record."""
        self.listeners.emit(self._event("resume" if outcome.done else "resume-failed", outcome))
        if outcome.done and outcome.suspension_id is not None:
            for hook in self.on_close:
                try:
                    hook(outcome.suspension_id)
                except Exception:
                    logger.exception("after closing suspension %s", outcome.suspension_id)

    async def run(self, change: Callable[..., T], *args: Any) -> T:
        """Run :meth:`halt` or :meth:`resume` (blocking) on the changes' own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._changes, functools.partial(change, *args))

    def follow(self, outcome: Outcome) -> None:
        """Start what follows an answered halt or resume on a thread of its own (it may wait minutes)."""
        after = self.after_halt if outcome.halt is not None else self.after_resume
        threading.Thread(
            target=after, args=(outcome,), name="breakglass-follow", daemon=True
        ).start()

    def close(self) -> None:
        """Stop listening to the engine and deliver queued listener events."""
        self._changes.shutdown(wait=False)
        self.io_pool.shutdown(wait=False)
        self._unsubscribe()
        for closer in reversed(self.closers):
            closer()
        self.listeners.close()


class ResumeRefusedError(BreakglassError):
    """The resumption gate is not satisfied; ``missing`` says what is."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("resume refused: " + "; ".join(missing))
        self.missing = missing
