"""ASGI and WSGI middleware, in-process: 503 notice, exempt paths, drain, completion counting."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.clock import isoformat_ms
from breakglass.engine import StateEngine
from breakglass.guard import Guard, Refusal
from breakglass.middleware import GuardMiddleware, GuardWSGIMiddleware
from breakglass.middleware._notice import render
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from breakglass.middleware.asgi import Message, Receive, Scope, Send

STALENESS = 30.0


@pytest.fixture
def armed(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Guard, ScriptedSource]]:
    """A guard on a started engine whose source has confirmed true."""
    source = ScriptedSource("local", clock)
    engine = StateEngine("system-active", [source], max_staleness=STALENESS, clock=clock)
    monkeypatch.setattr(engine, "_run_timer", lambda: None)
    engine.start()
    source.confirm(True)
    guard = Guard(engine, retry_after=12)
    yield guard, source
    guard.close()
    engine.close()


def assert_notice(response: httpx.Response, *, reason: str, since: datetime | None) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "12"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    expected = {
        "error": "service_suspended",
        "reason": reason,
        "since": isoformat_ms(since) if since else None,
    }
    assert response.json() == expected


# ---------------------------------------------------------------- ASGI


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


def asgi_client(app: GuardMiddleware) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://guarded.test", timeout=5.0)


@pytest.mark.asyncio
async def test_asgi_serves_while_active_and_refuses_with_the_notice_when_halted(
    armed: tuple[Guard, ScriptedSource], clock: ManualClock
) -> None:
    """Active -> the app answers; halted -> 503, Retry-After and the JSON notice, app untouched."""
    guard, source = armed
    async with asgi_client(GuardMiddleware(hello, guard)) as client:
        assert (await client.get("/infer")).text == "hello"
        source.confirm(False)
        response = await client.post("/infer", content=b"prompt")
        assert_notice(response, reason="off: the flag is off", since=clock.now())
        source.confirm(True)
        assert (await client.get("/infer")).status_code == 200
    stats = guard.stats()
    assert (stats.admitted, stats.completed, stats.refused) == (2, 2, 1)


@pytest.mark.asyncio
async def test_asgi_exempt_paths_are_served_while_halted_and_not_counted(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """A health check stays reachable during a halt; other paths are refused."""
    guard, source = armed
    source.confirm(False)
    async with asgi_client(GuardMiddleware(hello, guard, exempt_paths={"/healthz"})) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/healthz/deep")).status_code == 503
    stats = guard.stats()
    assert (stats.admitted, stats.refused) == (0, 1)


@pytest.mark.asyncio
async def test_asgi_request_in_flight_at_the_halt_completes(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """A request already running when the flag turns false finishes with 200 and counts as drained."""
    guard, source = armed
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await asyncio.wait_for(release.wait(), timeout=5.0)
        await hello(scope, receive, send)

    async with asgi_client(GuardMiddleware(slow, guard)) as client:
        in_flight = asyncio.create_task(client.get("/infer"))
        await asyncio.wait_for(entered.wait(), timeout=5.0)
        source.confirm(False)
        assert (await client.get("/infer")).status_code == 503
        assert guard.stats().in_flight == 1
        release.set()
        response = await asyncio.wait_for(in_flight, timeout=5.0)
    assert response.status_code == 200
    assert response.text == "hello"
    stats = guard.stats()
    assert (stats.in_flight, stats.drained, stats.refused) == (0, 1, 1)


@pytest.mark.asyncio
async def test_asgi_app_error_still_completes_the_request(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """An app that raises leaves nothing counted in flight."""
    guard, _ = armed

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        await GuardMiddleware(broken, guard)(
            {"type": "http", "path": "/infer"}, _never_receive, _discard
        )
    stats = guard.stats()
    assert (stats.in_flight, stats.completed) == (0, 1)


async def _never_receive() -> Message:
    raise AssertionError("the middleware must not read the request")


async def _discard(message: Message) -> None:
    del message


@pytest.mark.asyncio
async def test_asgi_lifespan_passes_through_even_while_halted(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """Lifespan events reach the app untouched and are not counted."""
    guard, source = armed
    source.confirm(False)
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await GuardMiddleware(app, guard)({"type": "lifespan"}, _never_receive, _discard)
    assert seen == ["lifespan"]
    stats = guard.stats()
    assert (stats.admitted, stats.refused) == (0, 0)


class WebSocketPeer:
    """Plays the server side of an ASGI websocket handshake."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return {"type": "websocket.connect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


