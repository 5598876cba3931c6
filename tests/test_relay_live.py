"""A real relay process, 20 real worker processes on the local provider, and serve watching them.

Every reader (the relay and each worker) reports to serve. A halt through
serve with ``?wait=fleet`` answers once all 21 refuse; a worker killed with
SIGKILL is shown silent, never halted; a relay killed with SIGKILL halts every
worker within ``silent_after``; a worker started while no relay writes stays
halted until one does; a stopped relay (SIGTERM) halts them at once.

Readers that read another store than serve's (a bridge, and a relay with its
workers) report normally and are flagged as reading another source in
``/v1/fleet``, ``/v1/status`` and the ``?wait=fleet`` answer of a halt.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.local.store import LocalStore
from breakglass.probe.fleet import Fleet
from breakglass.testing.relay import RelayProcess, wait_for
from breakglass.testing.serve import running_serve

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.probe.fleet import Reader
    from breakglass.testing.serve import Running

pytestmark = pytest.mark.live

KEY = "system-active"
WORKERS = 20
SILENT_AFTER = 2.0
REPORT_INTERVAL = 0.5


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_STATE_DIR": str(tmp_path / "relay-state"),
        "BREAKGLASS_LOCAL__PATH": str(tmp_path / "local.db"),
        "BREAKGLASS_RELAY__PATH": str(tmp_path / "relay.channel"),
        "BREAKGLASS_RELAY__SILENT_AFTER": str(SILENT_AFTER),
    }


def _workers(tmp_path: Path, count: int, name: str) -> Fleet:
    workdir = tmp_path / name
    workdir.mkdir()
    settings = {
        "provider": "relay",
        "sections": {
            "relay": {"path": str(tmp_path / "relay.channel"), "silent_after": SILENT_AFTER}
        },
    }
    return Fleet(count, settings, workdir, ready_timeout=3.0, lifetime=300.0)


def _fleet(serve: Running) -> dict[str, Any]:
    with serve.client("viewer") as c:
        response = c.get("/v1/fleet")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _until(serve: Running, check: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        fleet = _fleet(serve)
        if check(fleet):
            return fleet
        assert time.monotonic() < deadline, f"serve shows: {fleet['line']}"
        time.sleep(0.1)


def _halt_and_wait_for_the_fleet(serve: Running, readers: int) -> None:
    with serve.client("halter") as c:
        response = c.post(
            "/v1/halt", params={"wait": "fleet", "timeout": 20}, json={"reason": "drill"}
        )
    assert response.status_code == 200, response.text
    seen = response.json()["fleet"]
    assert seen["done"] is True, seen
    assert seen["line"] == f"halted on {readers} of {readers} readers"
    assert seen["last_refused_after_s"] is not None
    assert 0 <= seen["last_refused_after_s"] < 20


def _kill_one_worker(serve: Running, fleet: Fleet, readers: int) -> Reader:
    """SIGKILL one worker: serve shows it silent, never halted. It leaves the fleet's checks."""
    victim = fleet.readers[0]
    victim.process.send_signal(signal.SIGKILL)
    shown = _until(serve, lambda f: f["silent"] == 1)
    assert shown["halted"] == readers - 1
    assert shown["line"].startswith(f"halted on {readers - 1} of {readers} readers; ")
    assert " 1 silent for " in shown["line"]
    fleet.readers.remove(victim)
    return victim


