"""The probe's three reports: a table for people, JSON for machines, JUnit XML for CI.

Every report is built from the same :class:`breakglass.probe.result.ProbeResult`
and says the same thing: the figures of every reader and of the fleet, the
rounds that timed out (counted, never dropped), the bounds, and the verdict.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from breakglass.clock import isoformat_ms
from breakglass.safe_text import safe

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.probe.result import Case, ProbeResult
    from breakglass.probe.stats import Summary

SCHEMA = "breakglass.probe/v1"
PER_READER_ROWS = 8
"""Up to this many readers, the table shows a row per reader; beyond, see JSON or JUnit."""

_FIGURES = ("min", "p50", "p95", "p99", "max")


def _cell(summary: Summary, name: str, timeout_ms: float) -> str:
    value = getattr(summary, name)
    if value is not None:
        return f"{value:.1f}" if abs(value) < 10_000 else f"{value:.0f}"
    if summary.rounds == 0 or (name == "min" and summary.n == 0 and summary.timed_out == 0):
        return "-"
    return f">{timeout_ms:.0f}"


def _row(label: str, summary: Summary, timeout_ms: float) -> str:
    cells = "".join(f"{_cell(summary, name, timeout_ms):>9}" for name in _FIGURES)
    return f"{label:<44}{summary.rounds:>7}{summary.timed_out:>6}{cells}"


def render_table(result: ProbeResult) -> str:
    """The figures and the verdict as a text table (milliseconds)."""
    halts = sum(1 for r in result.rounds if not r.target)
    resumes = len(result.rounds) - halts
    timeout_ms = result.timeout_s * 1000.0
    readers = f"{result.readers} reader{'s' if result.readers != 1 else ''}"
    lines = [
        f"breakglass probe: provider {result.provider}, flag {result.flag_key}, {readers}, "
        f"{len(result.rounds)} of {result.rounds_requested} rounds ({halts} halts, "
        f"{resumes} resumes), timeout {result.timeout_s:g} s{_load_text(result)}",
        f"{'figure (ms)':<44}{'rounds':>7}{'t/o':>6}" + "".join(f"{n:>9}" for n in _FIGURES),
        _row("admin write (started -> acknowledged)", result.write_summary(), timeout_ms),
    ]
    last = "last reader" if result.readers > 1 else "reader"
    lines += [
        _row(
            f"fleet propagation (acked -> {last})",
            result.fleet_summary("propagation_ms"),
            timeout_ms,
        ),
        _row(
            "  halts only (-> refusing)", result.fleet_summary("propagation_ms", "halt"), timeout_ms
        ),
        _row(
            "  resumes only (-> admitting)",
            result.fleet_summary("propagation_ms", "resume"),
            timeout_ms,
        ),
        _row(
            f"fleet end-to-end (started -> {last})",
            result.fleet_summary("end_to_end_ms"),
            timeout_ms,
        ),
    ]
    cases = result.cases()
    if 1 < result.readers <= PER_READER_ROWS:
        lines += [
            _row(f"reader {c.name.split()[-1]} propagation", c.propagation, timeout_ms)
            for c in cases[:-1]
        ]
    if result.readers > 1:
        lines.append(
            _row(
                "every reader, pooled: propagation",
                result.pooled_summary("propagation_ms"),
                timeout_ms,
            )
        )
    if result.readers > PER_READER_ROWS:
        slowest = max(cases[:-1], key=lambda c: _sort_key(c.propagation))
        lines.append(
            f"per-reader figures: in --json and --junit; slowest reader {slowest.name.split()[-1]} "
            f"(p99 {_cell(slowest.propagation, 'p99', timeout_ms)} ms)"
        )
    if result.unexpected:
        lines.append(
            f"unexpected flips (late, or for another cause than the toggle): {len(result.unexpected)}"
        )
    bounds = [
        f"{label}p{p} <= {b:g} ms"
        for label, p, b in (
            ("", 95, result.bounds.max_p95_ms),
            ("", 99, result.bounds.max_p99_ms),
            ("halts ", 95, result.bounds.max_halt_p95_ms),
            ("halts ", 99, result.bounds.max_halt_p99_ms),
        )
        if b is not None
    ]
    lines.append(
        f"bounds on propagation: {', '.join(bounds) if bounds else 'none'}; "
        "every round must be observed by every reader"
    )
    problems = result.problems
    lines.extend(f"  FAIL {p}" for p in _shown_problems(result, cases, problems))
    lines.append("PASS" if not problems else "FAIL")
    # Provider, flag and problems carry outside text (vendor errors): one escaped line each.
    return "\n".join(safe(line) for line in lines)


def _shown_problems(result: ProbeResult, cases: list[Case], problems: list[str]) -> list[str]:
    """The problems, with a large fleet's per-reader ones folded into one line."""
    if result.readers <= PER_READER_ROWS:
        return problems
    failed = [c for c in cases[:-1] if not c.passed]
    folded = {p for c in failed for p in c.failures}
    shown = [p for p in problems if p not in folded]
    if failed:
        worst = max(failed, key=lambda c: _sort_key(c.propagation))
        shown.insert(
            0,
            f"{len(failed)} of {result.readers} readers failed (each one is in --json and "
            f"--junit); worst {worst.failures[0]}",
        )
    return shown


