"""The inference service's side of holding: submit a decision, deliver it now or hold it.

Usage::

    queue = HoldQueue(HoldStore.open(), guard)          # guard: breakglass.Guard
    decision = queue.submit("credit-decision", {"applicant": "a-17", "outcome": "refused"},
                            key="a-17/2026-12-05")
    if decision.released:
        send_letter(...)                                # active: deliver as usual
    else:
        answer_202(decision.ticket)                     # halted: held for review
    ...
    queue.deliver_released(send_held_letter)            # after the review released some

Fail closed: while halted, a decision that cannot be stored raises
:class:`~breakglass.hold.store.HoldError` and must not be delivered either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.errors import StoreError
from breakglass.hold.store import HoldError

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.guard import Guard
    from breakglass.hold.store import HeldDecision, HoldStore

logger = logging.getLogger("breakglass.hold")


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`HoldQueue.submit` did: released (deliver it now) or held (a ticket)."""

    released: bool
    ticket: str | None = None
    held_because: str | None = None


class HoldQueue:
    """Decisions made but not yet delivered: released while active, held durably while halted.

    Args:
        store: Where held decisions wait (serve's database).
        guard: The service's guard; its ``active`` decides (or any object with an ``active`` bool).
    """

    def __init__(self, store: HoldStore, guard: Guard | Any) -> None:
        self.store = store
        self.guard = guard

    def __repr__(self) -> str:
        return f"HoldQueue({self.store!r})"

    def _halted_because(self) -> str | None:
        if self.guard.active:
            return None
        engine = getattr(self.guard, "engine", None)
        state = getattr(engine, "state", None)
        return f"halted ({state.cause.value}: {state.detail})" if state is not None else "halted"

    def submit(self, kind: str, payload: dict[str, Any], *, key: str | None = None) -> Decision:
        """Release the decision (active) or hold it durably (halted).

        Raises:
            HoldError: Halted, and the decision could not be stored: do not deliver it.
        """
        because = self._halted_because()
        if because is None:
            return Decision(released=True)
        return self.hold(kind, payload, because=because, key=key)

    def hold(
        self, kind: str, payload: dict[str, Any], *, because: str, key: str | None = None
    ) -> Decision:
        """Hold a decision whatever the state (the middleware, which knows it is halted)."""
        try:
            held = self.store.hold(kind, payload, because=because, key=key)
        except HoldError:
            raise
        except (StoreError, TypeError, ValueError) as exc:
            raise HoldError(
                f"the decision was NOT delivered and could NOT be held: {exc}"
            ) from None
        return Decision(released=False, ticket=held.ticket, held_because=held.held_because)

    def status(self, ticket: str) -> HeldDecision | None:
        """Where a held decision stands (held, released, discarded, delivered)."""
        return self.store.get(ticket)

    def deliver_released(
        self, deliver: Callable[[HeldDecision], None], *, limit: int = 1000
    ) -> int:
        """Deliver every decision the review released, marking each delivered; the count.

        At least once: a crash between ``deliver`` and the mark delivers that
        one again on the next call, so ``deliver`` should use the decision's
        ``ticket`` (or ``key``) to recognise a repeat.
        """
        done = 0
        for held in self.store.decisions(("released",), limit):
            if not self.guard.active:
                break  # halted again: released decisions wait with the rest
            deliver(held)
            if self.store.mark_delivered(held.ticket):
                done += 1
        return done
