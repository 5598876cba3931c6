"""Reader reports: every reader tells serve what it decides; serve shows the fleet.

:class:`~breakglass.reports.reporter.Reporter` runs in each reader (relay,
bridge, worker) on its own thread; :class:`~breakglass.reports.fleet.FleetView`
runs in serve (``POST /v1/reports``, ``GET /v1/fleet``, ``POST /v1/halt?wait=fleet``).
See docs/relay.md.
"""

from __future__ import annotations

from breakglass.reports.fleet import FleetView
from breakglass.reports.report import ReaderReport, ReportError
from breakglass.reports.reporter import Reporter
from breakglass.reports.settings import ReportSettings, load_report_settings

__all__ = [
    "FleetView",
    "ReaderReport",
    "ReportError",
    "ReportSettings",
    "Reporter",
    "load_report_settings",
]
