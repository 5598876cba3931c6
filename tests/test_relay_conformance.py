"""The shared conformance suite through a real ``breakglass relay`` process on the local provider.

The worker under test reads the relay's channel; the local store is the vendor
(its harness: ``tests/local_harness.py``), and halts and resumes go to it, as an
operator's would. One relay process serves every case (starting one takes
seconds); a case that kills it gets a new one on the same file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass.testing.relay import RelayProcess
from breakglass.testing.relay_conformance import RelayConformance, RelayHarness, closing
from tests.local_harness import LocalHarness

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live

HEARTBEAT = 0.1
SILENT_AFTER = 1.5


@pytest.fixture(scope="module")
def relay_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayHarness]:
    root = tmp_path_factory.mktemp("relay-conformance")
    upstream = LocalHarness(root)
    upstream.set_from_dashboard(True)
    channel = root / "channel" / "relay.channel"
    relay = RelayProcess(
        {
            "BREAKGLASS_PROVIDER": "local",
            "BREAKGLASS_LOCAL__PATH": str(upstream.db),
            "BREAKGLASS_LOCAL__POLL_INTERVAL": str(upstream.poll_bound),
            "BREAKGLASS_STATE_DIR": str(root / "relay-state"),
            "BREAKGLASS_RELAY__PATH": str(channel),
            "BREAKGLASS_RELAY__HEARTBEAT": str(HEARTBEAT),
            # The relay keeps its default max_staleness (30 s): workers must hold to their own.
            "BREAKGLASS_MAX_STALENESS": None,
        },
        root / "relay.log",
    )
    relay.start()
    try:
        yield RelayHarness(
            upstream, relay, channel, root, heartbeat=HEARTBEAT, silent_after=SILENT_AFTER
        )
    finally:
        relay.stop()


class TestLocalRelayConformance(RelayConformance):
    @pytest.fixture
    def harness(self, relay_rig: RelayHarness) -> Iterator[RelayHarness]:
        with closing(relay_rig) as harness:
            yield harness
