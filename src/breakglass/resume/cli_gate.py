"""The command line under the same gate: ``breakglass halt`` opens a suspension, ``resume`` asks the gate.

When a policy file exists, ``breakglass resume`` reads serve's store (the same
SQLite file or PostgreSQL database serve uses) and refuses, listing what is
missing, until the checklist, the conditions and the approvals recorded
through serve are complete. Approvals are never given on the command line:
its ``--actor`` is free text, and an approval must come from an
authenticated identity.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import ServeStoreError
from breakglass.resume.gate import PolicyGate, approvers_of, record_resume
from breakglass.serve.store import ServeStore, Suspension, open_serve_store
from breakglass.targets import APPROVERS

if TYPE_CHECKING:
    from breakglass.settings import Settings
    from breakglass.targets import TargetResult

logger = logging.getLogger("breakglass.resume")


def cli_store(settings: Settings) -> ServeStore:
    """Serve's store as the settings name it (``[serve]`` / ``BREAKGLASS_SERVE__*``)."""
    from breakglass.serve.settings import load_serve_settings

    serve = load_serve_settings(settings)
    return open_serve_store(serve.sqlite_path(settings), serve.database_url)


def cli_gate(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> PolicyGate | None:
    """The gate of the policy file, on serve's store; ``None`` when no policy file exists.

    Raises:
        ConfigurationError: The policy file is invalid.
    """
    from breakglass.policy import load_policy, policy_file

    if not policy_file().exists():
        return None
    return PolicyGate(load_policy().resume, cli_store(settings), clock)


def authorise(
    gate: PolicyGate, *, actor: str, reason: str, classification: str | None
) -> list[str]:
    """What is missing; when nothing, the resume is recorded as authorised and ``[]`` returned."""
    missing = list(gate.view().missing)
    if classification is None:
        missing.append("classification: pass --classification confirmed-harm|precautionary|drill")
    if missing:
        return missing
    sid = record_resume(
        gate.store,
        subject=f"cli:{actor}",
        actor=actor,
        reason=reason,
        classification=classification,
        change_id=uuid.uuid4().hex,
        at=SYSTEM_CLOCK.now(),
    )
    if sid is not None:
        APPROVERS.set(approvers_of(gate.store, sid))
    return []


def close(gate: PolicyGate, *, actor: str, reason: str) -> str | None:
    """Close the open suspension after every target resumed; its id."""
    return gate.store.close_suspension(by=actor, reason=reason, at=SYSTEM_CLOCK.now())


def record_cli_halt(
    settings: Settings, *, actor: str, reason: str, results: list[TargetResult]
) -> str | None:
    """Open (or join) the suspension of a halt made on the command line; best effort, after the halt."""
    from breakglass.policy import policy_file

    if not policy_file().exists():
        return None
    now = SYSTEM_CLOCK.now()
    suspension = Suspension(
        id=uuid.uuid4().hex,
        opened_at=now,
        opened_by=actor,
        reason=reason,
        incident=None,
        personal_data_affected=False,
        business_continuity=False,
        halts=[{"at": isoformat_ms(now), "actor": {"name": actor, "kind": "cli"}, "via": "cli"}],
        targets={r.target: r.to_dict() for r in results},
    )
    try:
        return cli_store(settings).record_halt(suspension)
    except ServeStoreError as exc:
        logger.warning("the halt stands, but its suspension was not recorded: %s", exc)
        return None
