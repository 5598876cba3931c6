"""The suspension record: one halt episode as an auditor asks for it.

Assembled from serve's store (the suspension and its entries) plus what other
parts know (the notification chain's per-group status, the held decisions),
so it is the same on every replica and after any restart. Written into the
audit chain when the suspension closes (``vendor_event_type`` ``suspension-record``)
and rendered as the one-page suspension report.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import isoformat_ms, parse_iso

if TYPE_CHECKING:
    from datetime import datetime

    from breakglass.resume.gate import GateView
    from breakglass.serve.store import Entry, Suspension

GOOD_FAITH = (
    "A halt is an expected cost of oversight, never a fault: this record names who halted "
    "and why, and a halt judged unnecessary afterwards is closed as precautionary."
)
CLASSIFICATION_TEXT = {
    "confirmed-harm": "Confirmed harm: the halt prevented or ended real harm.",
    "precautionary": "Precautionary: the halt was a reasonable precaution; no harm was confirmed.",
    "drill": "Drill: a planned exercise of the break-glass procedure.",
}


def _halt_time_ms(targets: dict[str, dict[str, Any]]) -> float | None:
    """The measured halt time: the first target's acknowledgement, from its request."""
    acked = [
        float(t["latency_ms"])
        for t in targets.values()
        if t.get("ok") and t.get("active") is False and t.get("latency_ms") is not None
    ]
    return min(acked) if acked else None


def build_record(
    suspension: Suspension,
    entries: list[Entry],
    *,
    now: datetime,
    gate: GateView | None = None,
    notifications: list[dict[str, Any]] | None = None,
    held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole record of one suspension, JSON-ready."""
    s = suspension
    end = s.closed_at or now
    resumes = [e for e in entries if e.kind == "resume"]
    closing = resumes[-1].data if resumes and s.closed_at else {}
    return {
        "id": s.id,
        "status": "open" if s.closed_at is None else "closed",
        "opened_at": isoformat_ms(s.opened_at),
        "opened_by": s.opened_by,
        "reason": s.reason,
        "incident": s.incident,
        "personal_data_affected": s.personal_data_affected,
        "business_continuity": s.business_continuity,
        "halts": s.halts,
        "targets": s.targets,
        "halt_time_ms": _halt_time_ms(s.targets),
        "closed_at": isoformat_ms(s.closed_at) if s.closed_at else None,
        "closed_by": s.closed_by,
        "close_reason": s.close_reason,
        "classification": closing.get("classification"),
        "duration_s": round((end - s.opened_at).total_seconds(), 3),
        "checklist": gate.checklist if gate else [],
        "approvals": gate.approvals if gate else [],
        "conditions": gate.conditions if gate else [],
        "resume_attempts": [e.to_dict() for e in resumes],
        "ungated": [e.to_dict() for e in entries if e.kind == "ungated"],
        "reader_events": [e.to_dict() for e in entries if e.kind == "seen"],
        "notifications": notifications,
        "held": held,
        "good_faith": GOOD_FAITH,
    }


def audit_record(record: dict[str, Any], *, flag_key: str, provider: str) -> AuditRecord:
    """The record as an entry of the audit chain (written once the suspension closed)."""
    at = parse_iso(record["closed_at"] or record["opened_at"])
    closer = record["closed_by"] or record["opened_by"]
    return AuditRecord(
        provider=provider,
        vendor_event_id=f"suspension:{record['id']}:{uuid.uuid4().hex[:8]}",
        vendor_event_type="suspension-record",
        flag_key=flag_key,
        action=Action.OTHER,
        occurred_at=at,
        pulled_at=at,
        actor=Actor(kind=ActorKind.SYSTEM, id="breakglass-serve", name=str(closer)),
        comment=f"suspension {record['id']} {record['status']}"
        + (f" as {record['classification']}" if record["classification"] else ""),
        raw=record,
    )