def test_twenty_workers_behind_a_relay_reported_to_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "local.db")
    with running_serve(tmp_path) as serve:
        # The relay and every worker inherit these; serve's own bridge was built before them.
        monkeypatch.setenv("BREAKGLASS_REPORT__URL", serve.url)
        monkeypatch.setenv("BREAKGLASS_REPORT__TOKEN", serve.tokens["reporter"])
        monkeypatch.setenv("BREAKGLASS_REPORT__INTERVAL", str(REPORT_INTERVAL))
        relay = RelayProcess(_env(tmp_path), tmp_path / "relay.log")
        with relay, _workers(tmp_path, WORKERS, "fleet") as fleet:
            fleet.start()
            fleet.wait_ready(60.0, lambda: None)
            assert wait_for(fleet, active=True, timeout=30.0) == []
            readers = WORKERS + 1
            shown = _until(serve, lambda f: f["active"] == readers)
            assert shown["line"] == f"active on {readers} of {readers} readers"
            roles = sorted({r["role"] for r in shown["reader_list"]})
            assert roles == ["relay", "worker"]

            _halt_and_wait_for_the_fleet(serve, readers)
            assert wait_for(fleet, active=False, timeout=10.0, cause="off") == []
            victim = _kill_one_worker(serve, fleet, readers)

            store.write(KEY, True, actor="test", reason="resume")
            assert wait_for(fleet, active=True, timeout=30.0) == []

            relay.kill()
            # Nothing tells the workers; each notices the silence on its own clock.
            assert wait_for(fleet, active=False, timeout=SILENT_AFTER + 20.0, cause="error") == []
            fleet.readers.append(victim)  # closed with the others

            # A worker (re)started now reads a file from a dead relay: halted until a relay writes.
            with _workers(tmp_path, 1, "late") as late:
                late.start()
                late.wait_ready(30.0, lambda: None)
                assert late.readers[0].active is False

                relay.start()  # the same file, a new relay: everyone resumes
                assert wait_for(late, active=True, timeout=30.0) == []

            relay.stop()  # SIGTERM: the relay writes "closed" before it goes, and says so
            _until(serve, lambda f: f["stopped"] >= 1)


def _local_readers(tmp_path: Path, store: Path, name: str) -> Fleet:
    workdir = tmp_path / name
    workdir.mkdir()
    settings = {"provider": "local", "local": {"path": str(store), "poll_interval": 0.05}}
    return Fleet(1, settings, workdir, ready_timeout=3.0, lifetime=300.0)


def test_readers_of_another_store_are_flagged_before_a_halt_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.db"
    LocalStore(other).write(KEY, True, actor="test", reason="another store, also on")
    with running_serve(tmp_path) as serve:
        monkeypatch.setenv("BREAKGLASS_REPORT__URL", serve.url)
        monkeypatch.setenv("BREAKGLASS_REPORT__TOKEN", serve.tokens["reporter"])
        monkeypatch.setenv("BREAKGLASS_REPORT__INTERVAL", str(REPORT_INTERVAL))
        relay_env = {**_env(tmp_path), "BREAKGLASS_LOCAL__PATH": str(other)}
        with (
            _local_readers(tmp_path, tmp_path / "local.db", "right") as right,
            _local_readers(tmp_path, other, "wrong") as wrong,
            RelayProcess(relay_env, tmp_path / "relay.log"),
            _workers(tmp_path, 2, "behind") as behind,
        ):
            for fleet in (right, wrong, behind):
                fleet.start()
            for fleet in (right, wrong, behind):
                fleet.wait_ready(60.0, lambda: None)
                assert wait_for(fleet, active=True, timeout=30.0) == []
            shown = _until(serve, lambda f: f["active"] == 5)
            assert shown["source_ids"] == serve.server.bridge.source_ids
            by_pid = {r["pid"]: r for r in shown["reader_list"]}
            assert by_pid[right.readers[0].process.pid]["source_match"] == "same"
            flagged = sorted(
                r["role"] for r in shown["reader_list"] if r["source_match"] == "another"
            )
            assert flagged == ["bridge", "relay", "worker", "worker"]
            assert by_pid[wrong.readers[0].process.pid]["source_match"] == "another"
            assert shown["another_source"] == 4
            assert shown["line"] == "active on 5 of 5 readers; 4 read another source"
            with serve.client("viewer") as c:
                status = c.get("/v1/status").json()
            assert status["fleet"]["another_source"] == 4

            with serve.client("halter") as c:
                response = c.post(
                    "/v1/halt", params={"wait": "fleet", "timeout": 3}, json={"reason": "drill"}
                )
            assert response.status_code == 200, response.text
            seen = response.json()["fleet"]
            # Only the reader on serve's store stops; the answer names the four that cannot.
            assert seen["done"] is False
            assert sorted(seen["still_active"]) == sorted(seen["another_source_readers"])
            assert len(seen["another_source_readers"]) == 4
            assert seen["line"] == "halted on 1 of 5 readers; 4 still active; 4 read another source"
            assert wait_for(right, active=False, timeout=10.0, cause="off") == []
            assert [r.active for f in (wrong, behind) for r in f.readers] == [True] * 3
