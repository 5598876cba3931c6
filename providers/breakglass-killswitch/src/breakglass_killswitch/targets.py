"""The seam every halt target implements, and what it reports.

A target is one concrete thing the switch stops: a Deployment, a StatefulSet,
a KServe InferenceService, a SageMaker endpoint. The switch records its state
(:meth:`Target.capture`) *before* touching it, halts it, then polls
:meth:`Target.check_halted` until it is verifiably not serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Severity = Literal["risk", "handled", "info", "error"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something pre-flight found that could undo (or block) a halt."""

    target: str
    severity: Severity
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready data."""
        return {
            "target": self.target,
            "severity": self.severity,
            "code": self.code,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Check:
    """One look at a target: is it where the switch wants it?"""

    done: bool
    detail: str
    serving: int | None = None
    notes: list[str] = field(default_factory=list)


class Target(Protocol):
    """**Protocol**: one thing the switch halts and restores."""

    @property
    def key(self) -> str:
        """``<kind>/<namespace or region>/<name>``: stable, used as the record's key."""
        ...

    def capture(self) -> dict[str, Any]:
        """Read what a resume must restore (no change made)."""
        ...

    def halt(self, recorded: dict[str, Any], episode: str) -> list[str]:
        """Stop it; returns notes (warnings about parts that could not be done)."""
        ...

    def check_halted(self, recorded: dict[str, Any], *, reassert: bool) -> Check:
        """Whether nothing of it serves; with ``reassert``, undo whatever undid the halt."""
        ...

    def resume(self, recorded: dict[str, Any]) -> list[str]:
        """Restore exactly what was recorded."""
        ...

    def check_resumed(self, recorded: dict[str, Any]) -> Check:
        """Whether the recorded state is back."""
        ...

    def describe(self) -> dict[str, Any]:
        """Its live state, for ``status``."""
        ...

    def preflight(self) -> list[Finding]:
        """What could undo a halt of it, or stop the switch from halting it."""
        ...
