"""serve's suspension listener: halts and resumes answered by serve go to the notification chain.

serve calls :meth:`NotifyListener.on_event` after it has answered the person
who pressed stop, on its listener thread; the listener only stores rows in
the outbox (milliseconds) and the notifier's own threads send them. The
``breakglass.suspension_listeners`` entry point names :func:`make_listener`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK

if TYPE_CHECKING:
    from breakglass.notify.notifier import Notifier
    from breakglass.settings import Settings

logger = logging.getLogger("breakglass.notify")


def actor_of(actor: dict[str, Any]) -> str:
    """The person as serve records them (``Identity.actor``): the OIDC or system name, or ``token:<name>``."""
    name = str(actor.get("name") or actor.get("subject") or "unknown")
    return name if actor.get("kind") in ("oidc", "system") else f"token:{name}"


class NotifyListener:
    """Turns serve's ``halt`` and ``resume`` events into notifications."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def __repr__(self) -> str:
        return f"NotifyListener({self.notifier!r})"

    def on_event(self, event: Any) -> None:
        """Store the notifications of a ``halt``, ``halt-failed``, ``ungated-resume`` or ``resume``.

        ``halt-complete`` is not announced.
        """
        suspension_id = event.suspension_id or self._fallback_id(event)
        if event.kind == "halt":
            groups = self.notifier.halted(
                suspension_id=suspension_id,
                actor=actor_of(event.actor),
                reason=event.reason,
                since=event.at,
                personal_data_affected=event.personal_data_affected,
                business_continuity=event.business_continuity,
                severity=getattr(event, "severity", None),
                incident=event.incident,
                flag_key=self.notifier.flag_key,
            )
            logger.info("halt %s: notifying %s", suspension_id, ", ".join(groups) or "nobody")
        elif event.kind == "halt-failed":
            groups = self.notifier.halt_failed(
                suspension_id=suspension_id,
                actor=actor_of(event.actor),
                reason=event.reason,
                at=event.at,
            )
            logger.error("NOT HALTED %s: paging %s", suspension_id, ", ".join(groups) or "nobody")
        elif event.kind == "ungated-resume":
            groups = self.notifier.ungated_resume(
                suspension_id=suspension_id,
                actor=actor_of(event.actor),
                reason=event.reason,
                at=event.at,
                seq=event.at.strftime("%Y%m%dT%H%M%S%f"),
            )
            logger.error(
                "UNGATED RESUME %s: paging %s", suspension_id, ", ".join(groups) or "nobody"
            )
        elif event.kind == "resume":
            self.notifier.resumed(
                suspension_id=suspension_id,
                actor=actor_of(event.actor),
                reason=event.reason,
                at=event.at,
            )

    def _fallback_id(self, event: Any) -> str:
        # serve could not keep the suspension record: the notifications still need one key.
        if event.kind == "resume":
            latest = self.notifier.outbox.latest_events(1)
            if latest and latest[0][1] == "halt":
                return latest[0][0]
        return f"halt-{event.at.strftime('%Y%m%dT%H%M%S')}"


class _Silent:
    """The listener when no policy file exists: nobody is told, and the log says so once."""

    notifier = None

    def on_event(self, event: Any) -> None:
        if event.kind == "halt":
            logger.warning(
                "halt %s: no notification policy, nobody is notified", event.suspension_id
            )


def make_listener(settings: Settings) -> NotifyListener | _Silent:
    """The entry point serve loads: the notifier of the policy file, started.

    Raises:
        ConfigurationError: The policy file exists but is invalid (serve does not start).
    """
    from breakglass.audit.recorder import AuditRecorder
    from breakglass.notify.notifier import open_notifier
    from breakglass.policy import load_policy, policy_file

    if not policy_file().exists():
        logger.warning("no policy file %s: halts notify nobody", policy_file())
        return _Silent()
    policy = load_policy()
    recorder = AuditRecorder.for_bridge(settings, "notify", clock=SYSTEM_CLOCK)
    notifier = open_notifier(settings, policy.notify, recorder=recorder, flag_key=settings.flag_key)
    notifier.start()
    return NotifyListener(notifier)
