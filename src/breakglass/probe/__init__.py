"""The propagation-latency probe: toggle a flag, time when every reader's guard flips.

``breakglass probe`` (see ``docs/probe.md``) toggles a dedicated probe flag
through the provider's :class:`breakglass.seams.FlagAdmin`, and K reader
processes, each reading the flag as an inference service would, report when
their guard starts refusing or admitting. The figures, the rounds that timed
out, and a verdict against p95/p99 bounds come out as a table, JSON, JUnit XML
and a plot.

Modules: :mod:`~breakglass.probe.runner` (the run and its safety rules),
:mod:`~breakglass.probe.reader` (one reader process),
:mod:`~breakglass.probe.fleet` (starting and ending readers),
:mod:`~breakglass.probe.wire` (what readers say),
:mod:`~breakglass.probe.stats` (percentiles with timeouts),
:mod:`~breakglass.probe.result` (what was measured, the verdict),
:mod:`~breakglass.probe.report` (table, JSON, JUnit),
:mod:`~breakglass.probe.plot` (PNG, optional), :mod:`~breakglass.probe.progress`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breakglass.probe.result import Bounds, Case, ProbeResult, Round
    from breakglass.probe.runner import (
        ProbeOptions,
        ProbeRestoreError,
        check_flag_key,
        run_probe,
    )
    from breakglass.probe.stats import Summary, nearest_rank, summarize

# Lazy, so a reader process (python -m breakglass.probe.reader) imports only what it uses.
_WHERE = {
    "Bounds": "breakglass.probe.result",
    "Case": "breakglass.probe.result",
    "ProbeOptions": "breakglass.probe.runner",
    "ProbeRestoreError": "breakglass.probe.runner",
    "ProbeResult": "breakglass.probe.result",
    "Round": "breakglass.probe.result",
    "Summary": "breakglass.probe.stats",
    "check_flag_key": "breakglass.probe.runner",
    "nearest_rank": "breakglass.probe.stats",
    "run_probe": "breakglass.probe.runner",
    "summarize": "breakglass.probe.stats",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'breakglass.probe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Bounds",
    "Case",
    "ProbeOptions",
    "ProbeRestoreError",
    "ProbeResult",
    "Round",
    "Summary",
    "check_flag_key",
    "nearest_rank",
    "run_probe",
    "summarize",
]
