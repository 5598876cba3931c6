"""The probe's statistics, verdicts and restore logic on known inputs (no processes)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from breakglass.errors import AdminUnavailableError
from breakglass.probe import Bounds, ProbeOptions, ProbeResult, Round, nearest_rank, summarize
from breakglass.probe.runner import _acknowledged_mono, _Run, default_timeout
from breakglass.probe.wire import Kind, ReaderEvent, error_line, parse, state_line
from breakglass.seams import Acknowledgement
from breakglass.settings import Settings


def test_nearest_rank_on_one_to_a_hundred() -> None:
    """p50, p95 and p99 of 1..100 are 50, 95 and 99: the value of rank ceil(p/100 * N)."""
    values = [float(v) for v in range(1, 101)]
    assert [nearest_rank(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]


def test_nearest_rank_never_understates_small_samples() -> None:
    """With fewer than 100 rounds the p99 is the maximum; float noise does not move a rank."""
    twenty = [float(v) for v in range(1, 21)]
    assert nearest_rank(twenty, 95) == 19.0  # 0.95 * 20 = 19.000000000000004 in floats
    assert nearest_rank(twenty, 99) == 20.0
    assert nearest_rank([7.0], 50) == 7.0


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_nearest_rank_rejects_out_of_range(percent: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], percent)


def test_summary_of_known_values() -> None:
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert summary.as_dict() == {
        "rounds": 5,
        "n": 5,
        "timed_out": 0,
        "min": 1.0,
        "p50": 3.0,
        "p95": 5.0,
        "p99": 5.0,
        "max": 5.0,
    }


def test_timeouts_are_counted_and_rank_above_every_value() -> None:
    """A timed-out round is never dropped: it counts, and percentiles landing on it are None."""
    values: list[float | None] = [float(v) for v in range(1, 98)] + [None, None, None]
    summary = summarize(values)
    assert (summary.rounds, summary.n, summary.timed_out) == (100, 97, 3)
    assert summary.min == 1.0
    assert summary.p50 == 50.0
    assert summary.p95 == 95.0
    assert summary.p99 is None  # rank 99 is a timeout: "beyond the timeout"
    assert summary.max is None
    dropped = summarize([float(v) for v in range(1, 98)])
    assert dropped.p99 == 97.0  # what dropping the timeouts would have claimed


def test_all_timed_out_and_empty() -> None:
    assert summarize([None, None]).as_dict() == {
        "rounds": 2,
        "n": 0,
        "timed_out": 2,
        "min": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }
    empty = summarize([])
    assert (empty.rounds, empty.n, empty.p50) == (0, 0, None)


def test_summarize_accepts_a_generator() -> None:
    assert summarize(v for v in [2.0, None, 1.0]).as_dict()["timed_out"] == 1


def test_bounds_name_each_breach() -> None:
    bounds = Bounds(max_p95_ms=10.0, max_p99_ms=20.0)
    assert bounds.breaches(summarize([1.0] * 100), "x") == []
    slow = bounds.breaches(summarize([1.0] * 90 + [15.0] * 9 + [30.0]), "x")
    assert slow == ["x: p95 15.000 ms > bound 10 ms"]
    tail = bounds.breaches(summarize([1.0] * 98 + [25.0, 25.0]), "x")
    assert tail == ["x: p99 25.000 ms > bound 20 ms"]
    timed = bounds.breaches(summarize([1.0] * 99 + [None]), "x")
    assert timed[0] == "x: 1 of 100 rounds timed out"
    assert Bounds().breaches(summarize([]), "x") == ["x: no round was measured"]


def _result(rounds: list[Round], readers: int, bounds: Bounds | None = None) -> ProbeResult:
    return ProbeResult(
        provider="test",
        flag_key="system-active-probe",
        readers=readers,
        rounds_requested=len(rounds),
        timeout_s=5.0,
        spacing_s=0.1,
        seed=1,
        run_id="abc",
        bounds=bounds or Bounds(),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
        original=True,
        restored=True,
        rounds=rounds,
    )


def test_round_figures_and_the_fleets_last_reader() -> None:
    """propagation from the acknowledgement, end-to-end from the write's start, fleet = slowest."""
    r = Round(0, False, write_started=10.000, write_acked=10.004, observed=(10.010, 10.024))
    assert r.write_ms == pytest.approx(4.0)
    assert r.value("propagation_ms", 0) == pytest.approx(6.0)
    assert r.value("end_to_end_ms", 1) == pytest.approx(24.0)
    assert r.fleet("propagation_ms") == pytest.approx(20.0)
    assert r.direction == "halt"
    early = Round(1, True, write_started=10.0, write_acked=10.004, observed=(10.003,))
    assert early.value("propagation_ms", 0) == pytest.approx(-1.0)  # seen before the ack: kept


def test_a_round_one_reader_missed_times_out_for_the_fleet() -> None:
    """The fleet's figure needs every reader; one missing reader makes the round a timeout."""
    rounds = [
        Round(0, False, 1.0, 1.001, (1.011, 1.021)),
        Round(1, True, 2.0, 2.001, (2.011, None)),
        Round(2, False, 3.0, 3.001, (3.005, 3.009)),
    ]
    result = _result(rounds, readers=2, bounds=Bounds(max_p99_ms=1000.0))
    cases = {c.name: c for c in result.cases()}
    assert set(cases) == {"reader 0", "reader 1", "fleet"}
    assert cases["reader 0"].passed
    assert cases["reader 1"].propagation.timed_out == 1
    assert cases["fleet"].propagation.as_dict()["timed_out"] == 1
    assert cases["fleet"].propagation.rounds == 3  # counted, not dropped
    assert not cases["fleet"].passed
    assert "1 of 3 rounds timed out" in cases["fleet"].failures[0]
    assert not result.passed
    assert result.fleet_summary("propagation_ms", "halt").n == 2
    assert result.fleet_summary("propagation_ms", "resume").timed_out == 1
    assert result.pooled_summary("propagation_ms").rounds == 6


