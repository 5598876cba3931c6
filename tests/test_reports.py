"""Reader reports: the report's checks, serve's fleet view, and a reporter that never blocks a halt."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.engine import StateEngine
from breakglass.errors import ConfigurationError
from breakglass.reports.fleet import FleetView
from breakglass.reports.report import ReaderReport, ReportError
from breakglass.reports.reporter import Reporter
from breakglass.reports.settings import ReportSettings, load_report_settings
from breakglass.settings import Settings
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from pathlib import Path


def report(clock: ManualClock, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": "gpu-1",
        "pid": 100,
        "instance": "abc",
        "service": "inference",
        "role": "worker",
        "provider": "relay",
        "flag": "system-active",
        "active": True,
        "cause": "active",
        "confirmed_at": None,
        "flipped_at": None,
        "sent_at": "2026-01-01T00:00:00.000Z",
        "seq": 1,
        "interval": 1.0,
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("host", "", "host must be a text"),
        ("host", "x" * 201, "host must be a text"),
        ("service", "a\x1b[2Jb", "control characters"),
        ("role", "king", "role must be one of"),
        ("active", "true", "active must be true or false"),
        ("active", 1, "active must be true or false"),
        ("pid", -1, "pid must be a non-negative integer"),
        ("pid", True, "pid must be a non-negative integer"),
        ("seq", 1.5, "seq must be a non-negative integer"),
        ("interval", 0, "interval"),
        ("interval", float("inf"), "interval"),
        ("interval", True, "interval"),
        ("sent_at", None, "sent_at is required"),
        ("flipped_at", "yesterday", "flipped_at must be an RFC 3339 time"),
    ],
)
def test_malformed_reports_are_refused_by_field(
    clock: ManualClock, field: str, value: object, message: str
) -> None:
    with pytest.raises(ReportError, match=message):
        ReaderReport.from_dict(report(clock, **{field: value}))


def test_a_report_round_trips(clock: ManualClock) -> None:
    parsed = ReaderReport.from_dict(report(clock, flipped_at="2026-01-01T00:00:01.500Z"))
    assert ReaderReport.from_dict(parsed.to_dict()) == parsed
    assert parsed.reader_id == "gpu-1/100/abc"
    with pytest.raises(ReportError):
        ReaderReport.from_dict(["not", "an", "object"])


def test_silent_readers_are_never_counted_halted(clock: ManualClock) -> None:
    view = FleetView(clock)
    assert view.summary()["line"] == "no reader reports"
    for pid in range(50):
        view.receive(report(clock, pid=pid))
    assert view.summary()["line"] == "active on 50 of 50 readers"
    clock.advance(2.0)
    for pid in range(48):
        view.receive(report(clock, pid=pid, active=False, cause="off", seq=2))
    summary = view.summary()
    assert summary["line"] == "halted on 48 of 50 readers; 2 still active"
    clock.advance(10.0)
    for pid in range(48):
        view.receive(report(clock, pid=pid, active=False, cause="off", seq=3))
    summary = view.summary()
    assert (summary["halted"], summary["silent"], summary["active"]) == (48, 2, 0)
    assert summary["line"] == "halted on 48 of 50 readers; 2 silent for 12 s"


def test_the_line_for_silent_readers_counts_them_in_words(clock: ManualClock) -> None:
    view = FleetView(clock)
    view.receive(report(clock, pid=1))
    clock.advance(12.0)
    assert view.summary()["line"] == "the only reader silent for 12 s"
    view = FleetView(clock)
    view.receive(report(clock, pid=2))
    view.receive(report(clock, pid=3))
    clock.advance(12.0)
    assert view.summary()["line"] == "all 2 readers silent for 12 s"


def test_stopped_readers_leave_the_count_and_old_reports_never_win(clock: ManualClock) -> None:
    view = FleetView(clock)
    view.receive(report(clock, pid=1, seq=5, active=False, cause="off"))
    view.receive(report(clock, pid=1, seq=4))  # late: ignored
    view.receive(report(clock, pid=2, active=False, cause="closed"))
    summary = view.summary()
    assert (summary["halted"], summary["active"], summary["stopped"]) == (1, 0, 1)
    assert summary["line"] == "halted on 1 of 1 readers"


def test_wait_halted_answers_with_the_last_refusal(clock: ManualClock) -> None:
    view = FleetView(clock)
    asked = clock.now()
    for pid, delay in enumerate((0.010, 0.040, 0.025)):
        flipped = (asked + timedelta(seconds=delay)).isoformat()
        view.receive(report(clock, pid=pid, active=False, cause="off", flipped_at=flipped))
    seen = view.wait_halted(asked, timeout=0.0)
    assert seen["done"] is True
    assert seen["last_refused_after_s"] == pytest.approx(0.040)
    assert seen["line"] == "halted on 3 of 3 readers"


def test_wait_halted_names_who_still_runs(clock: ManualClock) -> None:
    view = FleetView(clock)
    view.receive(report(clock, pid=1))
    view.receive(report(clock, pid=2, active=False, cause="off"))
    seen = view.wait_halted(clock.now(), timeout=0.0)
    assert seen["done"] is False
    assert seen["still_active"] == ["gpu-1/1/abc"]
    assert seen["line"] == "halted on 1 of 2 readers; 1 still active"


def test_report_url_must_be_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKGLASS_REPORT__URL", "ftp://serve")
    with pytest.raises(ConfigurationError, match="BREAKGLASS_REPORT__URL"):
        load_report_settings(Settings(state_dir=tmp_path))


def test_a_hanging_serve_never_delays_a_halt(clock: ManualClock) -> None:
    """serve accepts the connection and never answers; the halt still happens at once."""
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)  # connections complete in the backlog; nothing is ever read
        port = hanging.getsockname()[1]
        src = ScriptedSource("local", clock)
        engine = StateEngine("system-active", [src], max_staleness=30.0, clock=clock)
        engine.start()
        settings = ReportSettings(url=f"http://127.0.0.1:{port}", timeout=30.0, interval=60.0)
        reporter = Reporter(engine, settings, role="bridge", provider="local")
        try:
            src.confirm(True)
            reporter.start()  # its first report is now stuck waiting for an answer
            src.confirm(False)  # the halt: the listener only notes the flip
            assert engine.active is False
            assert engine.state.cause.value == "off"
            assert reporter.sent == 0
        finally:
            engine.close()
            hanging.close()  # the stuck report fails now, and close() returns
            reporter.close()


def test_a_serve_answering_garbage_is_a_failed_report_not_a_dead_reporter(
    clock: ManualClock,
) -> None:
    with socket.socket() as liar:
        liar.bind(("127.0.0.1", 0))
        liar.listen(8)
        port = liar.getsockname()[1]

        def answer() -> None:
            conn, _ = liar.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00 not HTTP at all\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        src = ScriptedSource("local", clock)
        engine = StateEngine("system-active", [src], max_staleness=30.0, clock=clock)
        settings = ReportSettings(url=f"http://127.0.0.1:{port}", timeout=10.0)
        reporter = Reporter(engine, settings, role="bridge", provider="local")
        assert reporter.send() is False
        thread.join(10)


SERVE_SOURCE = "local:serve-host:/var/lib/breakglass/local.db"
OTHER_SOURCE = "local:serve-host:/var/lib/breakglass/old.db"
CHANNEL = "relay:/run/breakglass/relay.channel"


def test_source_ids_are_optional_and_checked(clock: ManualClock) -> None:
    old = ReaderReport.from_dict(report(clock))
    assert old.source_ids is None
    assert old.to_dict()["source_ids"] is None
    new = ReaderReport.from_dict(report(clock, source_ids=[SERVE_SOURCE, None], channel=CHANNEL))
    assert new.source_ids == (SERVE_SOURCE, None)
    assert ReaderReport.from_dict(new.to_dict()) == new
    for bad in ([], "a-string", [1], ["x" * 201], ["a\nb"], ["s"] * 9):
        with pytest.raises(ReportError, match="source_ids"):
            ReaderReport.from_dict(report(clock, source_ids=bad))


def test_readers_of_another_source_are_flagged_counted_and_named(clock: ManualClock) -> None:
    view = FleetView(clock, source_ids=[SERVE_SOURCE])
    view.receive(report(clock, pid=1, role="bridge", source_ids=[SERVE_SOURCE]))
    view.receive(report(clock, pid=2, role="bridge", source_ids=[OTHER_SOURCE]))
    view.receive(report(clock, pid=3, role="bridge"))  # an older reader: unknown, never refused
    # Stop wins in a reader: one of its sources serve halts is enough.
    view.receive(report(clock, pid=4, role="bridge", source_ids=[OTHER_SOURCE, SERVE_SOURCE]))
    matches = {r["pid"]: r["source_match"] for r in view.readers()}
    assert matches == {1: "same", 2: "another", 3: "unknown", 4: "same"}
    summary = view.summary()
    assert summary["another_source"] == 1
    assert summary["another_source_readers"] == ["gpu-1/2/abc"]
    assert summary["unknown_source"] == 1
    assert summary["line"] == "active on 4 of 4 readers; 1 reads another source"
    seen = view.wait_halted(clock.now(), timeout=0.0)
    assert seen["another_source_readers"] == ["gpu-1/2/abc"]
    # Visibility only: the flagged reader's own decision is what it reported.
    view.receive(report(clock, pid=2, seq=2, active=False, cause="off", source_ids=[OTHER_SOURCE]))
    assert view.summary()["line"] == (
        "halted on 1 of 4 readers; 3 still active; 1 reads another source"
    )
    view.receive(
        report(clock, pid=2, seq=3, active=False, cause="closed", source_ids=[OTHER_SOURCE])
    )
    assert view.summary()["another_source"] == 0  # a stopped reader reads nothing


def test_workers_are_judged_by_their_hosts_relay(clock: ManualClock) -> None:
    view = FleetView(clock, source_ids=[SERVE_SOURCE])
    worker = {"role": "worker", "provider": "relay", "source_ids": [CHANNEL]}
    view.receive(report(clock, host="a", pid=1, **worker))
    view.receive(report(clock, host="b", pid=1, **worker))
    view.receive(report(clock, host="c", pid=1, **worker))  # its relay does not report
    relay = {"role": "relay", "provider": "local", "channel": CHANNEL}
    view.receive(report(clock, host="a", pid=9, source_ids=[SERVE_SOURCE], **relay))
    view.receive(report(clock, host="b", pid=9, source_ids=[OTHER_SOURCE], **relay))
    matches = {(r["host"], r["pid"]): r["source_match"] for r in view.readers()}
    assert matches == {
        ("a", 1): "same",
        ("a", 9): "same",
        ("b", 1): "another",
        ("b", 9): "another",
        ("c", 1): "unknown",
    }
    assert view.summary()["another_source"] == 2


def test_a_serve_that_cannot_name_its_source_flags_nobody(clock: ManualClock) -> None:
    view = FleetView(clock, source_ids=[None])
    view.receive(report(clock, source_ids=[OTHER_SOURCE]))
    assert [r["source_match"] for r in view.readers()] == ["unknown"]
    assert view.summary()["another_source"] == 0
