"""Holding pending decisions: made, not yet delivered, and kept for review while halted.

:class:`~breakglass.hold.queue.HoldQueue` is what the inference service calls
(``submit`` a decision; it is released at once while active, held durably
while halted); :class:`~breakglass.hold.store.HoldStore` is where held
decisions wait (serve's database, so serve lists them for review after the
gated resume).
"""

from breakglass.hold.queue import Decision, HoldQueue
from breakglass.hold.store import HeldDecision, HoldStore

__all__ = ["Decision", "HeldDecision", "HoldQueue", "HoldStore"]
