"""The annual break-glass drill: the plan (``[drill]``), the run, its signed evidence.

Only the plan is imported here: the policy file needs it, and nothing else of
the drill should load with it (the run needs the ``drill`` extra).
"""

from __future__ import annotations

from breakglass.drill.plan import DrillPlan

__all__ = ["DrillPlan"]
