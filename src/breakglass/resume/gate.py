"""The resumption gate: what is still missing before the system may run again.

Everything the gate counts is an entry of the open suspension in serve's
store (SQLite or PostgreSQL), so every replica sees the same ticks and
approvals, and a restart loses none. Approvals are keyed by the authenticated
identity's subject: the same person approving twice is refused, whatever name
or token they use next. An approval is accepted only once the checklist and
the conditions are complete, so each approver approves the record as it
stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import BreakglassError
from breakglass.resume.config import CLASSIFICATIONS
from breakglass.serve.auth import Identity, Role
from breakglass.serve.store import Entry, Suspension

if TYPE_CHECKING:
    from datetime import datetime

    from breakglass.resume.config import ChecklistItem, ResumePolicy
    from breakglass.serve.control import ResumeRequest
    from breakglass.serve.store import ServeStore

logger = logging.getLogger("breakglass.resume")

CHECK = "check"
APPROVAL = "approval"
CONDITION = "condition"
_ANSWER_MAX = 2000


class GateError(BreakglassError):
    """A tick, an approval or a condition that the gate refuses (``status`` is the HTTP answer)."""

    def __init__(self, message: str, status: int = 409, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.missing = missing or []


@dataclass(slots=True)
class GateView:
    """The gate as it stands for the open suspension: what is done, what is missing."""

    suspension: Suspension | None
    checklist: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    approvals_needed: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """What stops a resume now, one line each (the classification is asked at the resume)."""
    ungated: list[dict[str, Any]] = field(default_factory=list)
    """Resumes seen outside the gate during this suspension (each undone or not)."""

    @property
    def prerequisites_missing(self) -> list[str]:
        """What is missing apart from the approvals."""
        return [m for m in self.missing if not m.startswith("approvals:")]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``GET /v1/resume``)."""
        return {
            "suspension_id": self.suspension.id if self.suspension else None,
            "satisfied": not self.missing,
            "missing": self.missing,
            "checklist": self.checklist,
            "approvals": self.approvals,
            "approvals_needed": self.approvals_needed,
            "conditions": self.conditions,
            "classifications": list(CLASSIFICATIONS),
            "ungated": self.ungated,
        }


def halters(suspension: Suspension) -> set[str]:
    """The subjects of everyone who halted during this suspension."""
    found = set()
    for halt in suspension.halts:
        actor = halt.get("actor")
        if isinstance(actor, dict) and actor.get("subject"):
            found.add(str(actor["subject"]))
    return found


