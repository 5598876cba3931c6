"""A real ``breakglass relay`` on the LaunchDarkly-protocol server, with 20 real worker processes.

The relay is the only LaunchDarkly client on the "host": the server sees one
stream and one verifier, however many workers read the relay. Halt and resume
through LaunchDarkly reach every worker; killing the relay halts every worker.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from breakglass.probe.fleet import Fleet
from breakglass.testing.relay import RelayProcess, wait_for
from launchdarkly_tests.conftest import FAST_SETTINGS, FLAG

if TYPE_CHECKING:
    from pathlib import Path

    from launchdarkly_tests.fake_ld import FakeLaunchDarkly

pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

WORKERS = 20
SILENT_AFTER = 2.0


def _relay_env(fake: FakeLaunchDarkly, tmp_path: Path) -> dict[str, str]:
    values = {
        **FAST_SETTINGS,
        "SDK_KEY": fake.sdk_key,
        "BASE_URI": fake.url,
        "STREAM_URI": fake.url,
        "EVENTS_URI": fake.url,
    }
    return {
        "BREAKGLASS_PROVIDER": "launchdarkly",
        "BREAKGLASS_STATE_DIR": str(tmp_path / "relay-state"),
        "BREAKGLASS_RELAY__PATH": str(tmp_path / "relay.channel"),
        "BREAKGLASS_RELAY__SILENT_AFTER": str(SILENT_AFTER),
        **{f"BREAKGLASS_LAUNCHDARKLY__{name}": value for name, value in values.items()},
    }


def _vendor_reads(fake: FakeLaunchDarkly) -> int:
    counts = dict(fake.requests)
    return sum(n for kind, n in counts.items() if kind.startswith("GET /") and "/api/" not in kind)


def test_twenty_workers_behind_one_launchdarkly_reader(
    fake: FakeLaunchDarkly, tmp_path: Path
) -> None:
    workdir = tmp_path / "workers"
    workdir.mkdir()
    settings = {
        "provider": "relay",
        "sections": {
            "relay": {"path": str(tmp_path / "relay.channel"), "silent_after": SILENT_AFTER}
        },
    }
    relay = RelayProcess(_relay_env(fake, tmp_path), tmp_path / "relay.log")
    with relay, Fleet(WORKERS, settings, workdir, ready_timeout=10.0, lifetime=300.0) as fleet:
        fleet.start()
        fleet.wait_ready(90.0, lambda: None)
        assert wait_for(fleet, active=True, timeout=30.0) == []

        # The vendor's load is the relay's alone: one stream, one verifier, whatever K is.
        before, started = _vendor_reads(fake), time.monotonic()
        time.sleep(2.0)
        per_second = (_vendor_reads(fake) - before) / (time.monotonic() - started)
        assert fake.requests.get("GET /all", 0) <= 3
        # The relay's verifier polls every 0.1 s: about 10 reads a second, never 20 workers' worth.
        assert per_second < 25, f"{per_second:.1f} vendor reads/s with {WORKERS} workers"

        fake.set_on(FLAG, False)
        assert wait_for(fleet, active=False, timeout=30.0, cause="off") == []
        fake.set_on(FLAG, True)
        assert wait_for(fleet, active=True, timeout=30.0) == []

        relay.kill()
        assert wait_for(fleet, active=False, timeout=SILENT_AFTER + 20.0, cause="error") == []