def test_an_unrestored_or_interrupted_run_never_passes() -> None:
    result = _result([Round(0, False, 1.0, 1.001, (1.002,))], readers=1)
    assert result.passed
    result.interrupted = "SIGINT"
    assert not result.passed
    assert "interrupted by SIGINT after 1 of 1 rounds" in (result.error or "")
    result.interrupted = None
    result.restored = False
    assert "was not restored" in (result.error or "")


def test_wire_lines_round_trip() -> None:
    line = state_line(Kind.FLIP, active=False, at=12345.678901, cause="off")
    assert line == "flip 0 12345.678901 off"
    assert parse(line) == ReaderEvent(Kind.FLIP, active=False, at=12345.678901, cause="off")
    assert parse("ready 1 1.5 active").active is True
    assert parse(error_line("bad\nthing  here")).text == "bad thing here"
    for bad in ("hello", "flip 2 1.0 off", "flip 1 x off", "flip 1"):
        with pytest.raises(ValueError):  # noqa: PT011 -- any ValueError: out of protocol
            parse(bad)
    assert math.isclose(parse("flip 1 0.000001 active").at, 1e-6)


class _FlakyAdmin:
    """A FlagAdmin whose writes fail ``failures`` times, then work."""

    def __init__(self, failures: int, value: bool | None = True) -> None:
        self.failures = failures
        self.value = value
        self.writes: list[bool] = []

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:
        if self.failures:
            self.failures -= 1
            raise AdminUnavailableError("503 from the vendor")
        self.writes.append(active)
        self.value = active
        return Acknowledgement("system-active-probe", active, datetime.now(UTC))

    def get_active(self) -> bool | None:
        return self.value


def _restore(
    admin: _FlakyAdmin, *, original: bool | None, current: bool | None, uncertain: bool
) -> ProbeResult:
    run = _Run(Settings(provider="local"), ProbeOptions(), None, lambda _line: None)
    run.wrote, run.current, run.uncertain = True, current, uncertain
    result = _result([], readers=1)
    result.original, result.restored = original, False
    run._restore(admin, result)
    return result


def test_restore_retries_and_confirms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("breakglass.probe.runner.time.sleep", lambda _s: None)
    admin = _FlakyAdmin(failures=2, value=False)
    result = _restore(admin, original=True, current=False, uncertain=False)
    assert result.restored
    assert admin.writes == [True]


def test_restore_writes_when_the_last_write_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _FlakyAdmin(failures=0, value=True)
    result = _restore(admin, original=True, current=True, uncertain=True)
    assert result.restored
    assert admin.writes == [True]  # a write in flight may have landed: write the original anyway
    untouched = _FlakyAdmin(failures=0, value=True)
    assert _restore(untouched, original=True, current=True, uncertain=False).restored
    assert untouched.writes == []  # known to be back already: no extra change in the audit log


def test_a_flag_that_did_not_exist_is_left_false() -> None:
    admin = _FlakyAdmin(failures=0, value=True)
    assert _restore(admin, original=None, current=True, uncertain=False).restored
    assert admin.writes == [False]


def test_a_failed_restore_is_reported_never_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("breakglass.probe.runner.time.sleep", lambda _s: None)
    result = _restore(_FlakyAdmin(failures=99), original=True, current=False, uncertain=False)
    assert not result.restored
    assert "restore failed: AdminUnavailableError: 503 from the vendor" in (result.aborted or "")
    assert "was not restored" in (result.error or "")
    assert not result.passed


def test_propagation_is_timed_from_the_acknowledgement_not_from_the_served_check() -> None:
    """set_active returns after confirming what readers are served; the clock starts at the ack."""
    now = time.monotonic()
    two_seconds_ago = datetime.now(UTC) - timedelta(seconds=2)
    acked = _acknowledged_mono(two_seconds_ago, started=now - 10)
    assert now - 3 < acked < now - 1  # generous: only the order of magnitude matters
    # Never before the call started (a wall clock stepped forward), never after it returned.
    assert _acknowledged_mono(datetime.now(UTC) - timedelta(hours=1), started=now) == now
    assert _acknowledged_mono(datetime.now(UTC) + timedelta(hours=1), started=now - 1) >= now


def test_halt_only_bounds_gate_the_halts_alone() -> None:
    """A slow-by-design resume breaks a bound on every round, not one on the halts."""
    rounds = [
        Round(i, i % 2 == 1, float(i), float(i) + 0.001, (float(i) + (2.001 if i % 2 else 0.021),))
        for i in range(10)
    ]  # halts 20 ms, resumes 2000 ms
    assert _result(rounds, readers=1, bounds=Bounds(max_halt_p99_ms=50.0)).passed
    both = _result(rounds, readers=1, bounds=Bounds(max_p99_ms=50.0))
    assert not both.passed
    slow_halts = _result(rounds, readers=1, bounds=Bounds(max_halt_p95_ms=10.0))
    assert not slow_halts.passed
    fleet = {c.name: c for c in slow_halts.cases()}["fleet"]
    assert fleet.failures == ["fleet propagation (last reader), halts: p95 20.000 ms > bound 10 ms"]


def test_default_timeout_follows_the_declared_bound() -> None:
    """At least 5 s; twice a slow provider's bound, so a resume by design never times out."""
    assert default_timeout(0.02) == 5.0
    assert default_timeout(0.0) == 5.0
    assert default_timeout(8.0) == 16.0
