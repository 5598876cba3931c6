"""One change sent to every configured target at once: the fan-out behind halt and resume.

A target is one place the flag can be turned off: a vendor's management API,
the local store, later the kill switch. Each call runs on its own thread, so
a frozen vendor never delays another target, and a caller can return as soon
as the first target acknowledged a halt (stop wins: one "off" halts every
reader that reads all the configured providers) while the rest finish and are
reported.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from datetime import datetime

    from breakglass.seams import Acknowledgement, FlagAdmin

logger = logging.getLogger("breakglass")


@dataclass(frozen=True, slots=True)
class Target:
    """A place the flag can be changed; ``admin`` is ``None`` when it has no credentials."""

    name: str
    admin: FlagAdmin | None
    admin_setting: str | None = None
    """Named in the error when ``admin`` is ``None``."""
    read_only: str | None = None
    """Why it can never be changed here (:attr:`breakglass.seams.Backend.no_admin`)."""

    def no_admin(self) -> str:
        """Why this target cannot be changed, naming the setting that would allow it."""
        if self.read_only is not None:
            return f"the {self.name} provider cannot change the flag: {self.read_only}"
        where = f": set {self.admin_setting}" if self.admin_setting else ""
        return f"the {self.name} provider has no admin credentials configured{where}"


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What one target answered to one change.

    Attributes:
        target: The target's name (the provider, e.g. ``launchdarkly``).
        active: The value that was asked for.
        ack: The target's acknowledgement, or ``None`` when it failed.
        error: One line saying what went wrong (never a secret), or ``None``; also set
            when the target acknowledged but its readers are not served the new value.
        started_at: When the call started (UTC).
        finished_at: When it answered or failed (UTC).
        latency_ms: How long the call took, on the monotonic clock.
    """

    target: str
    active: bool
    ack: Acknowledgement | None
    error: str | None
    started_at: datetime
    finished_at: datetime
    latency_ms: float

    @property
    def ok(self) -> bool:
        """Whether the target acknowledged the change and its readers are served the new value."""
        return self.ack is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        ack = self.ack
        return {
            "target": self.target,
            "active": self.active,
            "ok": self.ok,
            "error": self.error,
            "acknowledged_at": isoformat_ms(ack.acknowledged_at) if ack else None,
            "change_id": ack.change_id if ack else None,
            "changed": ack.changed if ack else None,
            "served": ack.served if ack else None,
            "served_detail": ack.served_detail if ack else None,
            "created": ack.created if ack else None,
            "where": ack.target if ack else None,
            "started_at": isoformat_ms(self.started_at),
            "finished_at": isoformat_ms(self.finished_at),
            "latency_ms": round(self.latency_ms, 1),
        }


