"""The middleware holds configured routes while halted (202 and a ticket) instead of refusing them.

ASGI through uvicorn, WSGI through httpx's WSGI transport, both guarding the local provider's flag;
held requests are read back from the store.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.bridge import Bridge
from breakglass.hold import HoldQueue, HoldStore
from breakglass.local.store import LocalStore
from breakglass.middleware import GuardMiddleware, GuardWSGIMiddleware
from breakglass.serve.store import SqliteServeStore
from breakglass.state import Cause
from breakglass.testing.serve import FLAG, UvicornThread, local_settings

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.live


@pytest.fixture
def halted(tmp_path: Path) -> Iterator[tuple[Bridge, HoldQueue, HoldStore]]:
    settings = local_settings(tmp_path)
    with Bridge.from_settings(settings) as bridge:
        guard = bridge.guard()
        LocalStore(tmp_path / "local.db").write(FLAG, value=False, actor="t", reason="halt")
        deadline = time.monotonic() + 5
        while bridge.engine.state.cause is not Cause.OFF and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.engine.state.cause is Cause.OFF
        assert not guard.active
        store = HoldStore(SqliteServeStore(tmp_path / "serve.db"))
        yield bridge, HoldQueue(store, guard), store
        guard.close()


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"scored"})


def _wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b"scored"]


def _check(client: httpx.Client, store: HoldStore) -> None:
    body = b'{"applicant": "a-17"}'
    held = client.post(
        "/v1/score?model=v3", content=body, headers={"content-type": "application/json"}
    )
    assert held.status_code == 202, held.text
    answer = held.json()
    assert answer["status"] == "held"
    row = store.get(answer["ticket"])
    assert row is not None
    assert row.kind == "http-request"
    assert row.payload["method"] == "POST"
    assert row.payload["path"] == "/v1/score"
    assert row.payload["query"] == "model=v3"
    assert base64.b64decode(row.payload["body_b64"]) == body
    assert "off" in row.held_because
    # The same Idempotency-Key is held once.
    first = client.post("/v1/score", content=b"{}", headers={"Idempotency-Key": "k-1"}).json()
    again = client.post("/v1/score", content=b"{}", headers={"Idempotency-Key": "k-1"}).json()
    assert first["ticket"] == again["ticket"]
    # Other routes and methods are refused as before; so is a body beyond the limit.
    assert client.post("/v1/other", content=b"{}").status_code == 503
    assert client.get("/v1/score").status_code == 503
    assert client.post("/v1/score", content=b"x" * 2048).status_code == 503
    assert len(store.decisions()) == 2


def test_asgi_holds_configured_routes(halted: tuple[Bridge, HoldQueue, HoldStore]) -> None:
    bridge, queue, store = halted
    app = GuardMiddleware(
        _asgi_app, bridge.guard(), hold=queue, hold_routes=["POST /v1/score"], hold_max_body=1024
    )
    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        _check(client, store)


def test_wsgi_holds_configured_routes(halted: tuple[Bridge, HoldQueue, HoldStore]) -> None:
    bridge, queue, store = halted
    app = GuardWSGIMiddleware(
        _wsgi_app, bridge.guard(), hold=queue, hold_routes=["POST /v1/score"], hold_max_body=1024
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://svc") as client:
        _check(client, store)


def test_a_store_that_cannot_hold_answers_503(
    tmp_path: Path, halted: tuple[Bridge, HoldQueue, HoldStore]
) -> None:
    bridge, _, _ = halted
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    broken = HoldQueue(HoldStore(SqliteServeStore(blocker / "serve.db")), bridge.guard())
    app = GuardWSGIMiddleware(_wsgi_app, bridge.guard(), hold=broken, hold_routes=["/v1/score"])
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://svc") as client:
        answer = client.post("/v1/score/batch", content=b"{}")
    assert answer.status_code == 503  # refused and told to retry: nothing delivered, nothing lost


def test_hold_routes_are_checked() -> None:
    from breakglass.middleware._hold import parse_routes

    with pytest.raises(ValueError, match="METHOD"):
        parse_routes(["POST v1/score"])
    assert parse_routes(["post /a", "/b"]) == (("POST", "/a"), (None, "/b"))
