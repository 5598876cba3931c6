"""A real relay process and 20 real worker processes on the local provider.

Halt and resume reach every worker; a relay killed with SIGKILL halts every
worker within ``silent_after``; a worker started while no relay writes stays
halted until one does; a stopped relay (SIGTERM) halts them at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass.local.store import LocalStore
from breakglass.probe.fleet import Fleet
from breakglass.testing.relay import RelayProcess, wait_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.live

KEY = "system-active"
WORKERS = 20
SILENT_AFTER = 2.0


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


def test_twenty_workers_follow_the_relay_and_halt_when_it_dies(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "local.db")
    store.write(KEY, True, actor="test", reason="start active")
    relay = RelayProcess(_env(tmp_path), tmp_path / "relay.log")
    with relay, _workers(tmp_path, WORKERS, "fleet") as fleet:
        fleet.start()
        fleet.wait_ready(60.0, lambda: None)
        assert wait_for(fleet, active=True, timeout=30.0) == []

        store.write(KEY, False, actor="test", reason="halt")
        assert wait_for(fleet, active=False, timeout=30.0, cause="off") == []

        store.write(KEY, True, actor="test", reason="resume")
        assert wait_for(fleet, active=True, timeout=30.0) == []

        relay.kill()
        # Nothing tells the workers; each notices the silence on its own clock.
        assert wait_for(fleet, active=False, timeout=SILENT_AFTER + 20.0, cause="error") == []

        # A worker (re)started now reads a file from a dead relay: halted until a relay writes.
        with _workers(tmp_path, 1, "late") as late:
            late.start()
            late.wait_ready(30.0, lambda: None)
            assert late.readers[0].active is False

            relay.start()  # the same file, a new relay: everyone resumes
            assert wait_for(fleet, active=True, timeout=30.0) == []
            assert wait_for(late, active=True, timeout=30.0) == []

        relay.stop()  # SIGTERM: the relay writes "closed" before it goes
        assert wait_for(fleet, active=False, timeout=10.0) == []