def _load_text(result: ProbeResult) -> str:
    start, end = result.load
    if start is None:
        return ""
    return f", host load {start:g}" + ("" if end is None else f" -> {end:g}")


def _sort_key(summary: Summary) -> float:
    value = summary.p99
    return float("inf") if value is None else value


def _case_dict(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "passed": case.passed,
        "failures": case.failures,
        "propagation_ms": case.propagation.as_dict(),
        "end_to_end_ms": case.end_to_end.as_dict(),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def to_json(result: ProbeResult) -> dict[str, Any]:
    """The whole result as JSON-ready data (schema ``breakglass.probe/v1``).

    Figures are milliseconds; ``null`` in a percentile means "beyond the
    timeout" (the rounds are counted in ``timed_out``). Round times are
    relative to the first round's ``write_started``.
    """
    cases = result.cases()
    origin = result.rounds[0].write_started if result.rounds else 0.0
    return {
        "schema": SCHEMA,
        "run_id": result.run_id,
        "provider": result.provider,
        "flag_key": result.flag_key,
        "readers": result.readers,
        "rounds_requested": result.rounds_requested,
        "rounds_completed": len(result.rounds),
        "timeout_s": result.timeout_s,
        "spacing_s": result.spacing_s,
        "readers_ready_s": result.ready_s,
        "seed": result.seed,
        "started_at": isoformat_ms(result.started_at),
        "finished_at": isoformat_ms(result.finished_at) if result.finished_at else None,
        "host": {
            "name": socket.gethostname(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_1m_start": result.load[0],
            "load_1m_end": result.load[1],
        },
        "bounds": {
            "max_p95_ms": result.bounds.max_p95_ms,
            "max_p99_ms": result.bounds.max_p99_ms,
            "max_halt_p95_ms": result.bounds.max_halt_p95_ms,
            "max_halt_p99_ms": result.bounds.max_halt_p99_ms,
        },
        "passed": result.passed,
        "problems": result.problems,
        "interrupted": result.interrupted,
        "aborted": result.aborted,
        "original_value": result.original,
        "restored": result.restored,
        "figures": {
            "write_ms": result.write_summary().as_dict(),
            "fleet": {
                "propagation_ms": result.fleet_summary("propagation_ms").as_dict(),
                "end_to_end_ms": result.fleet_summary("end_to_end_ms").as_dict(),
                "halt": {
                    "propagation_ms": result.fleet_summary("propagation_ms", "halt").as_dict(),
                    "end_to_end_ms": result.fleet_summary("end_to_end_ms", "halt").as_dict(),
                },
                "resume": {
                    "propagation_ms": result.fleet_summary("propagation_ms", "resume").as_dict(),
                    "end_to_end_ms": result.fleet_summary("end_to_end_ms", "resume").as_dict(),
                },
            },
            "pooled": {
                "propagation_ms": result.pooled_summary("propagation_ms").as_dict(),
                "end_to_end_ms": result.pooled_summary("end_to_end_ms").as_dict(),
            },
        },
        "cases": [_case_dict(c) for c in cases],
        "rounds": [
            {
                "index": r.index,
                "direction": r.direction,
                "target": r.target,
                "pause_s": round(r.pause_s, 4),
                "write_started_s": round(r.write_started - origin, 6),
                "write_ms": _ms(r.write_ms),
                "change_id": r.change_id,
                "propagation_ms": [
                    _ms(r.value("propagation_ms", i)) for i in range(result.readers)
                ],
                "end_to_end_ms": [_ms(r.value("end_to_end_ms", i)) for i in range(result.readers)],
                "fleet_propagation_ms": _ms(r.fleet("propagation_ms")),
                "fleet_end_to_end_ms": _ms(r.fleet("end_to_end_ms")),
                "timed_out": r.timed_out,
            }
            for r in result.rounds
        ],
        "unexpected_flips": [
            {
                "reader": u.reader,
                "at_s": round(u.at - origin, 6),
                "active": u.active,
                "cause": u.cause,
            }
            for u in result.unexpected
        ],
    }


def write_json(result: ProbeResult, path: Path) -> None:
    """Write :func:`to_json` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")


def _figures_text(case: Case) -> str:
    def line(label: str, s: Summary) -> str:
        figures = ", ".join(
            f"{name} {'-' if getattr(s, name) is None else round(getattr(s, name), 3)}"
            for name in _FIGURES
        )
        return f"{label}: rounds {s.rounds}, n {s.n}, timed out {s.timed_out}, {figures} (ms)"

    return "\n".join([line("propagation", case.propagation), line("end-to-end", case.end_to_end)])


def to_junit(result: ProbeResult) -> str:
    """JUnit XML: one test case per reader and one for the fleet.

    A case fails on a breached bound or a timed-out round; the fleet case
    carries an error when the run was interrupted, aborted or not restored.
    """
    cases = result.cases()
    classname = f"breakglass.probe.{result.provider}"
    duration = (
        (result.finished_at - result.started_at).total_seconds() if result.finished_at else 0.0
    )
    failures = sum(1 for c in cases if not c.passed)
    errors = 1 if result.error else 0
    root = ET.Element(
        "testsuites",
        name="breakglass probe",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        time=f"{duration:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=classname,
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{duration:.3f}",
        timestamp=isoformat_ms(result.started_at),
        hostname=socket.gethostname(),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("provider", result.provider),
        ("flag_key", result.flag_key),
        ("readers", result.readers),
        ("rounds_requested", result.rounds_requested),
        ("rounds_completed", len(result.rounds)),
        ("timeout_s", result.timeout_s),
        ("seed", result.seed),
        ("run_id", result.run_id),
        ("max_p95_ms", result.bounds.max_p95_ms),
        ("max_p99_ms", result.bounds.max_p99_ms),
        ("max_halt_p95_ms", result.bounds.max_halt_p95_ms),
        ("max_halt_p99_ms", result.bounds.max_halt_p99_ms),
    ):
        ET.SubElement(props, "property", name=name, value="" if value is None else str(value))
    for case in cases:
        fleet = case.name == "fleet"
        name = (
            f"fleet propagation (last of {result.readers} readers)"
            if fleet
            else f"{case.name} propagation"
        )
        element = ET.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=name,
            time=f"{duration if fleet else 0.0:.3f}",
        )
        if case.failures:
            failure = ET.SubElement(
                element, "failure", message=case.failures[0], type="ProbeBoundBreached"
            )
            failure.text = "\n".join(case.failures)
        if fleet and result.error:
            error = ET.SubElement(element, "error", message=result.error, type="ProbeError")
            error.text = result.error
        out = ET.SubElement(element, "system-out")
        out.text = _figures_text(case)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: ProbeResult, path: Path) -> None:
    """Write :func:`to_junit` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_junit(result), encoding="utf-8")
