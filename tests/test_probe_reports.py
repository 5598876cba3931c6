"""The probe's reports: the JSON and JUnit shapes, the table, the plot."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from breakglass.probe import Bounds, ProbeResult, Round
from breakglass.probe.plot import render_plot
from breakglass.probe.report import SCHEMA, render_table, to_json, to_junit, write_json, write_junit
from breakglass.probe.result import UnexpectedFlip

if TYPE_CHECKING:
    from pathlib import Path

SUMMARY_KEYS = {"rounds", "n", "timed_out", "min", "p50", "p95", "p99", "max"}


def _result(
    *, timed_out: bool = False, bounds: Bounds | None = None, readers: int = 2
) -> ProbeResult:
    rounds = []
    for i in range(10):
        start = 100.0 + i
        observed: list[float | None] = [start + 0.002 + 0.001 * (i + r) for r in range(readers)]
        if timed_out and i == 3:
            observed[1] = None
        rounds.append(
            Round(i, i % 2 == 1, start, start + 0.001, tuple(observed), f"local:{i}", 0.1)
        )
    return ProbeResult(
        provider="local",
        flag_key="system-active-probe",
        readers=readers,
        rounds_requested=10,
        timeout_s=5.0,
        spacing_s=0.1,
        seed=7,
        run_id="r1",
        bounds=bounds or Bounds(max_p99_ms=500.0),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC),
        original=True,
        restored=True,
        rounds=rounds,
        unexpected=[UnexpectedFlip(1, 104.5, True, "active")] if timed_out else [],
    )


def _junit(result: ProbeResult) -> ET.Element:
    return ET.fromstring(to_junit(result))  # noqa: S314 -- our own output


def test_json_shape() -> None:
    data = to_json(_result())
    assert data["schema"] == SCHEMA
    assert data["passed"] is True
    assert data["problems"] == []
    assert (data["provider"], data["flag_key"], data["readers"]) == (
        "local",
        "system-active-probe",
        2,
    )
    assert (data["rounds_requested"], data["rounds_completed"]) == (10, 10)
    assert data["bounds"] == {
        "max_p95_ms": None,
        "max_p99_ms": 500.0,
        "max_halt_p95_ms": None,
        "max_halt_p99_ms": None,
    }
    assert data["restored"] is True
    assert data["original_value"] is True
    figures = data["figures"]
    assert set(figures) == {"write_ms", "fleet", "pooled"}
    assert set(figures["fleet"]) == {"propagation_ms", "end_to_end_ms", "halt", "resume"}
    assert set(figures["fleet"]["propagation_ms"]) == SUMMARY_KEYS
    assert figures["fleet"]["halt"]["propagation_ms"]["rounds"] == 5
    assert [c["name"] for c in data["cases"]] == ["reader 0", "reader 1", "fleet"]
    first = data["rounds"][0]
    assert first["direction"] == "halt"
    assert first["write_started_s"] == 0.0
    assert first["propagation_ms"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert first["fleet_propagation_ms"] == pytest.approx(2.0)
    assert first["timed_out"] == 0
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere


def test_json_marks_timeouts_as_null_and_counts_them() -> None:
    data = to_json(_result(timed_out=True))
    assert data["passed"] is False
    assert data["rounds"][3]["propagation_ms"][1] is None
    assert data["rounds"][3]["fleet_propagation_ms"] is None
    fleet = data["figures"]["fleet"]["propagation_ms"]
    assert (fleet["rounds"], fleet["n"], fleet["timed_out"]) == (10, 9, 1)
    assert fleet["max"] is None
    assert data["unexpected_flips"] == [
        {"reader": 1, "at_s": pytest.approx(4.5), "active": True, "cause": "active"}
    ]
    json.dumps(data, allow_nan=False)


def test_junit_one_case_per_reader_plus_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "probe.xml"
    write_junit(_result(readers=3), path)
    root = ET.parse(path).getroot()  # noqa: S314 -- our own output
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("name") == "breakglass.probe.local"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "0", "0")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == [
        "reader 0 propagation",
        "reader 1 propagation",
        "reader 2 propagation",
        "fleet propagation (last of 3 readers)",
    ]
    assert all(case.find("failure") is None for case in suite.iter("testcase"))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["provider"] == "local"
    assert props["max_p99_ms"] == "500.0"
    out = suite.find("testcase/system-out")
    assert out is not None
    assert "propagation: rounds 10" in (out.text or "")


def test_junit_fails_on_a_breached_bound() -> None:
    suite = _junit(_result(bounds=Bounds(max_p99_ms=0.001))).find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "3"
    failures = [c.find("failure") for c in suite.iter("testcase")]
    assert all(f is not None for f in failures)
    fleet = failures[-1]
    assert fleet is not None
    assert "p99" in (fleet.get("message") or "")
    assert "> bound 0.001 ms" in (fleet.get("message") or "")


def test_junit_fails_on_a_timed_out_round() -> None:
    suite = _junit(_result(timed_out=True)).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["reader 0 propagation"].find("failure") is None
    failure = cases["reader 1 propagation"].find("failure")
    assert failure is not None
    assert "1 of 10 rounds timed out" in (failure.get("message") or "")
    assert cases["fleet propagation (last of 2 readers)"].find("failure") is not None


def test_junit_errors_when_interrupted_or_not_restored() -> None:
    result = _result()
    result.interrupted = "SIGINT"
    result.restored = False
    suite = _junit(result).find("testsuite")
    assert suite is not None
    assert suite.get("errors") == "1"
    error = suite.find("testcase[last()]/error")
    assert error is not None
    assert "interrupted by SIGINT" in (error.get("message") or "")
    assert "was not restored" in (error.get("message") or "")


def test_table_for_people() -> None:
    text = render_table(_result())
    assert text.splitlines()[0].startswith("breakglass probe: provider local")
    assert "fleet propagation (acked -> last reader)" in text
    assert "reader 1 propagation" in text
    assert text.splitlines()[-1] == "PASS"
    failed = render_table(_result(timed_out=True, bounds=Bounds(max_p99_ms=1.0)))
    assert failed.splitlines()[-1] == "FAIL"
    assert ">5000" in failed  # a percentile beyond the timeout
    assert "FAIL fleet propagation (last reader): 1 of 10 rounds timed out" in failed


def test_table_summarises_a_large_fleet() -> None:
    text = render_table(_result(readers=20))
    assert "reader 19 propagation" not in text
    assert "every reader, pooled" in text
    assert "per-reader figures: in --json and --junit; slowest reader" in text
    failed = render_table(_result(readers=20, bounds=Bounds(max_p99_ms=0.001)))
    fails = [line for line in failed.splitlines() if line.startswith("  FAIL")]
    assert fails[0].startswith("  FAIL 20 of 20 readers failed (each one is in --json and --junit)")
    assert fails[1].startswith("  FAIL fleet propagation (last reader): p99")
    assert len(fails) == 2


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "img" / "probe.png"
    small, large = to_json(_result(timed_out=True)), to_json(_result(readers=12))
    render_plot([small, large], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "probe.json"
    write_json(_result(), path)
    assert json.loads(path.read_text())["schema"] == SCHEMA