@pytest.mark.asyncio
async def test_asgi_websocket_refused_with_503_where_the_server_allows(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """With the denial-response extension a halted handshake gets the same 503 notice."""
    guard, source = armed
    source.confirm(False)
    peer = WebSocketPeer()
    scope: Scope = {
        "type": "websocket",
        "path": "/stream",
        "extensions": {"websocket.http.response": {}},
    }
    await GuardMiddleware(hello, guard)(scope, peer.receive, peer.send)
    start, body = peer.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 503
    assert (b"retry-after", b"12") in start["headers"]
    assert body["type"] == "websocket.http.response.body"
    assert json.loads(body["body"])["error"] == "service_suspended"
    assert guard.stats().refused == 1


@pytest.mark.asyncio
async def test_asgi_websocket_refused_with_a_close_otherwise(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """Without the extension a halted handshake is closed with 1013 (try again later)."""
    guard, source = armed
    source.confirm(False)
    peer = WebSocketPeer()
    await GuardMiddleware(hello, guard)(
        {"type": "websocket", "path": "/stream"}, peer.receive, peer.send
    )
    assert peer.sent == [{"type": "websocket.close", "code": 1013}]


@pytest.mark.asyncio
async def test_asgi_websocket_accepted_while_active_is_not_counted(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """An active handshake reaches the app, and a long session does not hold up a drain."""
    guard, _ = armed
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    peer = WebSocketPeer()
    await GuardMiddleware(app, guard)(
        {"type": "websocket", "path": "/stream"}, peer.receive, peer.send
    )
    assert reached == ["/stream"]
    assert guard.stats().admitted == 0


# ---------------------------------------------------------------- WSGI


def wsgi_hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class Streaming:
    """A WSGI app whose response is a generator; records whether the server closed it."""

    def __init__(self, chunks: int = 3) -> None:
        self.chunks = chunks
        self.closed = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return self.body()

    def body(self) -> Iterator[bytes]:
        try:
            for index in range(self.chunks):
                yield f"chunk {index}\n".encode()
        finally:
            self.closed = True


def call_wsgi(app: GuardWSGIMiddleware, path: str = "/infer") -> tuple[list[str], Iterable[bytes]]:
    """Call a WSGI app directly, as a server would, returning the status line and the iterable."""
    status: list[str] = []

    def start_response(
        line: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        status.append(line)
        return lambda data: None

    environ: WSGIEnvironment = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    return status, app(environ, start_response)


def test_wsgi_serves_while_active_and_refuses_with_the_notice_when_halted(
    armed: tuple[Guard, ScriptedSource], clock: ManualClock
) -> None:
    """Active -> the app answers; halted -> 503, Retry-After and the JSON notice."""
    guard, source = armed
    transport = httpx.WSGITransport(app=GuardWSGIMiddleware(wsgi_hello, guard))
    with httpx.Client(transport=transport, base_url="http://guarded.test") as client:
        assert client.get("/infer").text == "hello"
        source.confirm(False)
        assert_notice(client.get("/infer"), reason="off: the flag is off", since=clock.now())
        source.confirm(True)
        assert client.get("/infer").status_code == 200
    stats = guard.stats()
    assert (stats.admitted, stats.completed, stats.refused, stats.in_flight) == (2, 2, 1, 0)


def test_wsgi_exempt_paths_are_served_while_halted(armed: tuple[Guard, ScriptedSource]) -> None:
    """A health check stays reachable during a halt."""
    guard, source = armed
    source.confirm(False)
    app = GuardWSGIMiddleware(wsgi_hello, guard, exempt_paths=["/healthz"])
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://guarded.test") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/infer").status_code == 503


def test_wsgi_request_is_in_flight_until_its_response_is_closed(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """Returning the iterable is not completion; closing it is, and the close reaches the app."""
    guard, _ = armed
    inner = Streaming()
    status, body = call_wsgi(GuardWSGIMiddleware(inner, guard))
    assert status == ["200 OK"]
    assert guard.stats().in_flight == 1
    iterator = iter(body)
    assert next(iterator) == b"chunk 0\n"
    assert guard.stats().in_flight == 1
    body.close()  # type: ignore[attr-defined]  # PEP 3333: the server closes what it got
    assert inner.closed
    stats = guard.stats()
    assert (stats.in_flight, stats.completed) == (0, 1)


def test_wsgi_request_completes_when_its_response_is_exhausted(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """A server that reads to the end completes the request even before it calls close()."""
    guard, _ = armed
    _, body = call_wsgi(GuardWSGIMiddleware(Streaming(), guard))
    assert list(body) == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    assert guard.stats().in_flight == 0
    body.close()  # type: ignore[attr-defined]
    assert guard.stats().completed == 1


def test_wsgi_stream_running_at_the_halt_is_drained_not_cut(
    armed: tuple[Guard, ScriptedSource],
) -> None:
    """A response being streamed when the flag turns false is streamed to the end."""
    guard, source = armed
    status, body = call_wsgi(GuardWSGIMiddleware(Streaming(chunks=4), guard))
    iterator = iter(body)
    first = next(iterator)
    source.confirm(False)
    assert [first, *iterator] == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n", b"chunk 3\n"]
    body.close()  # type: ignore[attr-defined]
    refused_status, _ = call_wsgi(GuardWSGIMiddleware(Streaming(), guard))
    assert (status, refused_status) == (["200 OK"], ["503 Service Unavailable"])
    stats = guard.stats()
    assert (stats.drained, stats.refused, stats.in_flight) == (1, 1, 0)


def test_wsgi_app_error_still_completes_the_request(armed: tuple[Guard, ScriptedSource]) -> None:
    """An app that raises before returning leaves nothing counted in flight."""
    guard, _ = armed

    def broken(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        call_wsgi(GuardWSGIMiddleware(broken, guard))
    stats = guard.stats()
    assert (stats.in_flight, stats.completed) == (0, 1)


# ---------------------------------------------------------------- parity


@pytest.mark.asyncio
async def test_asgi_and_wsgi_send_the_same_notice(armed: tuple[Guard, ScriptedSource]) -> None:
    """Both middlewares answer a refusal byte for byte alike (one sans-I/O core)."""
    guard, source = armed
    source.confirm(False)
    async with asgi_client(GuardMiddleware(hello, guard)) as client:
        from_asgi = await client.get("/infer")
    transport = httpx.WSGITransport(app=GuardWSGIMiddleware(wsgi_hello, guard))
    with httpx.Client(transport=transport, base_url="http://guarded.test") as client:
        from_wsgi = client.get("/infer")
    assert from_asgi.status_code == from_wsgi.status_code == 503
    assert from_asgi.content == from_wsgi.content
    assert dict(from_asgi.headers) == dict(from_wsgi.headers)


def test_notice_is_rendered_once_per_refusal() -> None:
    """The same refusal renders to the same cached notice; since may be null."""
    refusal = Refusal(reason="stale: no confirmation", since=None, retry_after=5)
    notice = render(refusal)
    assert render(Refusal(reason="stale: no confirmation", since=None, retry_after=5)) is notice
    assert json.loads(notice.body) == {
        "error": "service_suspended",
        "reason": "stale: no confirmation",
        "since": None,
    }
    assert ("retry-after", "5") in notice.headers
    assert ("content-length", str(len(notice.body))) in notice.headers


def test_notice_links_the_status_page_when_configured() -> None:
    """A configured status page is linked from the 503 body; without one the body is unchanged."""
    url = "https://breakglass.example.org/notify/status/acme-bank"
    linked = render(
        Refusal(reason="off: the flag is off", since=None, retry_after=5, status_url=url)
    )
    assert json.loads(linked.body)["status_url"] == url
    plain = render(Refusal(reason="off: the flag is off", since=None, retry_after=5))
    assert "status_url" not in json.loads(plain.body)