def _clean_answer(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    if any(not (ch.isprintable() or ch in "\n\t") for ch in answer):
        raise GateError("the answer must not contain control characters", 422)
    if len(answer) > _ANSWER_MAX:
        raise GateError(f"the answer is at most {_ANSWER_MAX} characters", 422)
    return answer or None


class PolicyGate:
    """The gate of a ``[resume]`` policy, reading and writing serve's store. Implements ``ResumeGate``."""

    def __init__(
        self, policy: ResumePolicy, store: ServeStore, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.policy = policy
        self.store = store
        self._clock = clock

    def __repr__(self) -> str:
        return f"PolicyGate(approvals={self.policy.approvals}, enforce={self.policy.enforce})"

    def items(self, suspension: Suspension) -> list[ChecklistItem]:
        """The checklist items this suspension asks for."""
        return [
            i
            for i in self.policy.checklist
            if not i.when_personal_data or suspension.personal_data_affected
        ]

    def view(self) -> GateView:
        """What is done and missing for the open suspension."""
        suspension = self.store.open_suspension()
        if suspension is None:
            return GateView(
                None,
                approvals_needed=self.policy.approvals,
                missing=["no open suspension: there is nothing to resume from"],
            )
        return self.view_of(suspension, self.store.entries(suspension.id))

    def view_of(self, suspension: Suspension, entries: list[Entry]) -> GateView:
        """What is done and missing, from a suspension and its entries."""
        view = GateView(suspension, approvals_needed=self.policy.approvals)
        view.ungated = [e.data for e in entries if e.kind == "ungated"]
        checks = {e.key: e for e in entries if e.kind == CHECK}
        for item in self.items(suspension):
            tick = checks.get(item.id)
            view.checklist.append(
                {
                    "id": item.id,
                    "text": item.text,
                    "role": item.role,
                    "answer_mode": item.answer,
                    "done": tick is not None,
                    "by": tick.data.get("by") if tick else None,
                    "at": isoformat_ms(tick.at) if tick else None,
                    "answer": tick.data.get("answer") if tick else None,
                }
            )
            if tick is None:
                view.missing.append(f"checklist: {item.id} not ticked ({item.text})")
        now = self._clock.now()
        conditions = {e.key: e for e in entries if e.kind == CONDITION}
        for cond in self.policy.conditions:
            met = conditions.get(cond.id)
            finished = parse_iso(met.data["finished_at"]) if met else None
            fresh = finished is not None and now - finished <= cond.within
            view.conditions.append(
                {
                    "id": cond.id,
                    "text": cond.text,
                    "within_s": cond.within.total_seconds(),
                    "done": fresh,
                    "by": met.data.get("by") if met else None,
                    "finished_at": isoformat_ms(finished) if finished else None,
                }
            )
            if not fresh:
                view.missing.append(
                    f"condition: {cond.id} needs a passing probe finished within "
                    f"{_duration(cond.within.total_seconds())} ({cond.text})"
                )
        view.approvals = [
            {"subject": e.actor, "by": e.data.get("by"), "at": isoformat_ms(e.at)}
            for e in entries
            if e.kind == APPROVAL
        ]
        have = len(view.approvals)
        if have < self.policy.approvals:
            view.missing.append(
                f"approvals: {have} of {self.policy.approvals} "
                f"(need {self.policy.approvals - have} more distinct approver"
                f"{'s' if self.policy.approvals - have > 1 else ''})"
            )
        return view

    # ------------------------------------------------------------------ ticking and approving

    def _open(self) -> Suspension:
        suspension = self.store.open_suspension()
        if suspension is None:
            raise GateError("no open suspension: there is nothing to resume from", 409)
        return suspension

    def tick(self, identity: Identity, item_id: str, answer: str | None) -> GateView:
        """Tick a checklist item as ``identity`` (again: the newer tick replaces the older)."""
        suspension = self._open()
        item = next((i for i in self.items(suspension) if i.id == item_id), None)
        if item is None:
            raise GateError(f"this suspension has no checklist item {item_id!r}", 404)
        identity.require(Role.parse(item.role), f"ticking {item_id!r}")
        answer = _clean_answer(answer)
        if item.answer == "required" and not answer:
            raise GateError(f"{item_id!r} needs an answer ({item.text})", 422)
        self.store.add_entry(
            Entry(
                suspension.id,
                CHECK,
                item.id,
                "",
                self._clock.now(),
                {"by": identity.actor, "subject": identity.subject, "answer": answer},
            ),
            replace=True,
        )
        return self.view()

    def approve(self, identity: Identity, comment: str | None = None) -> GateView:
        """Approve the resume as ``identity``; refused twice for one person, or before the checklist."""
        suspension = self._open()
        identity.require(Role.parse(self.policy.approver_role), "approving a resume")
        if not self.policy.halter_may_approve and identity.subject in halters(suspension):
            raise GateError(
                f"{identity.name} halted this suspension, and the policy asks for approvers "
                "other than the people who halted (resume.halter_may_approve = false)",
                403,
            )
        view = self.view_of(suspension, self.store.entries(suspension.id))
        if view.prerequisites_missing:
            raise GateError(
                "approve once the checklist and conditions are complete",
                409,
                view.prerequisites_missing,
            )
        fresh = self.store.add_entry(
            Entry(
                suspension.id,
                APPROVAL,
                APPROVAL,
                identity.subject,
                self._clock.now(),
                {"by": identity.actor, "comment": _clean_answer(comment)},
            )
        )
        if not fresh:
            raise GateError(
                f"{identity.name} has approved this resume already; "
                "another approver is needed, not the same one twice",
                409,
            )
        return self.view()

    def record_probe(
        self, identity: Identity, condition_id: str, report: dict[str, Any]
    ) -> GateView:
        """Count a probe report (``breakglass probe --json``) towards a condition."""
        suspension = self._open()
        identity.require(Role.HALTER, "submitting a probe")
        cond = self.policy.condition(condition_id)
        if cond is None:
            raise GateError(f"the policy has no condition {condition_id!r}", 404)
        problems = []
        if report.get("passed") is not True:
            problems.append("the probe did not pass")
        if report.get("aborted") or report.get("interrupted"):
            problems.append("the probe was aborted or interrupted")
        try:
            finished = parse_iso(str(report.get("finished_at")))
        except ValueError:
            finished = None
            problems.append("the report has no valid finished_at")
        if finished is not None and self._clock.now() - finished > cond.within:
            problems.append(
                f"the probe finished more than {_duration(cond.within.total_seconds())} ago"
            )
        if problems or finished is None:
            raise GateError("; ".join(problems), 422)
        self.store.add_entry(
            Entry(
                suspension.id,
                CONDITION,
                cond.id,
                "",
                self._clock.now(),
                {
                    "by": identity.actor,
                    "finished_at": isoformat_ms(finished),
                    "passed": True,
                    "provider": report.get("provider"),
                },
            ),
            replace=True,
        )
        return self.view()

    # ------------------------------------------------------------------ ResumeGate

    def missing(self, identity: Identity, request: ResumeRequest) -> list[str]:
        """What is still missing before ``identity`` may resume with ``request``."""
        del identity
        missing = list(self.view().missing)
        if request.classification is None:
            missing.append("classification: close the suspension as " + ", ".join(CLASSIFICATIONS))
        return missing


def record_resume(
    store: ServeStore,
    *,
    subject: str,
    actor: str,
    reason: str,
    classification: str | None,
    change_id: str,
    at: datetime,
) -> str | None:
    """Record, before any target is turned on, that a resume passed the gate; the suspension id.

    The watcher of ungated resumes reads it (on any replica) to tell this
    resume from one made in a vendor dashboard.
    """
    suspension = store.open_suspension()
    if suspension is None:
        return None
    store.add_entry(
        Entry(
            suspension.id,
            "resume",
            change_id,
            subject,
            at,
            {"by": actor, "reason": reason, "classification": classification},
        )
    )
    return suspension.id


def approvers_of(store: ServeStore, suspension_id: str) -> tuple[str, ...]:
    """Who approved resuming this suspension (as the audit trail names them), in order."""
    return tuple(
        str(e.data.get("by") or e.actor) for e in store.entries(suspension_id) if e.kind == APPROVAL
    )


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
