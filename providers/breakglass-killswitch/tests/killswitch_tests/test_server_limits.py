"""Wrong tokens against the running switch: 429 past the limit, never in the way of a halt.

Other clients are told apart by their real source address: Linux answers the
whole 127.0.0.0/8 on loopback, so a client bound to 127.0.0.2 is another peer.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from breakglass_killswitch import Store, Switch, load_config
from breakglass_killswitch.limits import FailedTokenLimit
from breakglass_killswitch.tokens import create_token
from killswitch_tests.cluster import NS
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
LIMIT = 4
BAD = {"Authorization": "Bearer bgks_wrong"}


class Switchboard:
    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url, self.tokens = url, tokens

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=60)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _board(tmp_path: Path, kube: KubeApiServer, window: float) -> Iterator[Switchboard]:
    serve = f"[serve]\nfailed_tokens = {LIMIT}\nfailed_token_window = {window}\n"
    config = load_config(
        write_config(tmp_path, kube, kube.token(), targets=serve + STANDARD_TARGETS)
    )
    store = Store(config.state_dir)
    tokens = {
        "vera": create_token(store, "vera", "viewer"),
        "hal": create_token(store, "hal", "halter"),
    }
    switch = Switch(config, store)
    try:
        with serving(switch) as url:
            yield Switchboard(url, tokens)
    finally:
        switch.close()


@pytest.fixture
def board(tmp_path: Path, kube: KubeApiServer) -> Iterator[Switchboard]:
    yield from _board(tmp_path, kube, window=60)


def test_wrong_tokens_are_429_past_the_limit_but_a_valid_token_still_halts(
    board: Switchboard, kube: KubeApiServer
) -> None:
    with board.client() as c:
        codes = [c.get("/v1/status", headers=BAD).status_code for _ in range(LIMIT)]
        assert codes == [401] * LIMIT
        # A missing token counts as a wrong one.
        limited = c.get("/v1/status")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["status"] == 429
        assert c.post("/v1/halt", headers=BAD, json={"reason": "x"}).status_code == 429
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3

        # Decided: a valid token from the limited address is accepted. Refusing it would
        # let anyone sharing the address (a NAT, a neighbouring pod) block the halt.
        assert c.get("/v1/status", headers=board.auth("vera")).status_code == 200
        halted = c.post("/v1/halt", headers=board.auth("hal"), json={"reason": "still halts"})
        assert halted.status_code == 200, halted.text
        assert halted.json()["verdict"] == "HALTED"
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 0
        # ... and accepting it lifts nothing: wrong tokens stay limited.
        assert c.get("/v1/status", headers=BAD).status_code == 429

    with board.client("127.0.0.2") as other:
        assert other.get("/v1/status", headers=BAD).status_code == 401, "another client"
        for _ in range(LIMIT - 1):
            other.get("/v1/status", headers=BAD)
        # A forwarded-for header from a peer that is not a trusted proxy changes nothing.
        spoofed = [
            other.get("/v1/status", headers={**BAD, "X-Forwarded-For": f"10.9.9.{i}"}).status_code
            for i in range(3)
        ]
        assert spoofed == [429] * 3


def test_a_flood_of_wrong_tokens_does_not_delay_a_halt(
    board: Switchboard, kube: KubeApiServer
) -> None:
    def wrong(_: int) -> int:
        with board.client() as c:
            return c.post("/v1/halt", headers=BAD, json={"reason": "guess"}).status_code

    with ThreadPoolExecutor(16) as pool:
        flood = pool.map(wrong, range(300))
        with board.client() as c:
            started = time.monotonic()
            halted = c.post("/v1/halt", headers=board.auth("hal"), json={"reason": "flooded"})
            took = time.monotonic() - started
        codes = list(flood)
    assert halted.status_code == 200, halted.text
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 0
    assert codes.count(401) == LIMIT
    assert codes.count(429) == 300 - LIMIT
    assert took < 20, f"the halt took {took:.1f} s under the flood"


def test_the_limit_lifts_after_the_window(tmp_path: Path, kube: KubeApiServer) -> None:
    for board in _board(tmp_path, kube, window=1.5):
        with board.client() as c:
            for _ in range(LIMIT):
                c.get("/v1/status", headers=BAD)
            wait = c.get("/v1/status", headers=BAD)
            assert wait.status_code == 429
            assert int(wait.headers["retry-after"]) in (1, 2)
            time.sleep(1.6)
            assert c.get("/v1/status", headers=BAD).status_code == 401


def test_an_ipv6_subscriber_is_limited_by_its_64_not_per_address() -> None:
    limit = FailedTokenLimit(2, 60)
    assert limit.fail("2001:db8:7::1") is None
    assert limit.fail("2001:db8:7::2") is None
    assert limit.fail("2001:db8:7:0:ffff::9") is not None, "another address of the same /64"
    assert limit.fail("2001:db8:8::1") is None, "another /64"
    assert limit.fail("::ffff:192.0.2.1") is None
    assert limit.fail("192.0.2.1") is None
    assert limit.fail("192.0.2.1") is not None, "an IPv4-mapped address is its IPv4 address"