class Fanout:
    """Sends ``set_active(active)`` to every target in parallel and collects the answers.

    Args:
        targets: Where to send the change.
        active: The value to set.
        actor: Who asks (recorded by each target where it can).
        reason: Why.
        on_result: Called with each result as it arrives, from the target's thread;
            its exceptions are logged and ignored.
        clock: For the times in the results.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        active: bool,
        actor: str,
        reason: str,
        on_result: Callable[[TargetResult], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not targets:
            raise ValueError("no target to change")
        self.targets = list(targets)
        self.active = active
        self._actor = actor
        self._reason = reason
        self._on_result = on_result
        self._clock = clock
        self._cond = threading.Condition()
        self._results: dict[str, TargetResult] = {}

    def start(self) -> Fanout:
        """Start one thread per target and return at once.

        Each call runs in a copy of the caller's context, so what the caller set
        for this change (:data:`APPROVERS`) reaches every target.
        """
        for target in self.targets:
            context = contextvars.copy_context()
            threading.Thread(
                target=context.run,
                args=(self._call, target),
                name=f"breakglass-{target.name}",
                daemon=True,
            ).start()
        return self

    @property
    def results(self) -> list[TargetResult]:
        """The answers so far, in the targets' order."""
        with self._cond:
            return [self._results[t.name] for t in self.targets if t.name in self._results]

    @property
    def done(self) -> bool:
        """Whether every target has answered."""
        with self._cond:
            return len(self._results) == len(self.targets)

    def wait_first_ack(self, timeout: float | None = None) -> TargetResult | None:
        """Wait until one target acknowledged (return it) or all failed (return ``None``).

        Also returns ``None`` when ``timeout`` passed with neither.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    any(r.ok for r in self._results.values())
                    or len(self._results) == len(self.targets)
                ),
                timeout,
            )
            return next(
                (self._results[t.name] for t in self.targets if _ok(self._results, t)), None
            )

    def wait_all(self, timeout: float | None = None) -> list[TargetResult]:
        """Wait until every target answered (or ``timeout`` passed); the results so far."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._results) == len(self.targets), timeout)
        return self.results

    def _call(self, target: Target) -> None:
        started, t0 = self._clock.now(), time.monotonic()
        ack: Acknowledgement | None = None
        error: str | None = None
        if target.admin is None:
            error = target.no_admin()
        else:
            try:
                ack = target.admin.set_active(self.active, actor=self._actor, reason=self._reason)
                if not ack.confirmed:
                    # A 2xx the readers do not see is no halt (or resume) at all.
                    served = "unknown" if ack.served is None else str(ack.served).lower()
                    error = (
                        f"NotServedError: acknowledged, but readers are served {served} "
                        f"({ack.served_detail})"
                    )
            except BreakglassError as exc:
                error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # an adapter bug must not silence the other targets
                logger.exception("target %s failed unexpectedly", target.name)
                error = f"unexpected {type(exc).__name__}"
        result = TargetResult(
            target=target.name,
            active=self.active,
            ack=ack,
            error=error,
            started_at=started,
            finished_at=self._clock.now(),
            latency_ms=(time.monotonic() - t0) * 1000.0,
        )
        with self._cond:
            self._results[target.name] = result
            self._cond.notify_all()
        if self._on_result is not None:
            try:
                self._on_result(result)
            except Exception:
                logger.exception("a listener of %s's result failed", target.name)


def _ok(results: dict[str, TargetResult], target: Target) -> bool:
    result = results.get(target.name)
    return result is not None and result.ok


APPROVERS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "breakglass_approvers", default=()
)
"""Who approved the resume being made (set by the resumption gate around the change).

A target that carries approvals on (the kill switch's signed resume
authorisation) names them; empty when no gate approved the change.
"""


@contextmanager
def approving(approvers: Sequence[str]) -> Iterator[None]:
    """Set :data:`APPROVERS` for the changes started inside."""
    token = APPROVERS.set(tuple(approvers))
    try:
        yield
    finally:
        APPROVERS.reset(token)


def change_all(
    targets: Sequence[Target],
    *,
    active: bool,
    actor: str,
    reason: str,
    timeout: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[TargetResult]:
    """Change every target in parallel and wait for all of them (at most ``timeout`` seconds).

    One result per target, in the targets' order: a target that did not answer in time is a
    failure naming it and the timeout, never left out, so a caller counting failures cannot
    read a partial list as "changed everywhere".
    """
    started, t0 = clock.now(), time.monotonic()
    fan = Fanout(targets, active=active, actor=actor, reason=reason, clock=clock).start()
    answered = {r.target: r for r in fan.wait_all(timeout)}
    finished, elapsed_ms = clock.now(), (time.monotonic() - t0) * 1000.0
    return [
        answered.get(t.name)
        or TargetResult(
            target=t.name,
            active=active,
            ack=None,
            # It may still apply the change later: unknown, so not confirmed.
            error=f"no answer from {t.name} within {timeout:g} s; it may still apply the change",
            started_at=started,
            finished_at=finished,
            latency_ms=elapsed_ms,
        )
        for t in fan.targets
    ]
