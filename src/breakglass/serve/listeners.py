"""The seam for what follows a halt or a resume (notifications, suspension reports, ...).

serve calls every :class:`SuspensionListener` *after* it has answered the
person who pressed stop, on a thread of its own, one event at a time: a
listener can never delay, gate or undo a halt, and its exceptions are logged
and dropped. Listeners are found through the ``breakglass.suspension_listeners``
entry-point group; each entry point names a factory ``(Settings) -> SuspensionListener``.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from breakglass.clock import isoformat_ms
from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from breakglass.settings import Settings
    from breakglass.targets import TargetResult

logger = logging.getLogger("breakglass.serve")

GROUP = "breakglass.suspension_listeners"


@dataclass(frozen=True, slots=True)
class SuspensionEvent:
    """A halt or resume that serve has acknowledged to its caller.

    Attributes:
        kind: ``halt`` (the first target acknowledged), ``halt-complete``
            (every target answered), ``resume``, or ``resume-failed``.
        suspension_id: The halt episode (``None`` when the store could not keep it).
        actor: The authenticated identity (``Identity.to_dict()``).
        reason: Why, in the person's words.
        at: When serve decided the outcome.
        incident: An incident reference, if given.
        personal_data_affected: As stated in the halt request.
        business_continuity: As stated in the halt request.
        severity: As stated in the halt request (``None``: not given).
        targets: Each target's result so far (``TargetResult.to_dict()``).
    """

    kind: str
    suspension_id: str | None
    actor: dict[str, Any]
    reason: str
    at: datetime
    incident: str | None = None
    personal_data_affected: bool = False
    business_continuity: bool = False
    severity: str | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "kind": self.kind,
            "suspension_id": self.suspension_id,
            "actor": self.actor,
            "reason": self.reason,
            "at": isoformat_ms(self.at),
            "incident": self.incident,
            "personal_data_affected": self.personal_data_affected,
            "business_continuity": self.business_continuity,
            "severity": self.severity,
            "targets": self.targets,
        }


class SuspensionListener(Protocol):
    """**Protocol**: told of each halt and resume once serve has answered.

    Implemented by ``breakglass.notify`` and others. Must not block for long:
    the next event waits.
    """

    def on_event(self, event: SuspensionEvent) -> None:
        """Handle one event (raise nothing you need: exceptions are logged and dropped)."""
        ...


def load_listeners(settings: Settings) -> list[SuspensionListener]:
    """Build every listener the installed distributions register; a broken one is logged and skipped."""
    made: list[SuspensionListener] = []
    for ep in entry_points(group=GROUP):
        try:
            factory: object = ep.load()
            if not callable(factory):
                logger.error(
                    "suspension listener %s names %r, not a factory; skipped", ep.name, factory
                )
                continue
            made.append(factory(settings))
        except ConfigurationError:
            raise  # a policy with a mistake stops serve, naming the key, rather than alert nobody
        except Exception:
            logger.exception("suspension listener %s failed to load; the others still run", ep.name)
    return made


def target_dicts(results: Sequence[TargetResult]) -> list[dict[str, Any]]:
    """The results as JSON-ready data."""
    return [r.to_dict() for r in results]


class ListenerRunner:
    """Delivers events to the listeners from one background thread, in order."""

    def __init__(self, listeners: Sequence[SuspensionListener]) -> None:
        self.listeners = list(listeners)
        self._queue: queue.Queue[SuspensionEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def emit(self, event: SuspensionEvent) -> None:
        """Queue ``event``; returns at once."""
        if not self.listeners:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="breakglass-listeners", daemon=True
            )
            self._thread.start()
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            for listener in self.listeners:
                try:
                    listener.on_event(event)
                except Exception:
                    logger.exception("suspension listener %r failed on %s", listener, event.kind)

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
